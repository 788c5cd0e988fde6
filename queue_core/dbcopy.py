"""`prismq-queue db copy --to URL`: move a whole queue to another database, either direction.

Every table of the migrated schema is copied generically (reflected from the target after it
has been migrated to head), so a table added by a later revision comes along without a change
here. Rows keep their ids. Values are converted where the two backends store them differently:
instants (epoch microseconds on SQLite, ``timestamptz`` on PostgreSQL), JSON (text on SQLite,
``json``/``jsonb`` on PostgreSQL) and booleans.

Resuming: tables with a single integer primary key (``task_queue``, ``task_logs``, ...) are
copied in id order, one transaction per batch, from the largest id the target already holds,
so an interrupted copy picks up where it stopped. Other tables (workers, schedules, small
settings tables) are small: their rows are inserted or overwritten by primary key.

At the end the row counts of every table and a checksum of every task are compared; a
mismatch is an error naming the first differing task ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    and_,
    func,
    select,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import JSON

from queue_core.clock import from_micros, to_micros
from queue_core.database import Database
from queue_core.errors import QueueError
from queue_core.repositories.workers import WorkerRepository
from queue_core.settings import COPY_BATCH_SIZE

TASK_TABLE = "task_queue"
SKIPPED_TABLES = frozenset({"alembic_version"})
MISMATCHES_SHOWN = 5

Progress = Callable[[str, int, int], None]
"""Called after each batch with (table name, rows copied so far, rows in the source)."""


class CopyError(QueueError):
    """The copy cannot start or did not verify; the message says why in one line."""


@dataclass
class TableReport:
    name: str
    source_rows: int
    target_rows: int
    copied: int


@dataclass
class CopyReport:
    tables: list[TableReport] = field(default_factory=list)
    tasks_checksum: str = ""
    tasks_verified: int = 0

    @property
    def copied(self) -> int:
        return sum(table.copied for table in self.tables)


# --- values: what differs between the backends' storage --------------------------------

_PLAIN, _TIME, _JSON, _BOOL = "plain", "time", "json", "bool"


def _kind(source: Column[Any], target: Column[Any]) -> str:
    types = (source.type, target.type)
    if any(isinstance(t, DateTime) for t in types):
        return _TIME
    if any(isinstance(t, JSON) for t in types):
        return _JSON
    if any(isinstance(t, Boolean) for t in types):
        return _BOOL
    return _PLAIN


def _converter(source: Column[Any], target: Column[Any]) -> Callable[[Any], Any] | None:
    """How a value read from ``source`` is written to ``target``; None when as it is."""
    kind = _kind(source, target)
    src_json, dst_json = isinstance(source.type, JSON), isinstance(target.type, JSON)
    if kind == _TIME:
        if isinstance(target.type, DateTime):
            return lambda v: from_micros(int(v)) if isinstance(v, int) else v
        return lambda v: to_micros(v) if isinstance(v, datetime) else v
    if kind == _JSON and src_json != dst_json:
        if dst_json:  # JSON kept as text on the source
            return lambda v: orjson.loads(v) if isinstance(v, str | bytes) else v
        return lambda v: None if v is None else orjson.dumps(v).decode()
    if kind == _BOOL:
        if isinstance(target.type, Boolean):
            return lambda v: None if v is None else bool(v)
        return lambda v: None if v is None else int(v)
    return None


def _normaliser(column: Column[Any], kind: str) -> Callable[[Any], Any]:
    """One representation of a value whichever backend it was read from (for checksums)."""
    is_json = isinstance(column.type, JSON)
    if kind == _TIME:
        return lambda v: to_micros(v) if isinstance(v, datetime) else v
    if kind == _JSON:
        return lambda v: _canonical_json(
            orjson.loads(v) if isinstance(v, str) and not is_json else v
        )
    if kind == _BOOL:
        return lambda v: None if v is None else bool(v)
    return lambda v: v


def _canonical_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# --- the copy ------------------------------------------------------------------------------


@dataclass
class _TablePair:
    source: Table
    target: Table
    columns: list[str]
    converters: dict[str, Callable[[Any], Any]]
    kinds: dict[str, str]

    @property
    def key(self) -> list[str]:
        return [c.name for c in self.target.primary_key.columns]

    @property
    def integer_key(self) -> str | None:
        key = list(self.target.primary_key.columns)
        if len(key) == 1 and isinstance(key[0].type, Integer):
            return key[0].name
        return None

    def convert(self, row: Any) -> dict[str, Any]:
        mapping = row._mapping
        out: dict[str, Any] = {}
        for name in self.columns:
            value = mapping[name]
            convert = self.converters.get(name)
            out[name] = convert(value) if convert is not None and value is not None else value
        return out


def copy_queue(
    source: Database,
    target: Database,
    *,
    force: bool = False,
    batch_size: int = COPY_BATCH_SIZE,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every table of ``source`` into ``target`` (migrated to head first), then verify."""
    from queue_core import migrate  # Alembic: imported only when a copy runs

    if batch_size < 1:
        raise CopyError("the batch size must be at least 1")
    if source.url == target.url:
        raise CopyError("the source and the target are the same database")
    with _reachable("source", source):
        source_revision = migrate.current_revision(source)
    head = migrate.head_revision()
    if source_revision is None:
        raise CopyError(f"the source database at {source.safe_url} has no queue schema")
    if source_revision != head:
        raise CopyError(
            f"the source is at revision {source_revision}, not {head}: "
            "run `prismq-queue db upgrade` on it first"
        )
    if not force:
        _refuse_active_workers(source, "source")
    with _reachable("target", target):
        migrate.upgrade(target)
    if not force:
        _refuse_active_workers(target, "target")

    pairs = _table_pairs(source, target)
    report = CopyReport()
    for pair in pairs:
        report.tables.append(_copy_table(source, target, pair, batch_size, progress))
    with target.write() as conn:
        for pair in pairs:
            if pair.integer_key is not None:
                target.dialect.reset_id_sequence(conn, pair.target.name, pair.integer_key)
    _verify_counts(source, target, report)
    task_pair = next((p for p in pairs if p.target.name == TASK_TABLE), None)
    if task_pair is not None:
        report.tasks_checksum, report.tasks_verified = _verify_tasks(
            source, target, task_pair, batch_size
        )
    return report


