"""The points mall service: offers, redemptions and their state machine.

A redemption exchanges ``quantity`` units of a catalog reward in one mode — ``points``,
``points_cash`` or ``cash`` — and moves through::

    redeem ──(no cash part)──────────────────────────────▶ completed
       │                                                      ▲
       └──(cash part)──▶ awaiting_payment ──confirm_payment───┘
                               │  └──cancel──────────────▶ cancelled
                               └──payment window passes──▶ expired   (expire_due / next redeem)

Money never moves twice and stock never oversells because each step is one guarded write:

- **stock** is a counter row taken with ``UPDATE … WHERE taken + n <= stock``
  (:mod:`gateway.mall.stock`); the row lock serialises buyers of the same reward;
- **points** are *held* in the ledger when the redemption is created and *captured* only once the
  cash part is confirmed (at once when there is none), or *released* on cancel / expiry, each
  keyed by the redemption's idempotency key, so a retry can never capture or release twice;
- **the member row** is locked ``FOR NO KEY UPDATE`` for the whole redeem, so one member's
  concurrent redemptions are serialised and per-member / per-period limits hold exactly;
- every status change is ``UPDATE … WHERE status = 'awaiting_payment'`` on a row read
  ``FOR UPDATE``, so a payment callback racing the expiry sweeper is decided exactly once.

Lock order, everywhere: member → redemption rows → stock rows (by reward) → holds → balances.
That is why ``cancel`` and the sweeper give stock back *before* releasing points.

Prices: the catalog price for the member's effective tier (its ``tier_prices``), passed as a
one-unit :class:`~gateway.rules.hookspecs.Quote` through the tenant's ``exchange`` rule sets in
priority order (a rule set may reprice or refuse), then multiplied by ``quantity``. Rule sets see
one unit because that is the documented plugin contract (``Quote``: "the price of one unit").
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, delete, func, or_, select, update

from gateway import ledger
from gateway.errors import (
    HoldNotActive,
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidInput,
    InvalidTransition,
    NotEligible,
    NotFound,
)
from gateway.identity.reads import get_members, resolve, resolve_exclusive
from gateway.ids import derived_id, uuid7
from gateway.ledger import validation as v
from gateway.mall import stock as stock_counter
from gateway.mall.catalog import MODES, PERIODS, Catalog, Reward
from gateway.rules import config as rule_config
from gateway.rules.config import RuleConfig
from gateway.rules.engine import growth_moves, load_tier_state
from gateway.rules.fulfil import UNFULFILLED, Fulfilment, fulfil
from gateway.rules.hookspecs import MemberSnapshot, Quote
from gateway.rules.manager import RuleRegistry, default_registry
from gateway.rules.tiers import TierFacts, decide, horizon, tier_view
from gateway.sql import upsert_insert
from gateway.storage.db import Tx
from gateway.storage.tables import (
    MallRedemption,
    Member,
    MemberGrant,
)

R: Any = MallRedemption.__table__  # type: ignore[attr-defined]
G: Any = MemberGrant.__table__  # type: ignore[attr-defined]
M: Any = Member.__table__  # type: ignore[attr-defined]

ACCOUNT = "points"
MAX_QUANTITY = 100
"""Units per redemption; a brand selling more at once is doing bulk issuance, not an exchange."""
STATUSES = ("awaiting_payment", "completed", "cancelled", "expired")
REASONS = (
    "OUT_OF_STOCK",
    "NOT_STARTED",
    "ENDED",
    "TIER_NOT_ALLOWED",
    "MEMBER_LIMIT",
    "PERIOD_LIMIT",
    "INSUFFICIENT_POINTS",
    "RULE",
)
"""Stable codes of :attr:`ExchangeOption.reason` and :attr:`NotEligible.reason`."""
GRANT_RULE = "mall"
_COUPON_REFUSALS = {
    "MEMBER_LIMIT": "MEMBER_LIMIT",
    "TOTAL_LIMIT": "OUT_OF_STOCK",
    "INACTIVE": "ENDED",
    "EXPIRED": "ENDED",
}
"""A coupon reward the coupon system refuses, as the mall's own reason codes (others: RULE)."""


# ---- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeOption:
    """One exchange mode of one reward, priced (per unit) for one member."""

    mode: str  # "points" | "points_cash" | "cash"
    points: int
    cash_fen: int
    eligible: bool
    reason: str | None  # a code from REASONS when not eligible
    message: str | None  # human-readable why
    rule: str | None  # the exchange rule set that changed or refused it, if any


