"""Segment value object and the table handles shared by the segment modules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.storage.tables import Member, MemberTag, SegmentMember
from gateway.storage.tables import Segment as SegmentRow

S: Any = SegmentRow.__table__  # type: ignore[attr-defined]
SM: Any = SegmentMember.__table__  # type: ignore[attr-defined]
M: Any = Member.__table__  # type: ignore[attr-defined]
MT: Any = MemberTag.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Segment:
    """A named member filter. ``member_count`` and ``refreshed_at`` describe ``segment_member``
    as of the last build/refresh (static: the snapshot, adjusted by manual adds/removes)."""

    id: uuid.UUID
    code: str
    title: str
    filter: dict[str, Any]
    dynamic: bool
    member_count: int
    refreshed_at: datetime | None
    active: bool = True
    created_by: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


def segment_from_row(row: Any) -> Segment:
    m = row._mapping
    return Segment(**{f: m[f] for f in Segment.__dataclass_fields__})
