"""Small dialect helpers shared by the identity, order and event modules.

SQLite and PostgreSQL both speak ``INSERT … ON CONFLICT``, but SQLAlchemy exposes it through
dialect-specific ``insert`` constructs; picking the right one per transaction keeps every
idempotent write a single statement on both backends.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from gateway.storage.db import Tx


def upsert_insert(tx: Tx, table: Table) -> Any:
    """An ``INSERT`` for ``table`` with ``on_conflict_do_nothing/update`` on this backend."""
    if tx.is_postgres:
        return postgresql.insert(table)
    return sqlite.insert(table)


def like_escape(text: str) -> str:
    """Escape ``%``, ``_`` and the escape character itself for a ``LIKE … ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