@contextmanager
def _reachable(role: str, db: Database) -> Iterator[None]:
    """Turns a driver error while opening a database into one clear line."""
    try:
        yield
    except DBAPIError as exc:
        first = (str(exc.orig or exc).strip().splitlines() or [""])[0]
        raise CopyError(f"cannot use the {role} database {db.safe_url}: {first}") from exc


def _refuse_active_workers(db: Database, role: str) -> None:
    active = [w.worker_id for w in WorkerRepository(db).list() if w.status == "active"]
    if active:
        shown = ", ".join(active[:MISMATCHES_SHOWN]) + (", ..." if len(active) > 5 else "")
        raise CopyError(
            f"{len(active)} worker(s) are active on the {role} ({shown}): stop them first, "
            "or pass --force"
        )


def _table_pairs(source: Database, target: Database) -> list[_TablePair]:
    target_meta, source_meta = MetaData(), MetaData()
    with target.engine.connect() as conn:
        target_meta.reflect(bind=conn)
    with source.engine.connect() as conn:
        source_meta.reflect(bind=conn)
    pairs = []
    for table in target_meta.sorted_tables:  # parents before children (foreign keys)
        if table.name in SKIPPED_TABLES:
            continue
        source_table = source_meta.tables.get(table.name)
        if source_table is None:
            raise CopyError(f"the source has no table {table.name!r}; is it migrated to head?")
        columns = [c.name for c in table.columns if c.name in source_table.columns]
        converters, kinds = {}, {}
        for name in columns:
            kinds[name] = _kind(source_table.columns[name], table.columns[name])
            convert = _converter(source_table.columns[name], table.columns[name])
            if convert is not None:
                converters[name] = convert
        pairs.append(_TablePair(source_table, table, columns, converters, kinds))
    return pairs


def _count(db: Database, table: Table) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _copy_table(
    source: Database,
    target: Database,
    pair: _TablePair,
    batch_size: int,
    progress: Progress | None,
) -> TableReport:
    total = _count(source, pair.source)
    if pair.integer_key is not None:
        copied = _copy_by_id(source, target, pair, pair.integer_key, batch_size, total, progress)
    elif pair.key:
        copied = _copy_by_key(source, target, pair, batch_size)
    else:
        copied = _copy_keyless(source, target, pair)
    if progress is not None and pair.integer_key is None:
        progress(pair.target.name, total, total)
    return TableReport(pair.target.name, total, _count(target, pair.target), copied)


def _copy_by_id(
    source: Database,
    target: Database,
    pair: _TablePair,
    key: str,
    batch_size: int,
    total: int,
    progress: Progress | None,
) -> int:
    src_key, dst_key = pair.source.columns[key], pair.target.columns[key]
    with target.read() as conn:
        present, last = conn.execute(select(func.count(), func.max(dst_key))).one()
    if last is not None:
        # Only a prefix of this very source may be there already: an earlier, interrupted
        # copy. Every row of it is compared, so a changed source or a foreign target stops here.
        differing = _first_difference(
            _row_digests(source, pair.source, pair, batch_size, upto=last),
            _row_digests(target, pair.target, pair, batch_size, upto=last),
        )
        if differing is not None:
            raise CopyError(
                f"the target's {pair.target.name} already holds rows that are not an "
                f"interrupted copy of this source (id {differing} differs): "
                "copy into an empty database"
            )
    done, last = int(present), last if last is not None else None
    columns = [pair.source.columns[name] for name in pair.columns]
    while True:
        query = select(*columns).order_by(src_key).limit(batch_size)
        if last is not None:
            query = query.where(src_key > last)
        with source.read() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return done - int(present)
        with target.write() as conn:
            conn.execute(pair.target.insert(), [pair.convert(row) for row in rows])
        done += len(rows)
        last = rows[-1]._mapping[key]
        if progress is not None:
            progress(pair.target.name, done, total)


