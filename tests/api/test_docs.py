"""Runs the examples of docs/api.md against real servers, so the documentation cannot rot.

Each ```bash block holding a `curl` command is preceded by `<!-- expect: STATUS [keyed] -->`.
The command is parsed into the equivalent httpx request (curl's own rules: `-d` means POST
and a form content type unless `-H` says otherwise) and sent, in document order, to a server
on a fresh database, or to a server with API keys for `keyed` examples. When a ```json block
follows at once, the answer must match it: the same keys (an object with a `"..."` key only
lists some), the same values except times, which vary.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, child_env, cli_command

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
DOC_BASE_URL = "http://127.0.0.1:8000"
DOC_KEY = "my-secret-key"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXPECT = re.compile(r"<!-- expect: (\d{3})( keyed)? -->\s*$")
# Values that differ from run to run: compared by presence only.
VOLATILE = re.compile(r".*_utc$|oldest_queued_age_seconds|log_id")


@dataclass
class Example:
    line: int
    command: str
    status: int
    keyed: bool
    response: Any = None
    has_response: bool = False


@dataclass
class CurlRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    data: str | None = None


def doc_examples() -> list[Example]:
    text = DOC.read_text(encoding="utf-8")
    blocks = list(FENCE.finditer(text))
    examples = []
    for index, block in enumerate(blocks):
        language, body = block.group(1), block.group(2)
        if language != "bash" or not body.lstrip().startswith("curl "):
            continue
        line = text.count("\n", 0, block.start()) + 1
        preceding = text[: block.start()].rstrip("\n").rsplit("\n", 1)[-1]
        expect = EXPECT.match(preceding)
        assert expect, f"docs/api.md:{line}: a curl example needs <!-- expect: STATUS --> before it"
        example = Example(line, body, int(expect.group(1)), bool(expect.group(2)))
        if index + 1 < len(blocks) and blocks[index + 1].group(1) == "json":
            import json

            example.response = json.loads(blocks[index + 1].group(2))
            example.has_response = True
        examples.append(example)
    return examples


def parse_curl(command: str) -> CurlRequest:
    args = shlex.split(command.replace("\\\n", " "))
    assert args[0] == "curl"
    method: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    data: str | None = None
    rest = iter(args[1:])
    for arg in rest:
        if arg == "-s":
            continue
        if arg == "-X":
            method = next(rest)
        elif arg == "-H":
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            data = next(rest)
        elif arg.startswith("http"):
            url = arg
        else:
            raise AssertionError(f"the docs test does not know curl option {arg!r}")
    assert url is not None
    if data is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    return CurlRequest(method or ("POST" if data is not None else "GET"), url, headers, data)


def matches(example: Any, actual: Any, where: str = "") -> None:
    if isinstance(example, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        listed = set(example) - {"..."}
        if "..." in example:
            assert listed <= set(actual), f"{where}: missing {listed - set(actual)}"
        else:
            assert listed == set(actual), f"{where}: keys {sorted(listed ^ set(actual))} differ"
        for key in listed:
            if not VOLATILE.fullmatch(key):
                matches(example[key], actual[key], f"{where}.{key}")
    elif isinstance(example, list):
        assert isinstance(actual, list), f"{where}: expected an array, got {actual!r}"
        assert len(example) == len(actual), f"{where}: {len(actual)} items, not {len(example)}"
        for i, (want, got) in enumerate(zip(example, actual, strict=True)):
            matches(want, got, f"{where}[{i}]")
    else:
        assert example == actual, f"{where}: {actual!r}, not {example!r}"


def test_every_curl_example_has_an_expected_status() -> None:
    examples = doc_examples()
    assert len(examples) >= 20
    paths = {parse_curl(e.command).url.split("?")[0].replace(DOC_BASE_URL, "") for e in examples}
    for documented in (
        "/api/queue/tasks",
        "/api/queue/enqueue",
        "/api/queue/tasks/batch",
        "/api/queue/tasks/1",
        "/api/queue/tasks/1/cancel",
        "/api/queue/tasks/1/retry",
        "/api/queue/tasks/1/logs",
        "/api/queue/stats",
        "/api/queue/workers",
        "/health",
        "/metrics",
    ):
        assert documented in paths, f"docs/api.md has no curl example for {documented}"


def test_doc_examples_run_against_a_real_server(
    start_server: Callable[..., Server], sqlite_url: str, tmp_path: Path
) -> None:
    from queue_core import migrate
    from queue_core.database import Database
    from queue_core.settings import sqlite_url_for

    open_server = start_server(sqlite_url)
    # What a fresh install serves at once: the interactive docs, offline, and the schema.
    docs = httpx.get(f"{open_server.base_url}/docs")
    assert docs.status_code == 200
    assert "swagger-ui-bundle.js" in docs.text
    assert httpx.get(f"{open_server.base_url}/static/swagger-ui-bundle.js").status_code == 200
    spec = httpx.get(f"{open_server.base_url}/openapi.json").json()
    assert "/api/queue/tasks/{task_id}" in spec["paths"]
    keyed_url = sqlite_url_for(tmp_path / "keyed.db")
    with Database(keyed_url) as db:
        migrate.upgrade(db)
    keyed_server = start_server(keyed_url, env={"PRISMQ_QUEUE_API_KEYS": f"{DOC_KEY},next-key"})
    with httpx.Client(timeout=30) as http:
        for example in doc_examples():
            server = keyed_server if example.keyed else open_server
            request = parse_curl(example.command)
            response = http.request(
                request.method,
                request.url.replace(DOC_BASE_URL, server.base_url),
                headers=request.headers,
                content=request.data,
            )
            where = f"docs/api.md:{example.line}"
            assert response.status_code == example.status, f"{where}: {response.text}"
            if example.has_response:
                matches(example.response, response.json(), where)


def test_the_refusal_shown_in_the_docs_is_what_the_cli_prints() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = next(
        m.group(2) for m in FENCE.finditer(text) if m.group(2).startswith("$ prismq-queue api")
    )
    command, expected = block.strip().split("\n", 1)
    argv = cli_command(*shlex.split(command.removeprefix("$ prismq-queue ")))
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=child_env(), check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip() == expected.strip()


@pytest.mark.parametrize(
    ("command", "method", "data", "content_type"),
    [
        ("curl -s http://x/a", "GET", None, None),
        ("curl -s -d '{}' http://x/a", "POST", "{}", "application/x-www-form-urlencoded"),
        (
            "curl -X POST http://x/a -H 'Content-Type: application/json' -d '{}'",
            "POST",
            "{}",
            "application/json",
        ),
    ],
)
def test_curl_parsing(
    command: str, method: str, data: str | None, content_type: str | None
) -> None:
    request = parse_curl(command)
    assert (request.method, request.data) == (method, data)
    assert request.headers.get("Content-Type") == content_type
