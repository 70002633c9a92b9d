"""Member events: immutable facts with stable ids (order paid, order refunded, check-in, ...).

An event's id is derived from what happened (``derived_id(tenant, "order", order_id, "paid")``),
so recording the same fact twice is a no-op and everything downstream of an event (the earning
path, its ledger writes keyed by the event id) is replay-safe.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite

from gateway.errors import InvalidInput
from gateway.sql import BatchRead
from gateway.storage.db import Tx
from gateway.storage.tables import MemberEvent
from gateway.storage.types import utcnow

E: Any = MemberEvent.__table__  # type: ignore[attr-defined]
_COLUMNS = ("tenant_id", "id", "member_id", "type", "payload", "occurred_at", "created_at")
# Every order, check-in and tier change records one: built once (see gateway.sql.BatchRead).
_INSERT = BatchRead(
    lambda d: (
        (postgresql.insert if d == "postgresql" else sqlite.insert)(E)
        .values(**{c: bindparam(c, type_=E.c[c].type) for c in _COLUMNS})
        .on_conflict_do_nothing()
        .returning(E.c.id)
    )
)
_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


async def record_event(
    tx: Tx,
    *,
    event_id: uuid.UUID,
    member_id: uuid.UUID,
    type: str,
    payload: dict[str, Any],
    occurred_at: datetime,
) -> bool:
    """Insert an event unless one with this id exists; returns whether it was inserted.

    An existing event is never updated: events are immutable, and the first recording wins.
    """
    if not isinstance(type, str) or len(type) > 48 or not _TYPE.match(type):
        raise InvalidInput("event type must be dotted lower-case words (≤ 48)", field="type")
    if occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        raise InvalidInput("occurred_at must be timezone-aware", field="occurred_at")
    rows = await _INSERT.fetch(
        tx,
        tenant_id=tx.tenant_id,
        id=event_id,
        member_id=member_id,
        type=type,
        # The asyncpg driver path takes JSON as text; SQLAlchemy's path serialises the dict.
        payload=json.dumps(payload, default=str) if tx.driver is not None else payload,
        occurred_at=occurred_at,
        created_at=utcnow(),
    )
    return bool(rows)
