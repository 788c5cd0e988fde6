"""A PostgreSQL cluster of a test's own: initdb into a temporary directory, a free port,
stopped and removed at the end, also when the test fails.

For tests that stop and start the server (an outage). The machine's shared cluster, which other
tests and other people use, is never touched. As root, the server runs as the ``postgres``
user (PostgreSQL refuses to run as root) through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"
COMMAND_TIMEOUT_SECONDS = 120


def pg_bin() -> Path | None:
    """The newest directory holding initdb and pg_ctl (Debian's layout), else one on PATH."""
    for candidate in sorted(glob.glob(PG_BIN_GLOB), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def unavailable_reason() -> str | None:
    """Why no throwaway cluster can be made here, or None."""
    if pg_bin() is None:
        return f"initdb and pg_ctl not found under {PG_BIN_GLOB} or on PATH"
    if _as_root():
        if shutil.which("runuser") is None:
            return "as root, runuser is needed to run initdb as the postgres user"
        try:
            import pwd

            pwd.getpwnam(SERVER_USER)
        except (ImportError, KeyError):
            return f"as root, a {SERVER_USER!r} user is needed to run the server"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayCluster:
    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.bin = bin_dir
        self.port = _free_port()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if _as_root():
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}\n"
                f"{self.server_log()}"
            )
        return result

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", SERVER_USER, "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0


@contextmanager
def throwaway_cluster() -> Iterator[ThrowawayCluster]:
    """Call :func:`unavailable_reason` first; this raises where it says one cannot be made."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    bin_dir = pg_bin()
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="prismq-pg-"))
    try:
        if _as_root():
            shutil.chown(root, user=SERVER_USER, group=None)
        cluster = ThrowawayCluster(root, bin_dir)
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.is_running():
                cluster.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
