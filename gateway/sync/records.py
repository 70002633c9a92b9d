"""Canonical records: what every connector yields, whatever its platform's shape.

A connector's job ends at these records; normalisation (E.164 phones → keyed hashes, merging into
ONE ID, earning) is the runner's. Records carry neither a tenant nor a channel: the runner stamps
both from the connection the sync runs for, so a connector cannot write into another tenant.

Each record type has a versioned JSON Schema in ``schema/records/<type>.v<N>.json`` describing its
:meth:`to_json` form (the interchange and test form). In Python the records are frozen dataclasses
with aware datetimes and integer fen, checked on construction so a mapping bug fails at the line
that produced it rather than deep inside the runner.

Identifier values (phones, ids) are hidden from ``repr`` so that logging a record never leaks them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar

from gateway.identity.model import IdentifierInput, ProfileInput
from gateway.tags.scene import JoinScene

SCHEMA_VERSION = 1
MAX_FEN = 10**12
_KEY = re.compile(r"^[A-Za-z0-9_.:#/@+=-]{1,64}$")
ORDER_STATUSES = ("created", "paid", "completed", "cancelled")


class RecordError(ValueError):
    """A record a connector built is malformed (a mapping bug in the connector)."""


def _aware(value: Any, name: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise RecordError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _fen(value: Any, name: str, *, signed: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{name} must be integer fen, got {type(value).__name__}")
    if not (-MAX_FEN if signed else 0) <= value <= MAX_FEN:
        raise RecordError(f"{name}={value} is out of range")


def _key(value: Any, name: str) -> None:
    if not isinstance(value, str) or not _KEY.match(value):
        raise RecordError(f"{name} must be 1-64 letters, digits or _.:#/@+=-, got {value!r}")


def _idents(values: Any, name: str) -> None:
    if not isinstance(values, tuple):
        raise RecordError(f"{name} must be a tuple of Identifier")
    for v in values:
        if not isinstance(v, IdentifierInput):
            raise RecordError(f"{name} must contain Identifier values, got {type(v).__name__}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _ident_json(values: tuple[IdentifierInput, ...]) -> list[dict[str, Any]]:
    return [{"kind": i.kind, "scope": i.scope, "value": i.value} for i in values]


def _profile_json(p: ProfileInput | None) -> dict[str, Any] | None:
    if p is None:
        return None
    out: dict[str, Any] = {"verified": p.verified}
    for name in ("name", "gender", "city"):
        if getattr(p, name) is not None:
            out[name] = getattr(p, name)
    if p.birthday is not None:
        out["birthday"] = p.birthday.isoformat()
    if p.observed_at is not None:
        out["observed_at"] = p.observed_at.isoformat()
    return out


def Identifier(kind: str, scope: str | None, value: str) -> IdentifierInput:
    """An identifier as the channel reports it, e.g. ``Identifier("phone", None, "138…")``.

    ``scope`` is the platform scope the value is unique in (appid, shop, brand); ``None`` for
    global kinds (phone, email, omid). The runner normalises and hashes it.
    """
    return IdentifierInput(kind=kind, scope=scope, value=value)


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A member (or fan, or CRM customer) as one channel knows them.

    ``external_id`` is the channel's own id for the person (primary key of member streams);
    ``updated_at`` is the replication key. ``level`` and ``points`` are the channel's own view,
    kept for display and reconciliation; they do not move the ledger (points events do).
    ``scene`` is how the person joined (store QR code, guide, live room, campaign), when the
    channel knows it: a member *created* by this record gets the scene's tags and the scene in its
    ``member.joined`` event (an existing member is not re-tagged).
    """

    record_type: ClassVar[str] = "member"
    primary_key: ClassVar[str] = "external_id"

    external_id: str
    identifiers: tuple[IdentifierInput, ...]
    updated_at: datetime
    profile: ProfileInput | None = None
    joined_at: datetime | None = None
    level: str | None = None
    points: int | None = None
    scene: JoinScene | None = None

    def __post_init__(self) -> None:
        _key(self.external_id, "external_id")
        if self.scene is not None and not isinstance(self.scene, JoinScene):
            raise RecordError("scene must be a JoinScene")
        _idents(self.identifiers, "identifiers")
        if not self.identifiers:
            raise RecordError("a member record needs at least one identifier")
        _aware(self.updated_at, "updated_at")
        _aware(self.joined_at, "joined_at", optional=True)
        if self.profile is not None and not isinstance(self.profile, ProfileInput):
            raise RecordError("profile must be a Profile")

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": "member",
            "schema_version": SCHEMA_VERSION,
            "external_id": self.external_id,
            "identifiers": _ident_json(self.identifiers),
            "updated_at": _iso(self.updated_at),
            "profile": _profile_json(self.profile),
            "joined_at": _iso(self.joined_at),
            "level": self.level,
            "points": self.points,
        }
        if self.scene is not None:
            # Optional and only present when known: a document without it is the original v1.
            doc["scene"] = self.scene.payload()
        return doc


