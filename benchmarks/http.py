"""``python -m benchmarks.http``: the REST API over HTTP on loopback, SQLite backend.

A real ``prismq-queue api`` server runs in its own process; the load generator runs in a
second process (asyncio, keep-alive connections), so client and server do not share an
interpreter.

Two kinds of run, for ``POST /api/queue/tasks`` (enqueue) and ``GET /api/queue/tasks/{id}``:

- **fixed rate** (open loop): requests are sent on a fixed schedule (200 req/s by default),
  whatever the answers do. Latency is measured from each request's *scheduled* send time to
  the end of its answer, so a stall delays every request queued behind it and shows in the
  percentiles (no coordinated omission).
- **saturation** (closed loop): N connections send back to back for a few seconds; the
  throughput is the most the server (and this client) can do on this machine.

Writes ``benchmarks/results/http.json`` and ``benchmarks/results/http.md``, and with
``--docs`` rewrites the part of ``docs/benchmarks.md`` between ``<!-- http:start -->`` and
``<!-- http:end -->``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import multiprocessing
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
DOCS_PAGE = ROOT / "docs" / "benchmarks.md"
START_MARKER = "<!-- http:start -->"
END_MARKER = "<!-- http:end -->"

RATE_DEFAULT = 200
DURATION_DEFAULT = 10.0
WARMUP_SECONDS = 2.0
SATURATION_SECONDS_DEFAULT = 5.0
SATURATION_CONNECTIONS_DEFAULT = 16
SEED_TASKS = 2000
# Enough that a request never waits for a free connection unless the server stalls.
FIXED_RATE_CONNECTIONS = 32
SERVER_START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 30.0
AIMS_MS = {"get": 5.0, "post": 10.0}  # p99 at the fixed rate (issue 5)

TASKS = "/api/queue/tasks"
POST_BODY = {"type": "bench.http", "payload": {"n": 1, "text": "hello"}}


@dataclass
class RunResult:
    operation: str  # "post" or "get"
    mode: str  # "fixed-rate" or "saturation"
    target_rate: float | None
    connections: int | None
    seconds: float
    requests: int
    errors: int
    achieved_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    statuses: dict[str, int] = field(default_factory=dict)
    server_cpu_ms_per_request: float | None = None


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summarise(
    operation: str,
    mode: str,
    latencies: list[float],
    statuses: dict[str, int],
    errors: int,
    seconds: float,
    target_rate: float | None,
    connections: int | None,
) -> RunResult:
    ordered = sorted(latencies)
    ms = [v * 1000 for v in ordered]
    return RunResult(
        operation=operation,
        mode=mode,
        target_rate=target_rate,
        connections=connections,
        seconds=round(seconds, 3),
        requests=len(latencies),
        errors=errors,
        achieved_rps=round(len(latencies) / seconds, 1) if seconds else 0.0,
        p50_ms=round(percentile(ms, 0.50), 3),
        p90_ms=round(percentile(ms, 0.90), 3),
        p99_ms=round(percentile(ms, 0.99), 3),
        max_ms=round(ms[-1], 3) if ms else float("nan"),
        mean_ms=round(statistics.fmean(ms), 3) if ms else float("nan"),
        statuses=statuses,
    )


# --- the load generator (runs in its own process) ---
#
# The requests go through a minimal HTTP/1.1 keep-alive client on asyncio streams. httpx's
# async client was tried first: on this 2-CPU machine it spent 2-5 ms of CPU per request
# (and, with requests queued on its pool, much more), so at 200 req/s the client, not the
# server, set the latency. This client costs well under 0.5 ms per request. httpx still seeds
# the database and checks the answers' shape (see seed()).


class HttpConnection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> int:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        response_head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(response_head[9:12])
        length = 0
        close = False
        for line in response_head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        await self.reader.readexactly(length)
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.reader = None


class _Load:
    def __init__(self, base_url: str, operation: str, task_ids: list[int]) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.operation = operation
        self.task_ids = task_ids
        self.rng = random.Random(7)
        self.body = json.dumps(POST_BODY).encode()
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors = 0

    async def one(self, connection: HttpConnection, started: float, record: bool) -> None:
        try:
            if self.operation == "post":
                code = await connection.request("POST", TASKS, self.body)
                ok = code == 201
            else:
                task_id = self.rng.choice(self.task_ids)
                code = await connection.request("GET", f"{TASKS}/{task_id}")
                ok = code == 200
            status = str(code)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            await connection.close()
            ok, status = False, type(exc).__name__
        elapsed = time.perf_counter() - started
        if record:
            self.latencies.append(elapsed)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.errors += 0 if ok else 1

    async def fixed_rate(self, rate: float, seconds: float, record: bool) -> float:
        """Sends on the schedule t0 + i/rate through a pool of connections. A request whose
        time comes while every connection is busy waits, and the wait counts in its latency."""
        schedule: asyncio.Queue[float | None] = asyncio.Queue()
        begin = time.perf_counter() + 0.05
        for i in range(round(rate * seconds)):
            schedule.put_nowait(begin + i / rate)
        for _ in range(FIXED_RATE_CONNECTIONS):
            schedule.put_nowait(None)

        async def lane() -> None:
            connection = HttpConnection(self.host, self.port)
            while (scheduled := await schedule.get()) is not None:
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.one(connection, scheduled, record)
            await connection.close()

        await asyncio.gather(*(lane() for _ in range(FIXED_RATE_CONNECTIONS)))
        return time.perf_counter() - begin

    async def saturate(self, connections: int, seconds: float) -> float:
        deadline = time.perf_counter() + seconds

        async def lane() -> None:
            connection = HttpConnection(self.host, self.port)
            while time.perf_counter() < deadline:
                await self.one(connection, time.perf_counter(), record=True)
            await connection.close()

        begin = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(connections)))
        return time.perf_counter() - begin


def load_process(
    base_url: str,
    operation: str,
    mode: str,
    task_ids: list[int],
    rate: float,
    seconds: float,
    connections: int,
    results: Any,
) -> None:
    """Entry point of the load-generator process; puts one RunResult (as a dict) on results."""

    async def run() -> RunResult:
        load = _Load(base_url, operation, task_ids)
        if mode == "fixed-rate":
            await load.fixed_rate(rate, WARMUP_SECONDS, record=False)
            elapsed = await load.fixed_rate(rate, seconds, record=True)
            return summarise(
                operation, mode, load.latencies, load.statuses, load.errors, elapsed, rate, None
            )
        await load.saturate(connections, min(WARMUP_SECONDS, seconds))
        load.latencies.clear()
        load.statuses.clear()
        load.errors = 0
        elapsed = await load.saturate(connections, seconds)
        return summarise(
            operation,
            mode,
            load.latencies,
            load.statuses,
            load.errors,
            elapsed,
            None,
            connections,
        )

    results.put(asdict(asyncio.run(run())))


# --- the server under test ---


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiServer:
    def __init__(self, database_url: str, log: Path, processes: int = 1) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRISMQ_QUEUE_")}
        argv = [
            sys.executable,
            "-m",
            "queue_core.cli",
            "api",
            "--port",
            str(self.port),
            "--workers",
            str(processes),
            "--database-url",
            database_url,
        ]
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.log = log

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the server did not start in time")

    def cpu_seconds(self) -> float | None:
        """User + system CPU the server process has used (Linux /proc); None elsewhere."""
        stat = Path(f"/proc/{self.process.pid}/stat")
        if not stat.exists():
            return None
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM if sys.platform != "win32" else signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def seed(base_url: str, count: int) -> list[int]:
    ids: list[int] = []
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as client:
        for start in range(0, count, 1000):
            batch = [
                {"type": "bench.http", "payload": {"i": i}}
                for i in range(start, min(count, start + 1000))
            ]
            response = client.post(f"{TASKS}/batch", json={"tasks": batch})
            response.raise_for_status()
            ids.extend(task["task_id"] for task in response.json()["tasks"])
    return ids


def run_in_second_process(**kwargs: Any) -> RunResult:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=load_process, kwargs={**kwargs, "results": results})
    process.start()
    payload = results.get(timeout=600)
    process.join(60)
    return RunResult(**payload)


def environment() -> dict[str, Any]:
    import fastapi
    import sqlalchemy
    import uvicorn

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "httpx": httpx.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": __import__("sqlite3").sqlite_version,
    }
    # uvicorn picks these when installed ("auto"); a plain `pip install prismq-queue` has
    # neither, and then serves with h11 and asyncio's own loop.
    info["uvicorn_http"] = "httptools" if importlib.util.find_spec("httptools") else "h11"
    info["uvicorn_loop"] = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    if hasattr(os, "getloadavg"):
        info["loadavg_at_start"] = [round(v, 2) for v in os.getloadavg()]
    return info


# --- report ---


def markdown(results: list[RunResult], env: dict[str, Any], started: str) -> str:
    lines = [
        f"HTTP on loopback, SQLite (WAL), one `prismq-queue api` process (uvicorn), load from "
        f"a second process (asyncio keep-alive client). Run {started}; Python {env['python']}, "
        f"{env['cpus']} CPUs, uvicorn with {env['uvicorn_http']} and {env['uvicorn_loop']}"
        + (
            f", load average {env['loadavg_at_start'][0]} at start"
            if "loadavg_at_start" in env
            else ""
        )
        + ".",
        "",
        "| operation | mode | req/s | p50 ms | p90 ms | p99 ms | max ms | errors "
        "| server CPU ms/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"post": "POST /api/queue/tasks", "get": "GET /api/queue/tasks/{id}"}
    for r in results:
        mode = (
            f"fixed {r.target_rate:.0f} req/s, {r.seconds:.0f} s"
            if r.mode == "fixed-rate"
            else f"saturation, {r.connections} connections"
        )
        lines.append(
            f"| {names[r.operation]} | {mode} | {r.achieved_rps:.0f} | {r.p50_ms:.2f} | "
            f"{r.p90_ms:.2f} | {r.p99_ms:.2f} | {r.max_ms:.1f} | {r.errors} | "
            + (
                f"{r.server_cpu_ms_per_request:.2f} |"
                if r.server_cpu_ms_per_request is not None
                else "n/a |"
            )
        )
    lines.append("")
    for r in results:
        if r.mode == "fixed-rate":
            aim = AIMS_MS[r.operation]
            verdict = "met" if r.p99_ms < aim else "missed"
            lines.append(
                f"- Aim for {names[r.operation]} at {r.target_rate:.0f} req/s: p99 < {aim:g} ms: "
                f"**{verdict}** ({r.p99_ms:.2f} ms)."
            )
    lines += [
        "",
        "Fixed-rate latencies run from each request's scheduled send time to the end of its "
        "answer, so client-side delays count against the server, never for it. Saturation "
        "figures are bounded by this machine's cores, which the client, the server and anything "
        "else running share.",
    ]
    return "\n".join(lines) + "\n"


def update_docs(page: Path, table: str) -> None:
    block = f"{START_MARKER}\n{table}{END_MARKER}"
    text = page.read_text(encoding="utf-8") if page.exists() else "# Benchmarks\n"
    if START_MARKER in text and END_MARKER in text:
        head, rest = text.split(START_MARKER, 1)
        _, tail = rest.split(END_MARKER, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n## REST API over HTTP\n\n" + block + "\n"
    page.write_text(text, encoding="utf-8")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--rate", type=click.FloatRange(1), default=RATE_DEFAULT, show_default=True)
@click.option("--duration", type=click.FloatRange(0.5), default=DURATION_DEFAULT, show_default=True)
@click.option(
    "--saturation-seconds",
    type=click.FloatRange(0.5),
    default=SATURATION_SECONDS_DEFAULT,
    show_default=True,
)
@click.option(
    "--connections",
    type=click.IntRange(1),
    default=SATURATION_CONNECTIONS_DEFAULT,
    show_default=True,
    help="Connections of the saturation runs.",
)
@click.option("--out-dir", type=click.Path(path_type=Path), default=RESULTS_DIR)
@click.option("--docs/--no-docs", default=False, help="Rewrite the HTTP section of the docs.")
def main(
    rate: float,
    duration: float,
    saturation_seconds: float,
    connections: int,
    out_dir: Path,
    docs: bool,
) -> None:
    """Measure POST enqueue and GET task over HTTP against a real server on SQLite."""
    from queue_core import migrate
    from queue_core.database import Database
    from queue_core.settings import sqlite_url_for

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    env = environment()
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="prismq-http-bench-") as tmp:
        url = sqlite_url_for(Path(tmp) / "bench.db")
        with Database(url) as db:
            migrate.upgrade(db)
        server = ApiServer(url, Path(tmp) / "server.log")
        try:
            server.wait_ready()
            ids = seed(server.base_url, SEED_TASKS)
            plan = [
                ("post", "fixed-rate"),
                ("get", "fixed-rate"),
                ("post", "saturation"),
                ("get", "saturation"),
            ]
            for operation, mode in plan:
                cpu_before = server.cpu_seconds()
                result = run_in_second_process(
                    base_url=server.base_url,
                    operation=operation,
                    mode=mode,
                    task_ids=ids,
                    rate=rate,
                    seconds=duration if mode == "fixed-rate" else saturation_seconds,
                    connections=connections,
                )
                cpu_after = server.cpu_seconds()
                if cpu_before is not None and cpu_after is not None and result.requests:
                    # Includes the warm-up requests, which the latencies leave out.
                    warmup = (
                        round(rate * WARMUP_SECONDS)
                        if mode == "fixed-rate"
                        else result.requests
                        * min(WARMUP_SECONDS, saturation_seconds)
                        / saturation_seconds
                    )
                    per_request = (cpu_after - cpu_before) / (result.requests + warmup)
                    result.server_cpu_ms_per_request = round(per_request * 1000, 3)
                results.append(result)
                click.echo(
                    f"{operation:4} {mode:10} {result.achieved_rps:8.1f} req/s  "
                    f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                    f"errors {result.errors}",
                    err=True,
                )
        finally:
            server.stop()
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"started": started, "environment": env, "results": [asdict(r) for r in results]}
    (out_dir / "http.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(results, env, started)
    (out_dir / "http.md").write_text(table, encoding="utf-8")
    click.echo(table)
    if docs:
        update_docs(DOCS_PAGE, table)


if __name__ == "__main__":
    main()
