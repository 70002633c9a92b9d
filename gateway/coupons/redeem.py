"""Validating a coupon against an order, redeeming it, and giving it back on refund.

**The discount** (integer fen): the coupon covers the order lines in its ``categories`` (all lines
when null), capped by the order's ``total_fen``: that is ``eligible_fen``; ``threshold_fen`` is
compared with it. ``amount_off`` takes ``min(off_fen, eligible_fen)``; ``percent_off`` takes
``ceil(eligible_fen × percent / 100)`` — **rounded up, in the member's favour** — then at most
``cap_fen`` and at most ``eligible_fen``; ``shipping`` takes the order's ``shipping_fen``;
``gift`` takes nothing off and names the ``gift_sku``.

**Redemption** is one guarded ``UPDATE coupon … WHERE status = 'issued'``: of any number of
concurrent redemptions of one code exactly one matches (PostgreSQL re-checks the condition after
the row lock). It is idempotent twice over: the same ``idem_key`` returns the original result, and
the same code redeemed again for the same ``order_ref`` returns it too (``replayed=True``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update

from gateway.coupons import codes, events
from gateway.coupons.model import C, Discount, Order, OrderLine, T, Template
from gateway.errors import IdempotencyKeyReused, InvalidInput, InvalidTransition, NotEligible
from gateway.events import record_event
from gateway.identity.reads import resolve
from gateway.ledger import validation as v
from gateway.ledger.accounts import MAX_AMOUNT
from gateway.sql import BatchRead
from gateway.storage.db import Tx
from gateway.storage.types import utcnow


def _check_order(order: object) -> Order:
    if not isinstance(order, Order):
        raise InvalidInput("order must be an Order", field="order")
    v.text(order.channel, "order.channel", 32)
    v.text(order.store_code, "order.store_code", 64, optional=True)
    for name, amount in (("total_fen", order.total_fen), ("shipping_fen", order.shipping_fen)):
        if type(amount) is not int or not 0 <= amount <= MAX_AMOUNT:
            raise InvalidInput(
                f"order.{name} must be an integer in 0..{MAX_AMOUNT}", f"order.{name}"
            )
    d = order.discounted_fen
    if type(d) is not int or not 0 <= d <= order.total_fen:
        raise InvalidInput(
            "order.discounted_fen must be an integer in 0..total_fen", "order.discounted_fen"
        )
    if not isinstance(order.lines, Sequence) or len(order.lines) > 1000:
        raise InvalidInput("order.lines must be a list of at most 1000 lines", "order.lines")
    for line in order.lines:
        if not isinstance(line, OrderLine) or type(line.amount_fen) is not int:
            raise InvalidInput("each order line needs an integer amount_fen", "order.lines")
        if not 0 <= line.amount_fen <= MAX_AMOUNT:
            raise InvalidInput(f"line amount_fen must be in 0..{MAX_AMOUNT}", "order.lines")
    return order


async def _load(tx: Tx, code: str, *, lock: bool = False) -> tuple[Any, Template]:
    stmt = (
        select(C, *[T.c[f].label(f"t_{f}") for f in Template.__dataclass_fields__])
        .join(T, (T.c.tenant_id == C.c.tenant_id) & (T.c.id == C.c.template_id))
        .where(C.c.tenant_id == tx.tenant_id, C.c.code == code)
    )
    if lock and tx.is_postgres:
        stmt = stmt.with_for_update(of=C)
    row = (await tx.conn.execute(stmt)).first()
    if row is None:
        raise NotEligible("no such coupon", "NOT_FOUND")
    m = row._mapping
    template = Template(**{f: m[f"t_{f}"] for f in Template.__dataclass_fields__})
    return row, template


def _discount(row: Any, t: Template, order: Order, now: datetime) -> Discount:
    """The rule checks shared by validate and redeem (status aside)."""
    if row.status == "void":
        raise NotEligible("this coupon was voided", "VOID")
    if row.status == "expired" or now >= row.valid_until:
        raise NotEligible("this coupon has expired", "EXPIRED")
    if now < row.valid_from:
        raise NotEligible("this coupon is not valid yet", "NOT_STARTED")
    if t.channels is not None and order.channel not in t.channels:
        raise NotEligible(f"not valid on {order.channel}", "WRONG_CHANNEL")
    if t.store_codes is not None and order.store_code not in t.store_codes:
        raise NotEligible("not valid in this store", "WRONG_STORE")
    if t.categories is None:
        covered = sum(line.amount_fen for line in order.lines)
    else:
        lines = [line for line in order.lines if line.category in t.categories]
        if not lines:
            raise NotEligible("nothing in the order is covered", "CATEGORY_NOT_COVERED")
        covered = sum(line.amount_fen for line in lines)
    eligible = min(covered, order.total_fen - order.discounted_fen)
    if eligible < t.threshold_fen or (t.kind in ("amount_off", "percent_off") and eligible == 0):
        raise NotEligible(
            f"spend at least {t.threshold_fen} fen on covered items", "THRESHOLD_NOT_MET"
        )
    if t.kind == "amount_off":
        assert t.off_fen is not None
        off = min(t.off_fen, eligible)
    elif t.kind == "percent_off":
        assert t.percent is not None
        off = -(-eligible * t.percent // 100)  # ceil: rounding favours the member
        if t.cap_fen is not None:
            off = min(off, t.cap_fen)
        off = min(off, eligible)
    elif t.kind == "shipping":
        off = min(order.shipping_fen, order.total_fen - order.discounted_fen)
    else:
        off = 0
    return Discount(
        coupon_id=row.id,
        code=row.code,
        template_code=t.code,
        kind=t.kind,
        discount_fen=off,
        eligible_fen=eligible,
        gift_sku=t.gift_sku,
    )


async def _check_owner(tx: Tx, row: Any, member_id: uuid.UUID | None) -> None:
    if member_id is None or member_id == row.member_id:
        return
    mine = await resolve(tx, member_id)
    if mine is None or mine != (await resolve(tx, row.member_id)):
        raise NotEligible("this coupon belongs to another member", "NOT_YOURS")


async def validate(
    tx: Tx,
    code: str,
    order: Order,
    *,
    member_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> Discount:
    """What ``code`` takes off ``order`` for ``member_id`` (``None``: a bearer coupon check).

    A mistyped code is ``InvalidInput(field="code")`` before any lookup; every refusal is
    ``NotEligible`` with a reason from :data:`~gateway.coupons.model.REASONS`. Read-only.
    """
    canonical = codes.parse(code)
    order = _check_order(order)
    now = v.now_or(now)
    row, t = await _load(tx, canonical)
    await _check_owner(tx, row, member_id)
    if row.status == "redeemed":
        raise NotEligible("this coupon was already used", "ALREADY_REDEEMED")
    return _discount(row, t, order, now)


def _stored(row: Any, t: Template, *, replayed: bool) -> Discount:
    return Discount(
        coupon_id=row.id,
        code=row.code,
        template_code=t.code,
        kind=t.kind,
        discount_fen=int(row.discount_fen or 0),
        eligible_fen=int(row.discount_fen or 0) if t.kind != "gift" else 0,
        gift_sku=t.gift_sku,
        order_ref=row.order_ref,
        replayed=replayed,
    )


async def redeem(
    tx: Tx,
    code: str,
    order: Order,
    *,
    order_ref: str,
    idem_key: str,
    member_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> Discount:
    """Use ``code`` on the order ``order_ref``: validate, then the guarded status change.

    Same ``idem_key`` (same code and order) or the same code again for the same ``order_ref`` →
    the original discount with ``replayed=True``; the key with another code or order →
    ``IdempotencyKeyReused``; the key of a redemption since returned on refund →
    ``InvalidTransition`` (a late retry never re-uses the returned coupon). A non-stackable
    coupon refuses an order that already used another coupon (``NOT_STACKABLE``), and vice
    versa.

    Stores where (``order.channel``, ``order.store_code``) and on how large an order
    (``order.total_fen``) it was used, for the statistics, and records ``coupon.redeemed``.

    Two statements: one reads (and on PostgreSQL locks) the coupon with its template, the
    owner of ``idem_key`` and the other coupons already on ``order_ref``; one writes the
    redemption and its event (on PostgreSQL one data-modifying CTE). Both are prebuilt.
    """
    canonical = codes.parse(code)
    order = _check_order(order)
    v.text(order_ref, "order_ref", 128)
    v.text(idem_key, "idem_key", 128)
    now = v.now_or(now)

    row, t = await _load_for_redeem(tx, canonical, order_ref, idem_key)
    if row.redeem_key == idem_key:
        if row.status != "redeemed":  # a late retry must not re-use a returned coupon
            raise InvalidTransition("that redemption was returned on refund")
        if row.order_ref != order_ref:
            raise IdempotencyKeyReused("idempotency key already used for another order")
    elif row.key_code is not None:
        raise IdempotencyKeyReused("idempotency key already used for another coupon")
    await _check_owner(tx, row, member_id)
    if row.status == "redeemed":
        if row.order_ref == order_ref:
            return _stored(row, t, replayed=True)
        raise NotEligible("this coupon was already used", "ALREADY_REDEEMED")
    found = _discount(row, t, order, now)
    if row.others and (not t.stackable or row.others_stackable < row.others):
        raise NotEligible("this coupon cannot be combined with another", "NOT_STACKABLE")

    payload = {
        "coupon_id": str(row.id),
        "template_code": t.code,
        "order_ref": order_ref,
        "discount_fen": found.discount_fen,
        "channel": order.channel,
        "store_code": order.store_code,
    }
    params: dict[str, Any] = {
        "tenant_id": tx.tenant_id,
        "id": row.id,
        "now": now,
        "order_ref": order_ref,
        "discount_fen": found.discount_fen,
        "redeem_key": idem_key,
        "channel": order.channel,
        "store": order.store_code,
        "total": order.total_fen,
        "event_id": events.event_id(tx.tenant_id, row.id, "redeemed", idem_key),
        "created_at": utcnow(),
    }
    if tx.driver is not None:
        params["payload"] = json.dumps(payload)
        done = await tx.driver.fetchval(_PG_REDEEM, *(params[n] for n in _PG_REDEEM_PARAMS))
    else:
        done = (
            await tx.conn.execute(_SQLITE_REDEEM, {f"p_{k}": x for k, x in params.items()})
        ).first()
        if done is not None:
            await record_event(
                tx,
                event_id=params["event_id"],
                member_id=row.member_id,
                type="coupon.redeemed",
                payload=payload,
                occurred_at=now,
            )
    if done is None:  # SQLite never gets here (writers are serialised); PostgreSQL locks first
        raise NotEligible("this coupon was already used", "ALREADY_REDEEMED")
    return Discount(**{**found.__dict__, "order_ref": order_ref})


# ---- the redemption's two statements --------------------------------------------------------

_COUPON_COLS = (
    "id",
    "template_id",
    "member_id",
    "code",
    "status",
    "valid_from",
    "valid_until",
    "redeem_key",
    "order_ref",
    "discount_fen",
)
_TEMPLATE_COLS = tuple(Template.__dataclass_fields__)
_JSON_COLS = ("channels", "store_codes", "categories")


@dataclass(frozen=True)
class _Loaded:
    """The coupon row as the redemption reads it (``key_code``: the code of the coupon that
    holds ``idem_key``, if any; ``others``: other coupons redeemed on the order, of which
    ``others_stackable`` are stackable)."""

    id: uuid.UUID
    template_id: uuid.UUID
    member_id: uuid.UUID
    code: str
    status: str
    valid_from: datetime
    valid_until: datetime
    redeem_key: str | None
    order_ref: str | None
    discount_fen: int | None
    key_code: str | None
    others: int
    others_stackable: int


def _build_load(dialect: str) -> Any:
    mine = C.alias("mine")
    other = C.alias("other")
    other_t = T.alias("other_t")
    tenant = bindparam("tenant_id", type_=C.c.tenant_id.type)
    key_code = (
        select(mine.c.code)
        .where(mine.c.tenant_id == tenant, mine.c.redeem_key == bindparam("idem_key"))
        .scalar_subquery()
    )
    on_order = other.join(
        other_t, (other_t.c.tenant_id == other.c.tenant_id) & (other_t.c.id == other.c.template_id)
    )
    others_where = (
        other.c.tenant_id == tenant,
        other.c.order_ref == bindparam("order_ref"),
        other.c.status == "redeemed",
        other.c.code != bindparam("code"),
    )
    others = select(func.count()).select_from(on_order).where(*others_where).scalar_subquery()
    stackable = (
        select(func.count())
        .select_from(on_order)
        .where(*others_where, other_t.c.stackable.is_(True))
        .scalar_subquery()
    )
    stmt = (
        select(
            *[C.c[c] for c in _COUPON_COLS],
            *[T.c[f].label(f"t_{f}") for f in _TEMPLATE_COLS],
            key_code.label("key_code"),
            others.label("others"),
            stackable.label("others_stackable"),
        )
        .join_from(C, T, (T.c.tenant_id == C.c.tenant_id) & (T.c.id == C.c.template_id))
        .where(C.c.tenant_id == tenant, C.c.code == bindparam("code"))
    )
    if dialect == "postgresql":
        stmt = stmt.with_for_update(of=C)
    return stmt


_LOAD = BatchRead(_build_load)
_N_COUPON = len(_COUPON_COLS)
_N_TEMPLATE = len(_TEMPLATE_COLS)


async def _load_for_redeem(
    tx: Tx, code: str, order_ref: str, idem_key: str
) -> tuple[_Loaded, Template]:
    rows = await _LOAD.fetch(
        tx, tenant_id=tx.tenant_id, code=code, order_ref=order_ref, idem_key=idem_key
    )
    if not rows:
        raise NotEligible("no such coupon", "NOT_FOUND")
    r = rows[0]
    fields = dict(zip(_TEMPLATE_COLS, r[_N_COUPON : _N_COUPON + _N_TEMPLATE], strict=True))
    for name in _JSON_COLS:  # the driver path returns json as text
        if isinstance(fields[name], str):
            fields[name] = json.loads(fields[name])
    extra = r[_N_COUPON + _N_TEMPLATE :]
    loaded = _Loaded(
        *r[:_N_COUPON],
        key_code=extra[0],
        others=int(extra[1] or 0),
        others_stackable=int(extra[2] or 0),
    )
    return loaded, Template(**fields)


_PG_REDEEM_PARAMS = (
    "tenant_id",
    "id",
    "now",
    "order_ref",
    "discount_fen",
    "redeem_key",
    "channel",
    "store",
    "total",
    "event_id",
    "payload",
    "created_at",
)
_PG_REDEEM = """
WITH u AS (
    UPDATE coupon SET status = 'redeemed', redeemed_at = $3, order_ref = $4, discount_fen = $5,
        redeem_key = $6, redeemed_channel = $7, redeemed_store = $8, order_total_fen = $9,
        updated_at = $3
    WHERE tenant_id = $1 AND id = $2 AND status = 'issued'
    RETURNING tenant_id, member_id
), e AS (
    INSERT INTO member_event (tenant_id, id, member_id, type, payload, occurred_at, created_at)
    SELECT tenant_id, $10, member_id, 'coupon.redeemed', $11::json, $3, $12 FROM u
    ON CONFLICT DO NOTHING
)
SELECT member_id FROM u
"""
"""PostgreSQL: the guarded status change and its ``coupon.redeemed`` event in one round trip
(the event is written only when the update matched)."""

_SQLITE_REDEEM = (
    update(C)
    .where(
        C.c.tenant_id == bindparam("p_tenant_id"),
        C.c.id == bindparam("p_id"),
        C.c.status == "issued",
    )
    .values(
        status="redeemed",
        redeemed_at=bindparam("p_now"),
        order_ref=bindparam("p_order_ref"),
        discount_fen=bindparam("p_discount_fen"),
        redeem_key=bindparam("p_redeem_key"),
        redeemed_channel=bindparam("p_channel"),
        redeemed_store=bindparam("p_store"),
        order_total_fen=bindparam("p_total"),
        updated_at=bindparam("p_now"),
    )
    .returning(C.c.member_id)
)


async def return_on_refund(
    tx: Tx, code: str, order_ref: str, *, now: datetime | None = None
) -> bool:
    """Give a redeemed coupon back after ``order_ref`` was refunded, if its template allows
    (``NOT_RETURNABLE`` otherwise). It is ``issued`` again until its original ``valid_until``
    (the expiry sweeper expires it if that has passed); where it was used is cleared, so the
    statistics stop counting it, and ``coupon.returned`` is recorded.
    Idempotent: returns ``True`` when it was returned now, ``False`` when it already had been."""
    canonical = codes.parse(code)
    v.text(order_ref, "order_ref", 128)
    now = v.now_or(now)
    row, t = await _load(tx, canonical, lock=True)
    if row.status != "redeemed" or row.order_ref != order_ref:
        if row.status == "issued" and row.returned_from == order_ref:
            return False
        raise InvalidTransition("this coupon is not redeemed on that order")
    if not t.returnable_on_refund:
        raise NotEligible("this coupon is not returned on refund", "NOT_RETURNABLE")
    done = (
        await tx.conn.execute(
            update(C)
            .where(C.c.tenant_id == tx.tenant_id, C.c.id == row.id, C.c.status == "redeemed")
            .values(
                status="issued",
                redeemed_at=None,
                order_ref=None,
                discount_fen=None,
                redeemed_channel=None,
                redeemed_store=None,
                order_total_fen=None,
                returned_from=order_ref,
                updated_at=now,
            )
            .returning(C.c.id)
        )
    ).first()
    if done is None:
        return False
    await record_event(
        tx,
        event_id=events.event_id(tx.tenant_id, row.id, "returned", row.redeem_key or order_ref),
        member_id=row.member_id,
        type="coupon.returned",
        payload={"coupon_id": str(row.id), "template_code": t.code, "order_ref": order_ref},
        occurred_at=now,
    )
    return True
