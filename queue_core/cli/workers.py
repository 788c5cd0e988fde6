"""`prismq-queue workers list`: the workers table, `active` or `stale` (CONTRACT §7)."""

from __future__ import annotations

import click

from queue_core.cli.options import database_option, echo_json, open_db
from queue_core.repositories import WorkerRepository
from queue_core.schemas import WorkerInfo


@click.group("workers")
def workers_group() -> None:
    """The workers table: who runs, who went quiet."""


@workers_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of worker objects.")
@database_option
def list_workers(as_json: bool, database_url: str | None) -> None:
    """List the registered workers, most recent heartbeat first, `active` or `stale`."""
    with open_db(database_url) as db:
        workers = WorkerRepository(db).list()
    if as_json:
        echo_json(workers)
        return
    click.echo(_table(workers))


def _table(workers: list[WorkerInfo]) -> str:
    header = ("WORKER", "STATUS", "HEARTBEAT (UTC)", "TYPES", "CAPABILITIES")
    rows = [
        (
            w.worker_id,
            w.status,
            w.heartbeat_utc.strftime("%Y-%m-%d %H:%M:%S"),
            ",".join(w.task_types)[:40],
            ",".join(f"{k}={v}" for k, v in sorted(w.capabilities.items()))[:40],
        )
        for w in workers
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )
