"""A test bed of worker hosts on Linux network namespaces, around a throwaway PostgreSQL.

Layout (every name starts with ``pqsx<pid>-``, the pid of the process that built it)::

    <p>-br   a namespace holding the bridge ``br0`` (the "switch")
    <p>-db   the database host: a PostgreSQL cluster of its own (initdb into a temp dir),
             listening on 10.231.0.1 only
    <p>-h1.. worker hosts, 10.231.0.11, .12, ...: ``prismq-queue worker`` processes

Each host has ``eth0``, one end of a veth pair whose other end (``p-<host>``) is a port of the
bridge. Nothing is routed anywhere else: traffic goes only between these namespaces. A host is
cut off by taking its bridge port down (``ip link set p-h2 down``), like pulling its cable.

The controller (this process) stays in the root namespace and reaches the database through
the cluster's Unix socket in the temp dir (file system, not network), to enqueue, watch and
read statistics.

Everything is removed by :meth:`NetBed.close` (also from ``atexit`` and on failure), and a
new bed first removes what a crashed earlier run (a pid that no longer runs) left behind.
Needs root, ``ip`` and PostgreSQL's server binaries; :func:`unavailable_reason` says what is
missing.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "pqsx"
SUBNET = "10.231.0"
DB_ADDRESS = f"{SUBNET}.1"
HOST_ADDRESS_BASE = 11
PG_PORT = 5432
DB_NAME = "bench"
PGBOUNCER_PORT = 6432
PGBOUNCER = "pgbouncer"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_USER = "postgres"
START_TIMEOUT_SECONDS = 60.0
REPO_ROOT = Path(__file__).resolve().parents[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob(PG_BIN_GLOB), reverse=True)
    for candidate in found:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    return None


def unavailable_reason() -> str | None:
    """Why the bed cannot run here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if _pg_bin() is None:
        return f"PostgreSQL server binaries (initdb, postgres) not found under {PG_BIN_GLOB}"
    if shutil.which("runuser") is None:
        return "runuser is needed to run initdb as the postgres user"
    try:
        import pwd

        pwd.getpwnam(PG_USER)
    except KeyError:
        return f"no {PG_USER!r} user to run the throwaway cluster as"
    return None


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def _netns_list() -> list[str]:
    out = _run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> list[str]:
    """Delete namespaces (and their processes) of earlier beds whose owner no longer runs."""
    removed = []
    for name in _netns_list():
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and _pid_alive(int(owner)) and int(owner) != os.getpid():
            continue
        _kill_netns_processes(name)
        _run("ip", "netns", "del", name, check=False)
        removed.append(name)
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        owner = path.name[len(PREFIX) :].split("-", 1)[0]
        if path.is_dir() and owner.isdigit() and not _pid_alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def _kill_netns_processes(name: str) -> None:
    pids = _run("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@dataclass
class Host:
    name: str  # short: "h1"
    netns: str
    address: str
    port: str  # the bridge port of this host's cable
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


class NetBed:
    """Build with :meth:`start`; always :meth:`close` (a context manager does)."""

    def __init__(self, hosts: int, *, pg_settings: Sequence[str] = ()) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"the network test bed cannot run here: {reason}")
        self.tag = f"{PREFIX}{os.getpid()}"
        self.bridge_ns = f"{self.tag}-br"
        self.db_ns = f"{self.tag}-db"
        self.hosts = [
            Host(
                f"h{i}",
                f"{self.tag}-h{i}",
                f"{SUBNET}.{HOST_ADDRESS_BASE + i - 1}",
                f"p-h{i}",
            )
            for i in range(1, hosts + 1)
        ]
        self.pg_settings = list(pg_settings)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.pgdata = self.workdir / "pgdata"
        self.logs = self.workdir / "logs"
        self._postgres: subprocess.Popen[bytes] | None = None
        self._pgbouncer: subprocess.Popen[bytes] | None = None
        self._closed = False
        atexit.register(self.close)

    # --- URLs ---

    @property
    def worker_url(self) -> str:
        """The URL a worker host uses: TCP across the bridge to the db host."""
        return f"postgresql+psycopg://{PG_USER}@{DB_ADDRESS}:{PG_PORT}/{DB_NAME}"

    @property
    def admin_url(self) -> str:
        """The controller's URL: the cluster's Unix socket, no network involved."""
        return f"postgresql+psycopg://{PG_USER}@/{DB_NAME}?host={self.workdir}&port={PG_PORT}"

    # --- building ---

    def __enter__(self) -> NetBed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        remove_leftovers()
        try:
            self._network()
            self._database()
        except BaseException:
            self.close()
            raise

    def _network(self) -> None:
        for ns in (self.bridge_ns, self.db_ns, *(h.netns for h in self.hosts)):
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        self._cable(self.db_ns, "p-db", DB_ADDRESS)
        for host in self.hosts:
            self._cable(host.netns, host.port, host.address)

    def _cable(self, ns: str, port: str, address: str) -> None:
        # Both ends are created inside their namespaces: no name ever exists in the root one.
        _run(
            "ip", "-n", ns, "link", "add", "eth0", "type", "veth",
            "peer", "name", port, "netns", self.bridge_ns,
        )  # fmt: skip
        _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0")
        _run("ip", "-n", self.bridge_ns, "link", "set", port, "up")

    def _database(self) -> None:
        pg_bin = _pg_bin()
        assert pg_bin is not None
        self.logs.mkdir(parents=True)
        shutil.chown(self.workdir, user=PG_USER)
        _run(
            "runuser", "-u", PG_USER, "--", str(pg_bin / "initdb"), "-D", str(self.pgdata),
            "-A", "trust", "-U", PG_USER, "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        with (self.pgdata / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
        settings = [
            f"listen_addresses={DB_ADDRESS}",
            f"port={PG_PORT}",
            f"unix_socket_directories={self.workdir}",
            "max_connections=200",
            "shared_preload_libraries=pg_stat_statements",
            "pg_stat_statements.track=all",
            "fsync=off",  # a throwaway cluster: durability is not what is measured
            "full_page_writes=off",
            *self.pg_settings,
        ]
        args = ["ip", "netns", "exec", self.db_ns, "runuser", "-u", PG_USER, "--"]
        args += [str(pg_bin / "postgres"), "-D", str(self.pgdata)]
        for setting in settings:
            args += ["-c", setting]
        log = (self.logs / "postgres.log").open("wb")
        self._postgres = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not (self.workdir / f".s.PGSQL.{PG_PORT}").exists():
            if self._postgres.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the throwaway PostgreSQL did not start: " + self.tail_log())
            time.sleep(0.1)
        psql = str(pg_bin.parent / "bin" / "psql") if (pg_bin / "psql").exists() else "psql"
        for sql in (f"CREATE DATABASE {DB_NAME}",):
            self._psql(psql, "postgres", sql)
        self._psql(psql, DB_NAME, "CREATE EXTENSION pg_stat_statements")

    def _psql(self, psql: str, dbname: str, sql: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            done = _run(
                psql, "-h", str(self.workdir), "-p", str(PG_PORT), "-U", PG_USER, "-d", dbname,
                "-v", "ON_ERROR_STOP=1", "-c", sql, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{sql!r} failed: {done.stderr.strip()}")
            time.sleep(0.2)

    def tail_log(self, lines: int = 20) -> str:
        path = self.logs / "postgres.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # --- PgBouncer ---

    def start_pgbouncer(self, pool_mode: str = "transaction", pool_size: int = 4) -> str:
        """A PgBouncer on the db host in front of the cluster; returns the workers' URL."""
        binary = shutil.which(PGBOUNCER) or shutil.which(PGBOUNCER, path="/usr/sbin")
        if binary is None:
            raise RuntimeError("pgbouncer is not installed")
        conf = self.workdir / "pgbouncer.ini"
        (self.workdir / "userlist.txt").write_text(f'"{PG_USER}" ""\n')
        conf.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"{DB_NAME} = host={self.workdir} port={PG_PORT} dbname={DB_NAME}",
                    "[pgbouncer]",
                    f"listen_addr = {DB_ADDRESS}",
                    f"listen_port = {PGBOUNCER_PORT}",
                    f"unix_socket_dir = {self.workdir}",
                    "auth_type = trust",
                    f"auth_file = {self.workdir / 'userlist.txt'}",
                    f"pool_mode = {pool_mode}",
                    f"default_pool_size = {pool_size}",
                    "max_client_conn = 500",
                    f"admin_users = {PG_USER}",
                    "ignore_startup_parameters = extra_float_digits,options",
                    f"pidfile = {self.workdir / 'pgbouncer.pid'}",
                    "",
                ]
            )
        )
        for path in (conf, self.workdir / "userlist.txt"):
            shutil.chown(path, user=PG_USER)
        args = ["ip", "netns", "exec", self.db_ns, "runuser", "-u", PG_USER, "--", binary]
        log = (self.logs / "pgbouncer.log").open("wb")
        self._pgbouncer = subprocess.Popen([*args, str(conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not (self.workdir / f".s.PGSQL.{PGBOUNCER_PORT}").exists():
            if self._pgbouncer.poll() is not None or time.monotonic() > deadline:
                log_text = (self.logs / "pgbouncer.log").read_text(errors="replace")
                raise RuntimeError("PgBouncer did not start: " + log_text[-2000:])
            time.sleep(0.1)
        return f"postgresql+psycopg://{PG_USER}@{DB_ADDRESS}:{PGBOUNCER_PORT}/{DB_NAME}"

    # --- running things on hosts ---

    def spawn(
        self,
        host: Host,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log_name: str,
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` inside ``host``'s namespace (a new session, so it stops as a group)."""
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        log = (self.logs / f"{log_name}.log").open("wb")
        process = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, *args],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        host.processes.append(process)
        return process

    def spawn_worker(
        self,
        host: Host,
        index: int,
        *,
        imports: Sequence[str],
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
        url: str | None = None,
    ) -> subprocess.Popen[bytes]:
        worker_id = f"{host.name}-w{index}"
        args = [sys.executable, "-m", "queue_core.cli", "worker"]
        for module in imports:
            args += ["--import", module]
        args += ["--database-url", url or self.worker_url, "--worker-id", worker_id]
        args += ["--no-maintenance", *options]
        return self.spawn(host, args, env=env, log_name=worker_id)

    def stop_processes(self, host: Host | None = None, timeout: float = 10.0) -> None:
        hosts = [host] if host is not None else self.hosts
        for h in hosts:
            for process in h.processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for process in h.processes:
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
            h.processes.clear()

    # --- faults ---

    def cut(self, host: Host) -> None:
        """Pull the host's cable: its bridge port goes down, packets are dropped silently."""
        _run("ip", "-n", self.bridge_ns, "link", "set", host.port, "down")

    def reconnect(self, host: Host) -> None:
        _run("ip", "-n", self.bridge_ns, "link", "set", host.port, "up")

    # --- teardown ---

    def _stop_postgres(self, launcher: subprocess.Popen[bytes]) -> None:
        pidfile = self.pgdata / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            postmaster = int(pidfile.read_text().splitlines()[0])
            os.kill(postmaster, signal.SIGINT)  # "fast" shutdown
            deadline = time.monotonic() + 20
            while _pid_alive(postmaster) and time.monotonic() < deadline:
                time.sleep(0.1)
        if launcher.poll() is None:
            launcher.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            launcher.wait(5)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.stop_processes(timeout=5.0)
        if self._pgbouncer is not None and self._pgbouncer.poll() is None:
            self._pgbouncer.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._pgbouncer.wait(10)
        if self._postgres is not None:
            self._stop_postgres(self._postgres)
        for ns in (*(h.netns for h in self.hosts), self.db_ns, self.bridge_ns):
            _kill_netns_processes(ns)
            _run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
