"""Fixtures of the API tests: an in-process TestClient on either backend, and real servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api import create_app
from queue_core.database import Database
from queue_core.settings import QueueSettings

SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 15.0


@pytest.fixture
def make_client(db_url: str) -> Iterator[Callable[..., TestClient]]:
    """Builds TestClients over create_app on the parametrised backend; settings by keyword."""
    opened: list[tuple[TestClient, Database]] = []

    def make(**settings: object) -> TestClient:
        db = Database(db_url, QueueSettings(**settings))  # type: ignore[arg-type]
        client = TestClient(create_app(database=db), raise_server_exceptions=False)
        client.__enter__()
        opened.append((client, db))
        return client

    yield make
    for client, db in opened:
        client.__exit__(None, None, None)
        db.dispose()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def db_for(db_url: str) -> Iterator[Database]:
    """A second handle on the client's database, for arranging state the API cannot make."""
    db = Database(db_url)
    yield db
    db.dispose()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "queue_core.cli", *args]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRISMQ_QUEUE_")}
    env.update(extra)
    return env


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            if sys.platform == "win32":
                self.process.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_process(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    flags = 0
    if sys.platform == "win32":
        flags = subprocess.CREATE_NEW_PROCESS_GROUP
    with log.open("wb") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, creationflags=flags
        )


def wait_until_serving(server: Server, timeout: float = SERVER_START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited early:\n{server.output()}")
        try:
            httpx.get(f"{server.base_url}/health", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise AssertionError(f"the server did not answer within {timeout} s:\n{server.output()}")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts `prismq-queue <command> --port <free port> ...` and waits until it answers."""
    servers: list[Server] = []

    def start(
        database_url: str, *args: str, command: str = "api", env: dict[str, str] | None = None
    ) -> Server:
        port = free_port()
        log = tmp_path / f"{command}-{port}.log"
        argv = cli_command(command, "--port", str(port), "--database-url", database_url, *args)
        process = start_process(argv, log, child_env(**(env or {})))
        server = Server(process, f"http://127.0.0.1:{port}", log)
        servers.append(server)
        wait_until_serving(server)
        return server

    yield start
    for server in servers:
        server.stop()
