"""Profile provenance: which channel's value of a field wins.

Channels disagree (a Tmall nickname, a POS cashier's typo, a real-name-verified WeChat profile).
Each field keeps its provenance in ``member_attribute`` (channel, verified, observed_at) and the
``member`` row holds the current value for cheap reads. A new value wins when it is verified and
the current one is not, or when both have the same verification and the new one was observed
later. Older or less trustworthy data therefore never overwrites better data, whatever order the
syncs run in, which keeps replays harmless.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, update

from gateway.errors import InvalidInput
from gateway.identity.model import A, AttributeRow, M, ProfileInput, check_aware
from gateway.sql import upsert_insert
from gateway.storage.db import Tx

FIELDS = ("name", "gender", "birthday", "city")
GENDERS = frozenset({"male", "female", "unknown"})
_MIN_BIRTHDAY = date(1900, 1, 1)
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Fact:
    """One field value with its provenance (the shape of a ``member_attribute`` row)."""

    field: str
    value: str
    channel: str
    verified: bool
    observed_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "value": self.value,
            "channel": self.channel,
            "verified": self.verified,
            "observed_at": self.observed_at.isoformat(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Fact:
        return cls(
            d["field"],
            d["value"],
            d["channel"],
            d["verified"],
            datetime.fromisoformat(d["observed_at"]),
        )

    @classmethod
    def from_row(cls, r: Any) -> Fact:
        return cls(r.field, r.value, r.channel, bool(r.verified), r.observed_at)


def wins(new: Fact, current: Fact | None) -> bool:
    """The provenance rule (see the module docstring)."""
    if current is None:
        return True
    if new.field == "gender" and new.value == "unknown" and current.value != "unknown":
        return False  # "unknown" carries no information; it never erases a known gender.
    if new.verified != current.verified:
        return new.verified
    return new.observed_at > current.observed_at


def _text(value: Any, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", field=name)
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"{name} exceeds {limit} characters", field=name)
    return value or None  # channels send "" for "not provided"


def profile_facts(profile: ProfileInput, channel: str, now: datetime) -> list[Fact]:
    """Validate a profile and turn it into facts; nothing is written if any field is wrong."""
    observed = (
        now if profile.observed_at is None else check_aware(profile.observed_at, "observed_at")
    )
    if observed > now + _CLOCK_SKEW:
        # A future timestamp would make a value unbeatable by every later observation.
        raise InvalidInput("observed_at is in the future", field="observed_at")
    values: dict[str, str | None] = {
        "name": _text(profile.name, "name", 100),
        "city": _text(profile.city, "city", 100),
        "gender": None,
        "birthday": None,
    }
    if profile.gender is not None:
        if profile.gender not in GENDERS:
            raise InvalidInput("gender must be male, female or unknown", field="gender")
        values["gender"] = profile.gender
    if profile.birthday is not None:
        b = profile.birthday
        if not isinstance(b, date) or isinstance(b, datetime):
            raise InvalidInput("birthday must be a date", field="birthday")
        if b < _MIN_BIRTHDAY or b > now.date():
            raise InvalidInput("birthday must be after 1900 and not in the future", "birthday")
        values["birthday"] = b.isoformat()
    verified = bool(profile.verified)
    return [Fact(f, v, channel, verified, observed) for f in FIELDS if (v := values[f]) is not None]


def column_value(field_name: str, value: str | None) -> Any:
    if value is None:
        return None
    return date.fromisoformat(value) if field_name == "birthday" else value


async def load_facts(tx: Tx, member_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Fact]]:
    """Current provenance of the given members' fields, in one statement."""
    out: dict[uuid.UUID, dict[str, Fact]] = {m: {} for m in member_ids}
    if not member_ids:
        return out
    rows = await tx.conn.execute(
        select(A).where(A.c.tenant_id == tx.tenant_id, A.c.member_id.in_(member_ids))
    )
    for r in rows:
        out[r.member_id][r.field] = Fact.from_row(r)
    return out


async def write_facts(
    tx: Tx, member_id: uuid.UUID, facts: list[Fact], now: datetime, *, touch: bool = True
) -> None:
    """Store winning facts: one upsert for the provenance rows, one update of the member row."""
    if not facts:
        return
    ins = upsert_insert(tx, A).values(
        [
            {
                "tenant_id": tx.tenant_id,
                "member_id": member_id,
                "field": f.field,
                "value": f.value,
                "channel": f.channel,
                "verified": f.verified,
                "observed_at": f.observed_at,
            }
            for f in facts
        ]
    )
    await tx.conn.execute(
        ins.on_conflict_do_update(
            index_elements=[A.c.tenant_id, A.c.member_id, A.c.field],
            set_={
                "value": ins.excluded.value,
                "channel": ins.excluded.channel,
                "verified": ins.excluded.verified,
                "observed_at": ins.excluded.observed_at,
            },
        )
    )
    values: dict[str, Any] = {f.field: column_value(f.field, f.value) for f in facts}
    if touch:
        values["updated_at"] = now
    await tx.conn.execute(
        update(M).where(and_(M.c.tenant_id == tx.tenant_id, M.c.id == member_id)).values(**values)
    )


async def apply_profile(
    tx: Tx,
    member_id: uuid.UUID,
    facts: list[Fact],
    current: dict[str, Fact],
    now: datetime,
) -> list[Fact]:
    """Write the facts that beat the member's current provenance; returns what was written."""
    winners = [f for f in facts if wins(f, current.get(f.field))]
    await write_facts(tx, member_id, winners, now)
    return winners


def attribute_row(f: Fact) -> AttributeRow:
    return AttributeRow(f.field, f.value, f.channel, f.verified, f.observed_at)
