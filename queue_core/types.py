"""Column types whose storage differs per dialect but whose Python values do not."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Dialect
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.dialects.sqlite import JSON as SQLITE_JSON
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from queue_core.clock import ensure_utc, from_micros, to_micros


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC instant.

    PostgreSQL stores ``timestamptz``. SQLite stores whole microseconds since the Unix epoch as
    an INTEGER: integers compare correctly in SQL whoever wrote them, which text does not (an
    earlier design lost every delayed task comparing ``2024-01-01T10:00`` with
    ``2024-01-01 10:00`` as strings). A CHECK constraint keeps text out of these columns.
    """

    impl = BigInteger
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(BigInteger())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if dialect.name == "postgresql":
            return ensure_utc(value)
        return to_micros(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return ensure_utc(value)
        return from_micros(int(value))


JsonDocument = JSON().with_variant(JSONB(), "postgresql")
"""JSON text on SQLite (read with JSON1), ``jsonb`` on PostgreSQL (containment operators)."""


class _SqliteJsonText(SQLITE_JSON):
    """SQLite JSON declared TEXT. A column declared ``JSON`` gets NUMERIC affinity, so SQLite
    turns a stored document that is a bare number (a handler returning ``2.0``) into a number,
    which the JSON decoder then cannot read; TEXT affinity keeps the exact text."""


@compiles(_SqliteJsonText, "sqlite")
def _json_text_sqlite(type_: _SqliteJsonText, compiler: Any, **kw: Any) -> str:
    return "TEXT"


JsonText = JSON().with_variant(_SqliteJsonText(), "sqlite")
"""JSON kept as the exact text it was written as, on both dialects (``json`` on PostgreSQL).

For the user's own documents, which the queue hands back and never looks inside (payload,
result): ``jsonb`` would normalise them, turning the float ``3.176370847049455e16`` into the
integer ``31763708470494550``, ``-0.0`` into ``0.0``, and reordering keys."""


class utc_now_default(FunctionElement[datetime]):
    """The database's own "now" in the storage of :class:`UtcDateTime`, for server defaults."""

    type = UtcDateTime()
    inherit_cache = True


@compiles(utc_now_default, "postgresql")
def _now_postgresql(element: utc_now_default, compiler: SQLCompiler, **kw: Any) -> str:
    return "now()"


# julianday() exists in every SQLite build; unixepoch() would need 3.38.
SQLITE_NOW_MICROS = "(CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))"


@compiles(utc_now_default, "sqlite")
def _now_sqlite(element: utc_now_default, compiler: SQLCompiler, **kw: Any) -> str:
    return SQLITE_NOW_MICROS