@dataclass(frozen=True)
class RewardOffer:
    reward: Reward
    stock_left: int | None  # None = unlimited
    member_remaining: int | None  # min of per_member / per_period remaining; None = no limit
    options: list[ExchangeOption]


@dataclass(frozen=True)
class Redemption:
    """A redemption as stored. ``points`` and ``cash_fen`` are totals (unit price × quantity);
    ``grant_id`` is set once it is completed (the ``member_grant`` row it issued)."""

    id: uuid.UUID
    member_id: uuid.UUID
    reward: str
    mode: str
    quantity: int
    points: int
    cash_fen: int
    status: str  # awaiting_payment | completed | cancelled | expired
    hold_id: uuid.UUID | None
    payment_ref: str | None
    grant_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime | None
    resolved_at: datetime | None
    replayed: bool = False


def _grant_id(tenant_id: uuid.UUID, redemption_id: uuid.UUID) -> uuid.UUID:
    return derived_id(tenant_id, "mall", redemption_id, "grant")


def _redemption(row: Any, *, replayed: bool = False) -> Redemption:
    m = row._mapping
    return Redemption(
        id=m["id"],
        member_id=m["member_id"],
        reward=m["reward"],
        mode=m["mode"],
        quantity=int(m["quantity"]),
        points=int(m["points"]),
        cash_fen=int(m["cash_fen"]),
        status=m["status"],
        hold_id=m["hold_id"],
        payment_ref=m["payment_ref"],
        grant_id=_grant_id(m["tenant_id"], m["id"]) if m["status"] == "completed" else None,
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        resolved_at=m["resolved_at"],
        replayed=replayed,
    )


# ---- reads ---------------------------------------------------------------------------------


