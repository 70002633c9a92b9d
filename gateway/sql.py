"""Small dialect helpers shared by the identity, order, event and ledger modules.

SQLite and PostgreSQL both speak ``INSERT … ON CONFLICT``, but SQLAlchemy exposes it through
dialect-specific ``insert`` constructs; picking the right one per transaction keeps every
idempotent write a single statement on both backends. The batch reads behind the API's
DataLoaders use :func:`in_ids` and :class:`BatchRead` to stay cheap in CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, any_, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from gateway.storage.db import Tx


def upsert_insert(tx: Tx, table: Table) -> Any:
    """An ``INSERT`` for ``table`` with ``on_conflict_do_nothing/update`` on this backend."""
    if tx.is_postgres:
        return postgresql.insert(table)
    return sqlite.insert(table)


@functools.cache
def unnest_insert_sql(table: Table, cols: tuple[str, ...], suffix: str) -> str:
    """PostgreSQL ``INSERT INTO table (cols) SELECT * FROM unnest($1::type[], …) suffix``: one
    array parameter per column, so the statement text (and asyncpg's prepared statement) is the
    same whatever the number of rows. ``suffix``: ``ON CONFLICT …``, ``RETURNING …``."""
    arrays = ", ".join(
        f"${i}::{table.c[c].type.compile(dialect=postgresql.dialect())}[]"
        for i, c in enumerate(cols, 1)
    )
    return f"INSERT INTO {table.name} ({', '.join(cols)}) SELECT * FROM unnest({arrays}) {suffix}"


def like_escape(text: str) -> str:
    """Escape ``%``, ``_`` and the escape character itself for a ``LIKE … ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def in_ids(column: Any, dialect: str, name: str = "ids") -> Any:
    """``column`` is one of the ids bound (as a list) to the parameter ``name``.

    Why not plain ``column.in_(ids)``: SQLAlchemy renders an ``IN`` list as one bind parameter per
    id, on every call (``_literal_execute_expanding_parameter``), and PostgreSQL then plans a
    different statement for every list length. On PostgreSQL this binds ONE array parameter
    (``column = ANY($n::UUID[])``), so the SQL text is the same for every batch and a prepared
    statement can be reused. SQLite has no arrays, so there it stays an expanding ``IN``.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


class BatchRead:
    """A read statement built once per dialect and executed with named parameters.

    Why: the DataLoader batch reads run on every API request, and building a SQLAlchemy statement,
    generating its cache key, rendering an ``IN`` list and running per-value result processors
    cost several times the database round trip. ``build(dialect)`` is called once per dialect
    (use :func:`in_ids` and ``bindparam`` for everything that varies). On PostgreSQL the statement
    is compiled once for asyncpg and sent straight to ``tx.driver`` (the asyncpg connection that
    owns the tenant's transaction, so ``app.tenant_id`` and row-level security apply), where it is
    a prepared statement in asyncpg's cache; elsewhere it runs through ``tx.conn``.

    Rows come back as asyncpg ``Record``s or SQLAlchemy ``Row``s: read them by position only.
    The driver path skips SQLAlchemy's type processing, which is safe only for column types that
    asyncpg already returns in their Python form (UUIDs, ints, text, booleans, dates, and
    timestamptz as aware UTC datetimes, which is what ``AwareDateTime`` returns), so do not select
    JSON columns or other processed types through it. Parameters must likewise be plain values
    (aware datetimes, UUIDs, lists of UUIDs for :func:`in_ids`).
    """

    __slots__ = ("_build", "_pg", "_statements")

    def __init__(self, build: Callable[[str], Any]) -> None:
        self._build = build
        self._statements: dict[str, Any] = {}
        self._pg: tuple[str, tuple[str, ...], dict[str, Any]] | None = None

    def statement(self, dialect: str) -> Any:
        stmt = self._statements.get(dialect)
        if stmt is None:
            stmt = self._statements[dialect] = self._build(dialect)
        return stmt

    def _compiled_pg(self) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        if self._pg is None:
            compiled = self.statement("postgresql").compile(dialect=_ASYNCPG_DIALECT)
            names = tuple(compiled.positiontup or ())
            # Literals in the statement (``coalesce(x, 0)``) are anonymous bind parameters.
            literals = {n: b.effective_value for n, b in compiled.binds.items() if not b.required}
            self._pg = (compiled.string, names, literals)
        return self._pg

    async def fetch(self, tx: Tx, **params: Any) -> Sequence[Any]:
        """All rows of the statement for ``params`` inside ``tx``."""
        if tx.driver is not None:
            sql, names, defaults = self._compiled_pg()
            args = [params[n] if n in params else defaults[n] for n in names]
            return await tx.driver.fetch(sql, *args)  # type: ignore[no-any-return]
        return (await tx.conn.execute(self.statement(tx.dialect), params)).all()

    async def execute(self, tx: Tx, **params: Any) -> None:
        """Run a statement that returns no rows (an ``INSERT … ON CONFLICT DO NOTHING``)."""
        if tx.driver is not None:
            sql, names, defaults = self._compiled_pg()
            args = [params[n] if n in params else defaults[n] for n in names]
            await tx.driver.execute(sql, *args)
            return
        await tx.conn.execute(self.statement(tx.dialect), params)


_ASYNCPG_DIALECT = asyncpg_dialect.dialect()
