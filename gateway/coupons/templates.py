"""Coupon templates: create (validated), read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from gateway.coupons.model import KINDS, VALIDITIES, T, Template, template_from_row
from gateway.errors import InvalidInput, NotFound
from gateway.ids import uuid7
from gateway.ledger import validation as v
from gateway.ledger.accounts import MAX_AMOUNT
from gateway.sql import upsert_insert
from gateway.storage.db import Tx

MAX_VALID_DAYS = 3660
MAX_SCOPE = 500


def _fen(value: object, field: str, *, zero: bool = False) -> int:
    low = 0 if zero else 1
    if type(value) is not int or not low <= value <= MAX_AMOUNT:
        raise InvalidInput(
            f"{field} must be an integer number of fen in {low}..{MAX_AMOUNT}", field
        )
    return value


def _count(value: object, field: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= MAX_AMOUNT:
        raise InvalidInput(f"{field} must be a positive integer or null (no limit)", field)
    return value


def _scope(value: object, field: str) -> list[str] | None:
    if value is None:
        return None
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not 1 <= len(value) <= MAX_SCOPE
        or any(not isinstance(x, str) or not x.strip() or len(x) > 64 for x in value)
    ):
        raise InvalidInput(
            f"{field} must be null (all) or a non-empty list of 1-64 character codes", field
        )
    return sorted(set(value))


async def create_template(
    tx: Tx,
    *,
    code: str,
    title: str,
    kind: str,
    validity: str,
    threshold_fen: int = 0,
    off_fen: int | None = None,
    percent: int | None = None,
    cap_fen: int | None = None,
    gift_sku: str | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    valid_days: int | None = None,
    channels: Sequence[str] | None = None,
    store_codes: Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
    stackable: bool = False,
    total_limit: int | None = None,
    per_member_limit: int | None = None,
    returnable_on_refund: bool = False,
    active: bool = True,
    now: datetime | None = None,
) -> Template:
    """Create a template; every field is validated first (``InvalidInput`` names the field) and a
    code already used in this tenant is ``InvalidInput(field="code")``."""
    now = v.now_or(now)
    v.text(code, "code", 64)
    v.text(title, "title", 200)
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind")
    threshold_fen = _fen(threshold_fen, "threshold_fen", zero=True)
    if kind == "amount_off":
        off_fen = _fen(off_fen, "off_fen")
        if threshold_fen and off_fen > threshold_fen:
            raise InvalidInput("off_fen cannot exceed threshold_fen", field="off_fen")
    elif off_fen is not None:
        raise InvalidInput("off_fen is only for amount_off templates", field="off_fen")
    if kind == "percent_off":
        if type(percent) is not int or not 1 <= percent <= 99:
            raise InvalidInput("percent must be an integer in 1..99", field="percent")
        cap_fen = None if cap_fen is None else _fen(cap_fen, "cap_fen")
    elif percent is not None or cap_fen is not None:
        field = "percent" if percent is not None else "cap_fen"
        raise InvalidInput(f"{field} is only for percent_off templates", field=field)
    if kind == "gift":
        v.text(gift_sku, "gift_sku", 64)
    elif gift_sku is not None:
        raise InvalidInput("gift_sku is only for gift templates", field="gift_sku")
    if validity == "fixed":
        v.aware(starts_at, "starts_at")
        v.aware(ends_at, "ends_at")
        if starts_at is None or ends_at is None:
            field = "starts_at" if starts_at is None else "ends_at"
            raise InvalidInput("fixed validity needs starts_at and ends_at", field=field)
        if ends_at <= starts_at:
            raise InvalidInput("ends_at must be after starts_at", field="ends_at")
        if valid_days is not None:
            raise InvalidInput("valid_days is only for relative validity", field="valid_days")
    elif validity == "relative":
        if type(valid_days) is not int or not 1 <= valid_days <= MAX_VALID_DAYS:
            raise InvalidInput(
                f"valid_days must be an integer in 1..{MAX_VALID_DAYS}", "valid_days"
            )
        if starts_at is not None or ends_at is not None:
            field = "starts_at" if starts_at is not None else "ends_at"
            raise InvalidInput("relative validity has no fixed window", field=field)
    else:
        raise InvalidInput(f"validity must be one of {', '.join(VALIDITIES)}", field="validity")
    scopes = {
        "channels": _scope(channels, "channels"),
        "store_codes": _scope(store_codes, "store_codes"),
        "categories": _scope(categories, "categories"),
    }
    total_limit = _count(total_limit, "total_limit")
    per_member_limit = _count(per_member_limit, "per_member_limit")
    for name, flag in (
        ("stackable", stackable),
        ("returnable_on_refund", returnable_on_refund),
        ("active", active),
    ):
        if not isinstance(flag, bool):
            raise InvalidInput(f"{name} must be true or false", field=name)

    tid = uuid7()
    ins = (
        upsert_insert(tx, T)
        .values(
            tenant_id=tx.tenant_id,
            id=tid,
            code=code,
            title=title,
            kind=kind,
            threshold_fen=threshold_fen,
            off_fen=off_fen,
            percent=percent,
            cap_fen=cap_fen,
            gift_sku=gift_sku,
            validity=validity,
            starts_at=starts_at,
            ends_at=ends_at,
            valid_days=valid_days,
            stackable=stackable,
            total_limit=total_limit,
            per_member_limit=per_member_limit,
            returnable_on_refund=returnable_on_refund,
            active=active,
            issued=0,
            created_at=now,
            updated_at=now,
            **scopes,
        )
        .on_conflict_do_nothing(index_elements=[T.c.tenant_id, T.c.code])
        .returning(T.c.id)
    )
    if (await tx.conn.execute(ins)).first() is None:
        raise InvalidInput(f"a coupon template with code {code!r} already exists", field="code")
    return await get_template(tx, tid)


async def get_template(tx: Tx, template: uuid.UUID | str) -> Template:
    """A template by id or code; ``NotFound`` when absent (or another tenant's)."""
    key = T.c.id if isinstance(template, uuid.UUID) else T.c.code
    row = (
        await tx.conn.execute(select(T).where(T.c.tenant_id == tx.tenant_id, key == template))
    ).first()
    if row is None:
        raise NotFound("no such coupon template", template=str(template))
    return template_from_row(row)
