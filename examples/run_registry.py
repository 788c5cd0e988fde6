"""A run registry kept in a JSON file: a stand-in for the application's own run table.

Any object with ``add_run``, ``update_run`` and ``get_run`` will do; a real backend keeps its
runs in its own database. A JSON file makes the examples' state easy to look at, and it
survives the process, which is what the crash-recovery example needs.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from workers.integration import Run, RunStatus

RUNS_FILE_ENV = "EXAMPLE_RUNS_FILE"
RUNS_FILE_DEFAULT = "runs.json"

_DATETIME_FIELDS = {"created_at", "started_at", "completed_at"}


def run_to_json(run: Run) -> dict[str, Any]:
    data = asdict(run)
    data["status"] = str(run.status)
    for name in _DATETIME_FIELDS:
        if data[name] is not None:
            data[name] = data[name].isoformat()
    return data


def run_from_json(data: dict[str, Any]) -> Run:
    known = {f.name for f in fields(Run)}
    values = {key: value for key, value in data.items() if key in known}
    values["status"] = RunStatus(values.get("status", "queued"))
    for name in _DATETIME_FIELDS & values.keys():
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name])
    return Run(**values)


class JsonFileRunRegistry:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path or os.environ.get(RUNS_FILE_ENV, RUNS_FILE_DEFAULT))
        self._lock = threading.Lock()

    def add_run(self, run: Run) -> None:
        self._write(run)

    def update_run(self, run: Run) -> None:
        self._write(run)

    def get_run(self, run_id: str) -> Run | None:
        data = self._load().get(run_id)
        return run_from_json(data) if data is not None else None

    def list_runs(self) -> list[Run]:
        return [run_from_json(data) for data in self._load().values()]

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            loaded: dict[str, dict[str, Any]] = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        return loaded

    def _write(self, run: Run) -> None:
        with self._lock:
            runs = self._load()
            runs[run.run_id] = run_to_json(run)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(json.dumps(runs, indent=2), "utf-8")
            os.replace(temporary, self.path)  # readers never see half a file
