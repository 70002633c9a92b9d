"""Value types of the identity module and the Core table handles it writes through.

The dataclasses are what callers (the GraphQL layer, connectors' sync runner) see; rows never
leave as ORM objects, so nothing can lazily load across tenants or leak an identifier hash.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from gateway.errors import InvalidInput
from gateway.identifiers import NormalisedIdentifier
from gateway.storage.tables import Identity, Member, MemberAttribute, MergeRecord

M: Any = Member.__table__  # type: ignore[attr-defined]
A: Any = MemberAttribute.__table__  # type: ignore[attr-defined]
I: Any = Identity.__table__  # type: ignore[attr-defined]  # noqa: E741
MR: Any = MergeRecord.__table__  # type: ignore[attr-defined]

_CHANNEL = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")


def check_channel(channel: str) -> str:
    """Channels are data (``tmall``, ``wechat``, ``pos:store-12``), but bounded data."""
    if not isinstance(channel, str) or not _CHANNEL.match(channel):
        raise InvalidInput("channel must be 1-32 letters, digits or _.:-", field="channel")
    return channel


def check_aware(value: datetime, field_name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{field_name} must be a timezone-aware datetime", field=field_name)
    return value


@dataclass(frozen=True)
class IdentifierInput:
    """A raw identifier as a channel reports it; :func:`gateway.identifiers.normalise` checks it."""

    kind: str
    scope: str | None
    # Hidden from repr: a logged identifier must not leak a phone number or platform id.
    value: str = field(repr=False)


@dataclass(frozen=True)
class ProfileInput:
    """Profile facts from one channel; ``verified`` means the channel checked them (e.g. real-name
    verification), ``observed_at`` when the channel saw them (defaults to the ingest time)."""

    name: str | None = None
    gender: str | None = None
    birthday: date | None = None
    city: str | None = None
    verified: bool = False
    observed_at: datetime | None = None


@dataclass(frozen=True)
class IngestResult:
    member_id: uuid.UUID
    created: bool
    merged_ids: list[uuid.UUID] = field(default_factory=list)
    attached: list[NormalisedIdentifier] = field(default_factory=list)


@dataclass(frozen=True)
class MemberRow:
    id: uuid.UUID
    status: str
    merged_into: uuid.UUID | None
    name: str | None
    gender: str | None
    birthday: date | None
    city: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class IdentityRow:
    """What may be shown of an identity: the masked display, never the match hash."""

    kind: str
    scope: str
    display: str
    channel: str
    strong: bool
    created_at: datetime


@dataclass(frozen=True)
class AttributeRow:
    field: str
    value: str
    channel: str
    verified: bool
    observed_at: datetime


@dataclass(frozen=True)
class MemberFilter:
    name_contains: str | None = None
    channel: str | None = None
    identifier_kind: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    # A one-column SELECT of member ids the members must be in: how segment filters and segment
    # membership (``gateway.segments.reads.matching``) narrow the list without this module
    # knowing their language.
    within: Any = None


@dataclass(frozen=True)
class MergeInfo:
    id: uuid.UUID
    survivor_id: uuid.UUID
    loser_id: uuid.UUID
    created_at: datetime
    reason: str = ""
    status: str = "merged"
    undone_at: datetime | None = None


def member_row(r: Any) -> MemberRow:
    return MemberRow(
        id=r.id,
        status=r.status,
        merged_into=r.merged_into,
        name=r.name,
        gender=r.gender,
        birthday=r.birthday,
        city=r.city,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def merge_info(r: Any) -> MergeInfo:
    return MergeInfo(
        id=r.id,
        survivor_id=r.survivor_id,
        loser_id=r.loser_id,
        created_at=r.created_at,
        reason=r.reason,
        status=r.status,
        undone_at=r.undone_at,
    )