@dataclass(frozen=True, slots=True)
class OrderLineRecord:
    sku: str
    name: str
    quantity: int
    unit_price_fen: int
    amount_fen: int
    category: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sku, str) or not self.sku:
            raise RecordError("line sku must be a non-empty string")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise RecordError("line quantity must be an integer")
        _fen(self.unit_price_fen, "unit_price_fen")
        _fen(self.amount_fen, "amount_fen", signed=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "name": self.name,
            "category": self.category,
            "quantity": self.quantity,
            "unit_price_fen": self.unit_price_fen,
            "amount_fen": self.amount_fen,
        }


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """An order with its lines. ``status`` is canonical (created / paid / completed / cancelled);
    the connector maps its platform's statuses. ``buyer`` identifies the person who paid; a parcel
    receiver's phone goes in as the weak ``receiver_phone`` kind and never merges anyone."""

    record_type: ClassVar[str] = "order"
    primary_key: ClassVar[str] = "external_id"

    external_id: str
    status: str
    placed_at: datetime
    updated_at: datetime
    total_fen: int
    paid_fen: int
    lines: tuple[OrderLineRecord, ...]
    buyer: tuple[IdentifierInput, ...] = ()
    profile: ProfileInput | None = None
    paid_at: datetime | None = None
    store_code: str | None = None
    guide_code: str | None = None

    def __post_init__(self) -> None:
        _key(self.external_id, "external_id")
        if self.status not in ORDER_STATUSES:
            raise RecordError(f"status must be one of {ORDER_STATUSES}, got {self.status!r}")
        _aware(self.placed_at, "placed_at")
        _aware(self.updated_at, "updated_at")
        _aware(self.paid_at, "paid_at", optional=True)
        _fen(self.total_fen, "total_fen")
        _fen(self.paid_fen, "paid_fen")
        if not isinstance(self.lines, tuple) or not all(
            isinstance(line, OrderLineRecord) for line in self.lines
        ):
            raise RecordError("lines must be a tuple of OrderLine")
        _idents(self.buyer, "buyer")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "order",
            "schema_version": SCHEMA_VERSION,
            "external_id": self.external_id,
            "status": self.status,
            "placed_at": _iso(self.placed_at),
            "paid_at": _iso(self.paid_at),
            "updated_at": _iso(self.updated_at),
            "total_fen": self.total_fen,
            "paid_fen": self.paid_fen,
            "lines": [line.to_json() for line in self.lines],
            "buyer": _ident_json(self.buyer),
            "profile": _profile_json(self.profile),
            "store_code": self.store_code,
            "guide_code": self.guide_code,
        }


@dataclass(frozen=True, slots=True)
class RefundRecord:
    """Money returned on an order. ``refund_id`` is the platform's id (idempotency key);
    ``amount_fen`` is this refund's amount, not a running total."""

    record_type: ClassVar[str] = "refund"
    primary_key: ClassVar[str] = "refund_id"

    refund_id: str
    order_external_id: str
    amount_fen: int
    updated_at: datetime
    reason: str | None = None

    def __post_init__(self) -> None:
        _key(self.refund_id, "refund_id")
        _key(self.order_external_id, "order_external_id")
        _fen(self.amount_fen, "amount_fen")
        if self.amount_fen == 0:
            raise RecordError("a refund of 0 fen is not a refund")
        _aware(self.updated_at, "updated_at")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "refund",
            "schema_version": SCHEMA_VERSION,
            "refund_id": self.refund_id,
            "order_external_id": self.order_external_id,
            "amount_fen": self.amount_fen,
            "updated_at": _iso(self.updated_at),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class PointsEventRecord:
    """A points change that happened on the channel (e.g. Douyin member join push, a Tmall
    会员通 point change). ``delta`` moves the member's points; ``balance`` is the platform's
    absolute figure after the change, kept for reconciliation."""

    record_type: ClassVar[str] = "points_event"
    primary_key: ClassVar[str] = "event_id"

    event_id: str
    identifiers: tuple[IdentifierInput, ...]
    delta: int
    occurred_at: datetime
    reason: str
    balance: int | None = None

    def __post_init__(self) -> None:
        _key(self.event_id, "event_id")
        _idents(self.identifiers, "identifiers")
        if not self.identifiers:
            raise RecordError("a points event needs at least one identifier")
        if isinstance(self.delta, bool) or not isinstance(self.delta, int) or self.delta == 0:
            raise RecordError("delta must be a non-zero integer")
        _aware(self.occurred_at, "occurred_at")
        if not isinstance(self.reason, str) or not 1 <= len(self.reason) <= 200:
            raise RecordError("reason must be 1-200 characters")

    @property
    def updated_at(self) -> datetime:
        return self.occurred_at

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "points_event",
            "schema_version": SCHEMA_VERSION,
            "event_id": self.event_id,
            "identifiers": _ident_json(self.identifiers),
            "delta": self.delta,
            "balance": self.balance,
            "occurred_at": _iso(self.occurred_at),
            "reason": self.reason,
        }


Record = MemberRecord | OrderRecord | RefundRecord | PointsEventRecord
RECORD_TYPES: Mapping[str, type[Record]] = {
    "member": MemberRecord,
    "order": OrderRecord,
    "refund": RefundRecord,
    "points_event": PointsEventRecord,
}


def record_key(record: Record) -> str:
    """The record's primary-key value (unique within its stream)."""
    return str(getattr(record, record.primary_key))


def Profile(
    *,
    name: str | None = None,
    gender: str | None = None,
    birthday: date | None = None,
    city: str | None = None,
    verified: bool = False,
    observed_at: datetime | None = None,
) -> ProfileInput:
    """Profile facts from the channel (the runner keeps provenance per field)."""
    return ProfileInput(name, gender, birthday, city, verified, observed_at)


__all__ = [
    "ORDER_STATUSES",
    "RECORD_TYPES",
    "SCHEMA_VERSION",
    "Identifier",
    "JoinScene",
    "MemberRecord",
    "OrderLineRecord",
    "OrderRecord",
    "PointsEventRecord",
    "Profile",
    "Record",
    "RecordError",
    "RefundRecord",
    "record_key",
]
