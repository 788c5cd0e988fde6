"""How long `prismq-queue` takes to start and answer, whole process (docs/benchmarks.md).

``python -m benchmarks.cli_startup [--runs N] [--json FILE]``

Each command runs N times as a fresh process (the installed ``prismq-queue`` console script,
as a user runs it) against a migrated SQLite database in a temporary directory; the median
and the fastest wall time are reported, with ``python -c pass`` as the interpreter's own
floor. Issue 12 item 23 aims at ``--help`` <= 0.25 s and ``stats`` <= 0.35 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS_DEFAULT = 11
AIMS = {"--help": 0.25, "stats": 0.35}


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("prismq-queue")
    found = str(script) if script.exists() else shutil.which("prismq-queue")
    return [found] if found else [sys.executable, "-m", "queue_core.cli"]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time, and CPU time (user + system) of the child: on a loaded machine the CPU time
    is close to what the wall time is on a quiet one."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started, _children_cpu() - cpu_before


def _children_cpu() -> float:
    if sys.platform == "win32":  # pragma: no cover - no resource module
        return 0.0
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(runs: int) -> dict[str, dict[str, float]]:
    cli = console_script()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRISMQ_QUEUE_")}
        env["PRISMQ_QUEUE_DATABASE_URL"] = "sqlite:///" + (Path(tmp) / "q.db").as_posix()
        subprocess.run([*cli, "db", "upgrade"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(
            [*cli, "enqueue", "demo.echo"], env=env, stdout=subprocess.DEVNULL, check=True
        )
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "--help": [*cli, "--help"],
            "stats": [*cli, "stats"],
            "tasks list": [*cli, "tasks", "list"],
            "enqueue": [*cli, "enqueue", "demo.echo"],
            "worker --help": [*cli, "worker", "--help"],
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(runs):  # interleaved, so a burst of load hits every case alike
            for name, command in cases.items():
                times[name].append(timed(command, env))
    return {
        name: {
            "median_s": statistics.median(wall for wall, _ in values),
            "min_s": min(wall for wall, _ in values),
            "median_cpu_s": statistics.median(cpu for _, cpu in values),
        }
        for name, values in times.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS_DEFAULT)
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = parser.parse_args(argv)
    figures = measure(args.runs)
    print(f"{'command':<16} {'median s':>9} {'min s':>7} {'cpu s':>7}  aim")
    for name, figure in figures.items():
        aim = AIMS.get(name)
        print(
            f"{name:<16} {figure['median_s']:>9.3f} {figure['min_s']:>7.3f} "
            f"{figure['median_cpu_s']:>7.3f}  {'' if aim is None else f'<= {aim}'}"
        )
    load = f"; load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"({args.runs} runs each{load})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