async def get_redemptions(tx: Tx, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Redemption]:
    """Redemptions by id in one statement (DataLoader); unknown or other tenants' ids are
    simply absent."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    rows = await tx.conn.execute(select(R).where(R.c.tenant_id == tx.tenant_id, R.c.id.in_(wanted)))
    return {r.id: _redemption(r) for r in rows}


async def redemptions_for(tx: Tx, member_id: uuid.UUID, *, limit: int = 50) -> list[Redemption]:
    """The member's redemptions, newest first — including those made under ids since merged
    into it (redemption rows stay where they were made)."""
    limit = max(1, min(int(limit), 500))
    rows = await tx.conn.execute(
        select(R)
        .where(R.c.tenant_id == tx.tenant_id, _member_or_merged(tx, member_id))
        .order_by(R.c.created_at.desc(), R.c.id.desc())
        .limit(limit)
    )
    return [_redemption(r) for r in rows]


def _member_or_merged(tx: Tx, member_id: uuid.UUID) -> Any:
    losers = select(M.c.id).where(M.c.tenant_id == tx.tenant_id, M.c.merged_into == member_id)
    return or_(R.c.member_id == member_id, R.c.member_id.in_(losers))


# ---- the member as exchange rules see it ----------------------------------------------------


@dataclass(frozen=True)
class _Member:
    id: uuid.UUID
    cfg: RuleConfig
    timezone: str
    tier: str | None
    snapshot: MemberSnapshot
    registry: RuleRegistry

    @property
    def points(self) -> int:
        return int(self.snapshot.balances.get(ACCOUNT, 0))


async def _member(
    tx: Tx,
    member_id: uuid.UUID,
    registry: RuleRegistry,
    cfg: RuleConfig,
    timezone: str,
    now: datetime,
) -> _Member:
    row = (await get_members(tx, [member_id]))[member_id]
    views = await ledger.balances_for(tx, [member_id], now=now)
    balances = {a: bv.available for (m, a), bv in views.items() if m == member_id}
    tier = await _effective_tier(tx, cfg, timezone, member_id, balances.get("growth", 0), now)
    view = tier_view(cfg.tier_policy, tier) if cfg.tier_policy is not None else None
    profile = {"name": row.name, "gender": row.gender, "birthday": row.birthday, "city": row.city}
    snapshot = MemberSnapshot(member_id, row.created_at, balances, timezone, view, profile, now)
    return _Member(member_id, cfg, timezone, tier, snapshot, registry)


async def _effective_tier(
    tx: Tx, cfg: RuleConfig, timezone: str, member_id: uuid.UUID, growth: int, now: datetime
) -> str | None:
    """The tier the member has *now*. The stored state may lag (a keep-level review or an
    override's end falls due between events and the scheduled job), so when something is due we
    run the same pure policy the engine runs — without storing it: a price read must not write."""
    policy = cfg.tier_policy
    if policy is None:
        return None
    state = await load_tier_state(tx, member_id)
    due = (
        state.tier is None
        or (state.period_end is not None and state.period_end <= now)
        or (state.override_until is not None and state.override_until <= now)
    )
    if not due:
        return state.effective(now)
    moves = await growth_moves(tx, member_id, horizon(policy, state, now, timezone))
    decision = decide(policy, TierFacts(state, growth, moves, timezone), now)
    return decision.state.effective(now)


async def effective_tier(
    tx: Tx, cfg: RuleConfig, timezone: str, member_id: uuid.UUID, now: datetime
) -> str | None:
    """The member's effective tier *now* (as the mall prices), for other readers such as
    :mod:`gateway.pricing`; reads only."""
    views = await ledger.balances_for(tx, [member_id], now=now)
    growth = next((bv.available for (m, a), bv in views.items() if a == "growth"), 0)
    return await _effective_tier(tx, cfg, timezone, member_id, growth, now)


# ---- calendar ------------------------------------------------------------------------------


def _period_start(period: str, now: datetime, timezone: str) -> datetime:
    """Start of the tenant-local day / ISO week (Monday) / month / year containing ``now``."""
    tz = ZoneInfo(timezone)
    local = now.astimezone(tz).date()
    if period == "week":
        local = local - timedelta(days=local.weekday())
    elif period == "month":
        local = local.replace(day=1)
    elif period == "year":
        local = local.replace(month=1, day=1)
    return datetime(local.year, local.month, local.day, tzinfo=tz).astimezone(UTC)


def _period_key(period: str, now: datetime, timezone: str) -> str:
    """A readable label of the period a redemption counts in (stored for reports; limits are
    counted by ``created_at`` so a later change of ``period`` or timezone stays consistent)."""
    local = now.astimezone(ZoneInfo(timezone))
    if period == "day":
        return local.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return local.strftime("%Y-%m")
    return local.strftime("%Y")


# ---- usage and stock -----------------------------------------------------------------------


def _counts(now: datetime) -> Any:
    """Redemptions that use up a limit or stock: completed, or awaiting payment within the
    window. One awaiting past its window is as good as expired (the next redeem sweeps it)."""
    return or_(
        R.c.status == "completed",
        and_(
            R.c.status == "awaiting_payment",
            or_(R.c.expires_at.is_(None), R.c.expires_at > now),
        ),
    )


async def _usage(
    tx: Tx, member_id: uuid.UUID, rewards: Sequence[str], timezone: str, now: datetime
) -> dict[str, dict[str, int]]:
    """Units of each reward the member has used: ``life`` and per period (``day`` … ``year``),
    in one aggregate statement."""
    if not rewards:
        return {}
    cols = [R.c.reward, func.sum(R.c.quantity).label("life")]
    for p in PERIODS:
        start = _period_start(p, now, timezone)
        cols.append(func.sum(case((R.c.created_at >= start, R.c.quantity), else_=0)).label(p))
    rows = await tx.conn.execute(
        select(*cols)
        .where(
            R.c.tenant_id == tx.tenant_id,
            _member_or_merged(tx, member_id),
            R.c.reward.in_(list(rewards)),
            _counts(now),
        )
        .group_by(R.c.reward)
    )
    return {
        r.reward: {"life": int(r.life or 0), **{p: int(getattr(r, p) or 0) for p in PERIODS}}
        for r in rows
    }


async def _stock_left(
    tx: Tx, catalog: Catalog, rewards: Sequence[str], now: datetime
) -> dict[str, int | None]:
    limited = [c for c in rewards if catalog.rewards[c].stock is not None]
    out: dict[str, int | None] = {c: None for c in rewards}
    if not limited:
        return out
    taken = await stock_counter.taken(tx, limited)
    overdue = {
        r.reward: int(r.units or 0)
        for r in await tx.conn.execute(
            select(R.c.reward, func.sum(R.c.quantity).label("units"))
            .where(
                R.c.tenant_id == tx.tenant_id,
                R.c.reward.in_(limited),
                R.c.status == "awaiting_payment",
                R.c.expires_at <= now,
            )
            .group_by(R.c.reward)
        )
    }
    for code in limited:
        cap = catalog.rewards[code].stock
        assert cap is not None
        out[code] = max(cap - taken.get(code, 0) + overdue.get(code, 0), 0)
    return out


def _remaining(reward: Reward, used: Mapping[str, int] | None) -> tuple[int | None, int | None]:
    """(lifetime remaining, period remaining); ``None`` where the reward sets no limit."""
    used = used or {}
    life = None if reward.per_member is None else max(reward.per_member - used.get("life", 0), 0)
    period = (
        None
        if reward.per_period is None
        else max(reward.per_period - used.get(reward.period, 0), 0)
    )
    return life, period


# ---- pricing and eligibility ---------------------------------------------------------------


def _quote(member: _Member, reward: Reward, mode: str) -> Quote:
    """The catalog's per-tier unit price, then every exchange rule set in priority order."""
    points, cash = reward.options[mode].for_tier(member.tier)
    q = Quote(reward.code, mode, points, cash)  # type: ignore[arg-type]
    for entry in member.cfg.slot("exchange"):
        rs = member.registry.get(entry.rule)
        if rs is None:
            continue
        got = rs.quote(member.snapshot, q, dict(entry.config))  # type: ignore[attr-defined]
        _check_quote(rs.name, q, got)
        if (got.points, got.cash_fen, got.eligible) != (q.points, q.cash_fen, q.eligible):
            got = replace(got, rule=rs.name)
        q = got
        if not q.eligible:
            break
    return q


def _check_quote(name: str, before: Quote, got: object) -> None:
    """Plugins are third-party code: a malformed quote must not reach the ledger."""
    if not isinstance(got, Quote):
        raise TypeError(f"exchange rule set {name!r} must return a Quote, got {got!r}")
    if got.reward != before.reward or got.mode != before.mode:
        raise ValueError(f"exchange rule set {name!r} changed the quote's reward or mode")
    for value in (got.points, got.cash_fen):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"exchange rule set {name!r}: prices must be non-negative ints")