def _copy_by_key(source: Database, target: Database, pair: _TablePair, batch_size: int) -> int:
    """Small tables keyed by names: insert what is missing, overwrite what is there."""
    key = pair.key
    columns = [pair.source.columns[name] for name in pair.columns]
    with source.read() as conn:
        rows = [pair.convert(row) for row in conn.execute(select(*columns)).all()]
    with target.write() as conn:
        present = {tuple(r) for r in conn.execute(select(*(pair.target.columns[k] for k in key)))}
        new = [row for row in rows if tuple(row[k] for k in key) not in present]
        old = [row for row in rows if tuple(row[k] for k in key) in present]
        for start in range(0, len(new), batch_size):
            conn.execute(pair.target.insert(), new[start : start + batch_size])
        for row in old:
            where = and_(*(pair.target.columns[k] == row[k] for k in key))
            conn.execute(pair.target.update().where(where).values(**row))
    return len(new) + len(old)


def _copy_keyless(source: Database, target: Database, pair: _TablePair) -> int:
    if _count(target, pair.target):
        return 0  # nothing identifies its rows; the count check below judges it
    columns = [pair.source.columns[name] for name in pair.columns]
    with source.read() as conn:
        rows = [pair.convert(row) for row in conn.execute(select(*columns)).all()]
    if rows:
        with target.write() as conn:
            conn.execute(pair.target.insert(), rows)
    return len(rows)


# --- verification --------------------------------------------------------------------------


def _verify_counts(source: Database, target: Database, report: CopyReport) -> None:
    for table in report.tables:
        if table.source_rows != table.target_rows:
            raise CopyError(
                f"{table.name}: the source has {table.source_rows} rows, the target "
                f"{table.target_rows}"
            )


def _row_digests(
    db: Database, table: Table, pair: _TablePair, batch_size: int, upto: Any = None
) -> Iterator[tuple[Any, bytes]]:
    """(id, digest of the row's normalised values) for every row, in id order."""
    key = pair.integer_key
    assert key is not None
    key_column = table.columns[key]
    # Only the columns whose storage differs need normalising; the rest are hashed as read.
    normalisers = [
        (i, _normaliser(table.columns[n], pair.kinds[n]))
        for i, n in enumerate(pair.columns)
        if pair.kinds[n] != _PLAIN
    ]
    columns = [table.columns[name] for name in pair.columns]
    key_index = pair.columns.index(key)
    last: Any = None
    while True:
        query = select(*columns).order_by(key_column).limit(batch_size)
        if last is not None:
            query = query.where(key_column > last)
        if upto is not None:
            query = query.where(key_column <= upto)
        with db.read() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        for row in rows:
            values = list(row)
            for index, normalise in normalisers:
                values[index] = normalise(values[index])
            yield values[key_index], hashlib.sha256(orjson.dumps(values)).digest()
        last = rows[-1][key_index]


def _verify_tasks(
    source: Database, target: Database, pair: _TablePair, batch_size: int
) -> tuple[str, int]:
    """Compare a digest of every task on both sides; return the queue's checksum."""
    whole = hashlib.sha256()
    mismatched: list[Any] = []
    count = 0
    src = _row_digests(source, pair.source, pair, batch_size)
    dst = _row_digests(target, pair.target, pair, batch_size)
    for (src_id, src_digest), (dst_id, dst_digest) in _zip_longest(src, dst):
        if src_id != dst_id or src_digest != dst_digest:
            mismatched.append(src_id if src_id is not None else dst_id)
            if len(mismatched) >= MISMATCHES_SHOWN:
                break
            continue
        whole.update(src_digest)
        count += 1
    if mismatched:
        shown = ", ".join(str(i) for i in mismatched)
        raise CopyError(f"task checksum mismatch: tasks {shown} differ between source and target")
    return "sha256:" + whole.hexdigest(), count


def _first_difference(left: Iterator[tuple[Any, bytes]], right: Iterator[tuple[Any, bytes]]) -> Any:
    for a, b in _zip_longest(left, right):
        if a != b:
            return a[0] if a[0] is not None else b[0]
    return None


def _zip_longest(
    left: Iterator[tuple[Any, bytes]], right: Iterator[tuple[Any, bytes]]
) -> Iterator[tuple[tuple[Any, bytes], tuple[Any, bytes]]]:
    missing: tuple[Any, bytes] = (None, b"")
    while True:
        a = next(left, missing)
        b = next(right, missing)
        if a is missing and b is missing:
            return
        yield a, b


__all__: Sequence[str] = ("CopyError", "CopyReport", "TableReport", "copy_queue")