def _when(at: datetime) -> str:
    return at.isoformat(timespec="minutes")


def _assess(
    member: _Member,
    reward: Reward,
    mode: str,
    quantity: int,
    used: Mapping[str, int] | None,
    stock_left: int | None,
    now: datetime,
) -> ExchangeOption:
    """Price ``mode`` for ``quantity`` units and say whether the member may have it now; the
    first failing check wins, in the order a member would want to hear them."""
    q = _quote(member, reward, mode)

    def no(reason: str, message: str) -> ExchangeOption:
        return ExchangeOption(mode, q.points, q.cash_fen, False, reason, message, q.rule)

    if reward.valid_from is not None and now < reward.valid_from:
        return no("NOT_STARTED", f"{reward.title} can be exchanged from {_when(reward.valid_from)}")
    if reward.valid_until is not None and now > reward.valid_until:
        return no("ENDED", f"{reward.title} could be exchanged until {_when(reward.valid_until)}")
    if reward.tiers is not None and member.tier not in reward.tiers:
        return no("TIER_NOT_ALLOWED", f"{reward.title} is for {', '.join(reward.tiers)} members")
    life, period = _remaining(reward, used)
    if life is not None and quantity > life:
        return no(
            "MEMBER_LIMIT",
            f"at most {reward.per_member} per member ({life} left)",
        )
    if period is not None and quantity > period:
        return no(
            "PERIOD_LIMIT",
            f"at most {reward.per_period} per member per {reward.period} ({period} left)",
        )
    if stock_left is not None and quantity > stock_left:
        return no("OUT_OF_STOCK", f"{reward.title} is out of stock ({stock_left} left)")
    if not q.eligible:
        return no("RULE", q.reason or f"not offered to this member ({q.rule})")
    if q.points * quantity > member.points:
        return no(
            "INSUFFICIENT_POINTS",
            f"needs {q.points * quantity} points, the member has {member.points}",
        )
    return ExchangeOption(mode, q.points, q.cash_fen, True, None, None, q.rule)


# ---- offers --------------------------------------------------------------------------------


async def offers(
    tx: Tx,
    member_id: uuid.UUID,
    *,
    registry: RuleRegistry | None = None,
    now: datetime | None = None,
    reward: str | None = None,
) -> list[RewardOffer]:
    """Every reward in the tenant's catalog (or just ``reward``), each mode priced for the member
    with the reason it is not available — what a mall page shows. Read-only: nothing is locked
    or swept, so it may run in a read-only transaction."""
    registry = registry if registry is not None else default_registry()
    now = v.now_or(now)
    survivor = await resolve(tx, member_id)
    if survivor is None:
        raise NotFound("member not found", member_id=str(member_id))
    cfg, timezone = await rule_config.active(tx, registry)
    catalog: Catalog | None = cfg.mall
    if catalog is None:
        return []
    codes = [c for c in catalog.rewards if reward is None or c == reward]
    if not codes:
        return []
    member = await _member(tx, survivor, registry, cfg, timezone, now)
    usage = await _usage(tx, survivor, codes, timezone, now)
    left = await _stock_left(tx, catalog, codes, now)
    out = []
    for code in codes:
        item = catalog.rewards[code]
        life, period = _remaining(item, usage.get(code))
        limits = [x for x in (life, period) if x is not None]
        options = [
            _assess(member, item, mode, 1, usage.get(code), left[code], now)
            for mode in MODES
            if mode in item.options
        ]
        out.append(RewardOffer(item, left[code], min(limits) if limits else None, options))
    return out


# ---- redeem --------------------------------------------------------------------------------


async def _lock_member(tx: Tx, member_id: uuid.UUID) -> uuid.UUID | None:
    """The active member ``member_id`` stands for, locked exclusively (see
    :func:`gateway.identity.reads.resolve_exclusive`); ``None`` when unknown."""
    return await resolve_exclusive(tx, member_id)


def _check_request(reward: object, mode: object, quantity: object, idem_key: object) -> None:
    v.text(idem_key, "idem_key", 128)
    v.text(reward, "reward", 64)
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}", field="mode")
    if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidInput(f"quantity must be an integer in 1..{MAX_QUANTITY}", field="quantity")


async def _by_key(tx: Tx, idem_key: str) -> Any:
    return (
        await tx.conn.execute(
            select(R).where(R.c.tenant_id == tx.tenant_id, R.c.idem_key == idem_key)
        )
    ).first()


def _replay(row: Any, fingerprint: str) -> Redemption:
    if row.request_hash != fingerprint:
        raise IdempotencyKeyReused("idempotency key already used for a different redemption")
    return _redemption(row, replayed=True)


def _key(tx: Tx, idem_key: str, step: str) -> str:
    """The ledger key of one step (hold, capture, release) of the redemption with ``idem_key``."""
    return str(derived_id(tx.tenant_id, "mall", idem_key, step))


async def redeem(
    tx: Tx,
    *,
    member_id: uuid.UUID,
    reward: str,
    mode: str,
    quantity: int = 1,
    idem_key: str,
    registry: RuleRegistry | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> Redemption:
    """Exchange ``quantity`` units of ``reward`` in ``mode`` for the member.

    Idempotent on ``idem_key``: the same request again returns the original redemption (in its
    current state) with ``replayed=True``; another request under the same key raises
    ``IdempotencyKeyReused``. Refusals raise ``NotEligible`` (``reason`` from :data:`REASONS`),
    ``InsufficientBalance`` (points) or ``NotFound`` (member, reward) and leave the transaction
    as it was. ``dry_run`` does everything in a savepoint and rolls it back.
    """
    v.member(member_id)
    _check_request(reward, mode, quantity, idem_key)
    now = v.now_or(now)
    if dry_run:
        sp = await tx.conn.begin_nested()
        try:
            return await redeem(
                tx,
                member_id=member_id,
                reward=reward,
                mode=mode,
                quantity=quantity,
                idem_key=idem_key,
                registry=registry,
                now=now,
            )
        finally:
            await sp.rollback()
    registry = registry if registry is not None else default_registry()
    # One savepoint around it all, so a refusal found late (the coupon system refusing the
    # reward after the points were taken) leaves the caller's transaction as it was.
    sp = await tx.conn.begin_nested()
    try:
        done = await _redeem(tx, member_id, reward, mode, quantity, idem_key, registry, now)
    except BaseException:
        await sp.rollback()
        raise
    await sp.commit()
    return done


async def _redeem(
    tx: Tx,
    member_id: uuid.UUID,
    reward: str,
    mode: str,
    quantity: int,
    idem_key: str,
    registry: RuleRegistry,
    now: datetime,
) -> Redemption:
    survivor = await _lock_member(tx, member_id)
    if survivor is None:
        raise NotFound("member not found", member_id=str(member_id))
    fingerprint = v.request_hash(
        op="mall.redeem", member_id=member_id, reward=reward, mode=mode, quantity=quantity
    )
    earlier = await _by_key(tx, idem_key)
    if earlier is not None:
        return _replay(earlier, fingerprint)

    cfg, timezone = await rule_config.active(tx, registry)
    catalog: Catalog | None = cfg.mall
    item = catalog.get(reward) if catalog is not None else None
    if catalog is None or item is None:
        raise NotFound("no such reward in the mall", reward=reward)
    if mode not in item.options:
        offered = ", ".join(m for m in MODES if m in item.options)
        raise InvalidInput(f"{reward} is offered for {offered}, not {mode}", field="mode")

    # Units stuck in redemptions whose payment window passed come back before we count stock.
    await _sweep(tx, now, reward=reward)
    member = await _member(tx, survivor, registry, cfg, timezone, now)
    used = (await _usage(tx, survivor, [reward], timezone, now)).get(reward)
    left = (await _stock_left(tx, catalog, [reward], now))[reward]
    option = _assess(member, item, mode, quantity, used, left, now)
    points, cash = option.points * quantity, option.cash_fen * quantity
    if not option.eligible:
        if option.reason == "INSUFFICIENT_POINTS":
            raise InsufficientBalance(
                option.message or "insufficient points", available=member.points, requested=points
            )
        raise NotEligible(option.message or "not eligible", option.reason or "RULE")

    rid = uuid7()
    pays_later = cash > 0
    status = "awaiting_payment" if pays_later else "completed"
    expires_at = now + timedelta(minutes=catalog.payment_minutes) if pays_later else None
    claim = (
        upsert_insert(tx, R)
        .values(
            tenant_id=tx.tenant_id,
            id=rid,
            member_id=survivor,
            reward=reward,
            kind=item.kind,
            item=item.item,
            title=item.title[:200],
            mode=mode,
            quantity=quantity,
            points=points,
            cash_fen=cash,
            status=status,
            hold_id=None,
            payment_ref=None,
            idem_key=idem_key,
            request_hash=fingerprint,
            period=_period_key(item.period, now, timezone),
            created_at=now,
            expires_at=expires_at,
            resolved_at=None if pays_later else now,
        )
        .on_conflict_do_nothing(index_elements=[R.c.tenant_id, R.c.idem_key])
        .returning(R.c.id)
    )
    if (await tx.conn.execute(claim)).first() is None:
        # The same key from another member's request committed meanwhile (ours is locked).
        return _replay(await _by_key(tx, idem_key), fingerprint)

    async def undo_claim() -> None:
        await tx.conn.execute(delete(R).where(R.c.tenant_id == tx.tenant_id, R.c.id == rid))

    if not await _take(tx, catalog, item, quantity, now):
        await undo_claim()
        raise NotEligible(f"{item.title} is out of stock", "OUT_OF_STOCK")
    hold_id = None
    if points > 0:
        try:
            held = await ledger.hold(
                tx,
                member_id=survivor,
                account=ACCOUNT,
                amount=points,
                ttl_seconds=catalog.payment_minutes * 60,
                reason=f"points mall: {quantity} × {reward}",
                idem_key=_key(tx, idem_key, "hold"),
                now=now,
            )
        except InsufficientBalance:
            await stock_counter.give_back(tx, reward, quantity, now)
            await undo_claim()
            raise
        hold_id = held.id
        if pays_later:
            expires_at = held.expires_at
        else:
            await ledger.capture(
                tx,
                hold_id=hold_id,
                amount=None,
                reason=f"points mall: {quantity} × {reward}",
                idem_key=_key(tx, idem_key, "capture"),
                now=now,
            )
        await tx.conn.execute(
            update(R)
            .where(R.c.tenant_id == tx.tenant_id, R.c.id == rid)
            .values(hold_id=hold_id, expires_at=expires_at)
        )
    grant_id = None
    if not pays_later:
        grant_id, done = await _issue_grant(
            tx, rid, survivor, (item.kind, item.item, item.title), quantity, now
        )
        if done is not None and done.status == UNFULFILLED and done.reason in _COUPON_REFUSALS:
            # The coupon system refused (its limit, its end): the member must not pay points
            # for nothing, so the exchange is refused and everything it wrote is undone. An
            # unknown template is the brand's set-up, not the member's doing: the exchange
            # stands and the grant waits, ``unfulfilled``, for the operator.
            raise NotEligible(
                f"{item.title} cannot be issued now: {done.message}",
                _COUPON_REFUSALS.get(done.reason or "", "RULE"),
            )
    return Redemption(
        id=rid,
        member_id=survivor,
        reward=reward,
        mode=mode,
        quantity=quantity,
        points=points,
        cash_fen=cash,
        status=status,
        hold_id=hold_id,
        payment_ref=None,
        grant_id=grant_id,
        created_at=now,
        expires_at=expires_at,
        resolved_at=None if pays_later else now,
    )


async def _take(tx: Tx, catalog: Catalog, item: Reward, quantity: int, now: datetime) -> bool:
    if await stock_counter.take(tx, item.code, quantity, item.stock, now):
        return True
    if item.stock is None or await stock_counter.taken(tx, [item.code]):
        return False
    # No counter row although the catalog lists the reward (a config stored before counters
    # were created on save): create it and try once more.
    await stock_counter.ensure_stock_rows(tx, Catalog({item.code: item}), now)
    return await stock_counter.take(tx, item.code, quantity, item.stock, now)


async def _issue_grant(
    tx: Tx,
    redemption_id: uuid.UUID,
    member_id: uuid.UUID,
    ref: tuple[str, str, str],
    quantity: int,
    now: datetime,
) -> tuple[uuid.UUID, Fulfilment | None]:
    """The ``member_grant`` (kind / code = the reward's kind / item) the owning system fulfils;
    keyed by the redemption, so a replayed completion cannot grant twice. Coupons and points are
    delivered at once (:mod:`gateway.rules.fulfil`); the fulfilment is ``None`` on a replay."""
    gid = _grant_id(tx.tenant_id, redemption_id)
    kind, code, title = ref
    reason = f"points mall: {title}"[:300]
    inserted = await tx.conn.execute(
        upsert_insert(tx, G)
        .values(
            tenant_id=tx.tenant_id,
            id=gid,
            member_id=member_id,
            kind=kind[:32],
            code=code[:64],
            quantity=quantity,
            rule=GRANT_RULE,
            reason=reason,
            source=f"redemption:{redemption_id}",
            status="issued",
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(G.c.id)
    )
    if inserted.first() is None:  # granted before: delivered (or refused) then
        return gid, None
    done = await fulfil(
        tx,
        grant_id=gid,
        member_id=member_id,
        kind=kind,
        code=code[:64],
        quantity=quantity,
        rule=GRANT_RULE,
        reason=reason,
        now=now,
    )
    return gid, done


# ---- payment, cancel, expiry ---------------------------------------------------------------


async def _locked(tx: Tx, redemption_id: uuid.UUID) -> Any:
    if not isinstance(redemption_id, uuid.UUID):
        raise InvalidInput("redemption_id must be a UUID", field="redemption_id")
    stmt = select(R).where(R.c.tenant_id == tx.tenant_id, R.c.id == redemption_id)
    if tx.is_postgres:
        stmt = stmt.with_for_update()
    row = (await tx.conn.execute(stmt)).first()
    if row is None:
        raise NotFound("redemption not found", redemption_id=str(redemption_id))
    return row


async def confirm_payment(
    tx: Tx,
    *,
    redemption_id: uuid.UUID,
    payment_ref: str,
    amount_fen: int,
    now: datetime | None = None,
) -> Redemption:
    """The brand's payment service collected the cash part: capture the held points, issue the
    grant, ``completed``.

    Idempotent on ``payment_ref`` (a replayed callback returns the redemption with
    ``replayed=True``). ``amount_fen`` must equal the redemption's ``cash_fen``
    (``InvalidInput``). A cancelled or expired redemption — or one completed by another payment,
    or whose payment window has closed — raises ``InvalidTransition``: the caller refunds.
    """
    v.text(payment_ref, "payment_ref", 128)
    if type(amount_fen) is not int or amount_fen < 0:
        raise InvalidInput("amount_fen must be a non-negative integer", field="amount_fen")
    now = v.now_or(now)
    row = await _locked(tx, redemption_id)
    if row.status in ("cancelled", "expired"):
        raise InvalidTransition(f"redemption is {row.status}; refund the payment")
    if amount_fen != row.cash_fen:
        raise InvalidInput(
            f"amount_fen {amount_fen} does not match the cash part {row.cash_fen}",
            field="amount_fen",
        )
    if row.status == "completed":
        if row.payment_ref == payment_ref:
            return _redemption(row, replayed=True)
        raise InvalidTransition(
            "redemption is already completed"
            + (" by another payment" if row.payment_ref else " (it had no cash part)")
        )
    if row.expires_at is not None and row.expires_at <= now:
        raise InvalidTransition(
            f"the payment window closed at {row.expires_at.isoformat()}; refund the payment"
        )
    if row.hold_id is not None:
        try:
            await ledger.capture(
                tx,
                hold_id=row.hold_id,
                amount=None,
                reason=f"points mall: {row.quantity} × {row.reward}",
                idem_key=_key(tx, row.idem_key, "capture"),
                now=now,
            )
        except HoldNotActive as exc:  # the ledger's own sweeper released it at its TTL
            raise InvalidTransition(f"the points hold is {exc.status}; refund the payment") from exc
    ref = (row.kind, row.item, row.title)
    # Merged away since the redemption? The reward goes to the surviving member (the held
    # points were captured from the member that held them, as the ledger keeps holds in place).
    owner = await resolve(tx, row.member_id, lock=True) or row.member_id
    # Paid already: a coupon that cannot be issued now stays an ``unfulfilled`` grant for the
    # brand to follow up (raise the limit and retry, or refund) — the payment is not undone.
    await _issue_grant(tx, row.id, owner, ref, row.quantity, now)
    done = (
        await tx.conn.execute(
            update(R)
            .where(
                R.c.tenant_id == tx.tenant_id,
                R.c.id == row.id,
                R.c.status == "awaiting_payment",
            )
            .values(status="completed", payment_ref=payment_ref, resolved_at=now)
            .returning(*R.c)
        )
    ).first()
    assert done is not None  # the row is locked (PostgreSQL) / the database is (SQLite)
    return _redemption(done)


async def cancel(
    tx: Tx, *, redemption_id: uuid.UUID, reason: str, now: datetime | None = None
) -> Redemption:
    """Give up an unpaid redemption: stock back, held points released, ``cancelled``.

    ``reason`` is kept on the redemption (``note``) and on the ledger release.
    Cancelling a cancelled or expired redemption changes nothing (``replayed=True``); a completed
    one cannot be cancelled (``InvalidTransition``: that is a refund, not a cancel).
    """
    v.text(reason, "reason", 160)
    now = v.now_or(now)
    row = await _locked(tx, redemption_id)
    if row.status == "completed":
        raise InvalidTransition("a completed redemption cannot be cancelled")
    if row.status in ("cancelled", "expired"):
        return _redemption(row, replayed=True)
    undone = await _undo(tx, [row], "cancelled", f"points mall cancelled: {reason}", now)
    return undone[0]


async def expire_due(tx: Tx, *, now: datetime | None = None) -> int:
    """Expire every redemption of the tenant still awaiting payment after its window: stock
    back, held points released. Returns how many. Safe to run repeatedly and concurrently."""
    return await _sweep(tx, v.now_or(now))


async def _sweep(tx: Tx, now: datetime, *, reward: str | None = None) -> int:
    stmt = select(R).where(
        R.c.tenant_id == tx.tenant_id,
        R.c.status == "awaiting_payment",
        R.c.expires_at <= now,
    )
    if reward is not None:
        stmt = stmt.where(R.c.reward == reward)
    stmt = stmt.order_by(R.c.id)
    if tx.is_postgres:
        # Rows another transaction holds (a payment confirming, another sweeper) are theirs.
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(await tx.conn.execute(stmt))
    if not rows:
        return 0
    return len(await _undo(tx, rows, "expired", "points mall payment window closed", now))


async def _undo(
    tx: Tx, rows: Sequence[Any], status: str, why: str, now: datetime
) -> list[Redemption]:
    """Move locked ``awaiting_payment`` rows to ``status``; stock back (by reward), then the
    holds released — in the global lock order."""
    done = list(
        await tx.conn.execute(
            update(R)
            .where(
                R.c.tenant_id == tx.tenant_id,
                R.c.id.in_([r.id for r in rows]),
                R.c.status == "awaiting_payment",
            )
            .values(status=status, resolved_at=now, note=why[:200])
            .returning(*R.c)
        )
    )
    units: dict[str, int] = defaultdict(int)
    for r in done:
        units[r.reward] += int(r.quantity)
    for code in sorted(units):
        await stock_counter.give_back(tx, code, units[code], now)
    for r in sorted(done, key=lambda r: str(r.hold_id)):
        if r.hold_id is None:
            continue
        try:
            await ledger.release(
                tx,
                hold_id=r.hold_id,
                reason=why[:200],
                idem_key=_key(tx, r.idem_key, "release"),
                now=now,
            )
        except HoldNotActive:
            pass  # the ledger's sweeper already released it at its TTL: nothing left to return
    return [_redemption(r) for r in sorted(done, key=lambda r: r.id)]


__all__ = [
    "MAX_QUANTITY",
    "REASONS",
    "STATUSES",
    "ExchangeOption",
    "Redemption",
    "RewardOffer",
    "cancel",
    "confirm_payment",
    "effective_tier",
    "expire_due",
    "get_redemptions",
    "offers",
    "redeem",
    "redemptions_for",
]
