"""GraphQL for the tenant's rules: installed rule sets and config versions, the tier ladder (等级),
a member's tier status, tier history, tasks and grants, and the event report shared by
``simulateEvent``, ``recordActivity`` and ``applyRuleConfig(simulate:)``.

Wiring (the same mixin pattern as :mod:`schema.sync`):

- ``Member`` gets :data:`MEMBER_TIER`, :data:`MEMBER_TIER_HISTORY`, :data:`MEMBER_TASKS` and
  :data:`MEMBER_GRANTS` as fields (attached in ``schema/types.py``, so the SDL keeps one type);
- ``Query`` mixes in :class:`RulesQueries`, ``Mutation`` mixes in :class:`RulesMutations`.

Performance: ``tier``, ``tasks`` and ``grants`` are sync resolvers over per-request DataLoaders
(``Loaders.named``) that the members list primes through :func:`prefetch` (``schema.lookahead``),
so a page of 100 members with their tier costs a constant handful of statements: the tenant's
config (one row, parsed configs are cached per process), the tier rows, the growth facts and the
balances (shared with ``points``/``growth``). ``tierHistory`` pages per member (like ``orders``).

The tier status is computed *as of now* with the same pure policy the engine runs
(:func:`gateway.rules.tiers.decide`): a keep-level review or an override end that fell due since
the last event is reflected without writing anything (the scheduled ``tiers evaluate`` job stores
it), so what the member sees agrees with what the points mall prices them at.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Union

import strawberry
from sqlalchemy import and_, func, or_, select, union_all
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway import members
from gateway.errors import DomainError, InvalidInput, NotFound, PermissionDenied
from gateway.ids import derived_id, uuid7
from gateway.rules import config as rule_config
from gateway.rules import engine
from gateway.rules.config import RuleConfig
from gateway.rules.hookspecs import EXCLUSIVE_SLOTS, EventView, Grant, TaskDef, TierDef, TierPolicy
from gateway.rules.tasks import TaskStatus, event_type
from gateway.rules.tasks import status as task_status
from gateway.rules.tier_jobs import override_tier
from gateway.rules.tiers import TierChange as DomainTierChange
from gateway.rules.tiers import TierFacts, TierState, decide, horizon, tier_def
from gateway.storage.db import Tx
from gateway.storage.tables import GrowthFact, MemberGrant, MemberTier, TaskProgress, TierHistory
from gateway.storage.tables import Member as MemberTable
from gateway.storage.types import utcnow
from gateway.tenancy import Scope
from schema.context import RequestContext, ctx_of
from schema.errors import (
    ConfigInvalidError,
    Error,
    IdempotencyKeyReusedError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    allowed_error,
)
from schema.inputs import IDEMPOTENCY_DOC
from schema.loaders import peek
from schema.relay import (
    Connection,
    build_connection,
    check_first,
    decode_cursor,
    decode_id,
    encode_cursor,
    global_id,
)

if TYPE_CHECKING:
    from schema.types import Member

GF: Any = GrowthFact.__table__  # type: ignore[attr-defined]
G: Any = MemberGrant.__table__  # type: ignore[attr-defined]
MT: Any = MemberTier.__table__  # type: ignore[attr-defined]
TP: Any = TaskProgress.__table__  # type: ignore[attr-defined]
TH: Any = TierHistory.__table__  # type: ignore[attr-defined]
MB: Any = MemberTable.__table__  # type: ignore[attr-defined]

MemberRef = Annotated["Member", strawberry.lazy("schema.types")]

MAX_PAYLOAD_BYTES = 16_384
MAX_FUTURE_SKEW = timedelta(minutes=5)
"""``recordActivity`` accepts an ``occurredAt`` at most this far ahead of the server's clock."""
MAX_CONFIG_CHANGES = 500
MAX_GRANTS = 100


# ---- enums ---------------------------------------------------------------------------------


@strawberry.enum(
    description="Slot of a rule set in the tenant's rule config: TIERS and EXPIRY hold one rule "
    "set at most; EARNING, TASKS, EXCHANGE and BENEFITS any number."
)
class RuleSlot(StrEnum):
    TIERS = "tiers"
    EXPIRY = "expiry"
    EARNING = "earning"
    TASKS = "tasks"
    EXCHANGE = "exchange"
    BENEFITS = "benefits"


@strawberry.enum(
    description="What upgrades compare to tier thresholds: LIFETIME growth (the growth balance) "
    "or growth earned in the current qualifying PERIOD."
)
class TierMeasure(StrEnum):
    LIFETIME = "lifetime"
    PERIOD = "period"


@strawberry.enum(
    description="When keep-level (保级) is reviewed: CALENDAR_YEAR (every 1 January, tenant "
    "time), ANNIVERSARY (12 months after reaching or keeping the tier) or ROLLING (every "
    "`months` months)."
)
class TierPeriod(StrEnum):
    CALENDAR_YEAR = "calendar_year"
    ANNIVERSARY = "anniversary"
    ROLLING = "rolling"


@strawberry.enum(
    description="A member who missed the keep threshold drops ONE_STEP, or is RECALCULATED to "
    "the highest tier whose keep threshold the period's growth meets."
)
class TierDowngrade(StrEnum):
    ONE_STEP = "one_step"
    RECALCULATE = "recalculate"


@strawberry.enum(
    description="Kind of tier history entry: INITIAL (entry tier), UPGRADE, DOWNGRADE, KEPT (a "
    "keep-level review passed), OVERRIDE (manual) and OVERRIDE_EXPIRED (ended or cleared)."
)
class TierChangeKind(StrEnum):
    INITIAL = "initial"
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    KEPT = "kept"
    OVERRIDE = "override"
    OVERRIDE_EXPIRED = "override_expired"


@strawberry.enum(
    description="What completes a task: CHECKIN (one per local day, streak bonuses), ONCE (the "
    "first event ever), COUNT (every event, within limits), INVITE (an invitee joined or paid), "
    "CATEGORIES (N distinct categories in an order or period), PROFILE (profile fields filled)."
)
class TaskKind(StrEnum):
    CHECKIN = "checkin"
    ONCE = "once"
    COUNT = "count"
    INVITE = "invite"
    CATEGORIES = "categories"
    PROFILE = "profile"


@strawberry.enum(
    description="Fulfilment state of a grant: ISSUED (waiting for the owning system: gifts, "
    "shipped items), FULFILLED (delivered: coupons issued, points credited), UNFULFILLED (the "
    "coupon system refused it — limit, inactive, ended or unknown template; the reason ends "
    "with `[unfulfilled: CODE]` — for an operator to follow up) or CANCELLED."
)
class GrantStatus(StrEnum):
    ISSUED = "issued"
    FULFILLED = "fulfilled"
    UNFULFILLED = "unfulfilled"
    CANCELLED = "cancelled"


@strawberry.enum(description="How a config path differs from the active config.")
class ConfigChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


# ---- the ladder ----------------------------------------------------------------------------


@strawberry.type(description="One level of the tenant's tier ladder (会员等级) and its benefits.")
class Tier:
    code: str = strawberry.field(description="Stable code, e.g. `gold`.")
    name: str = strawberry.field(description="Display name.")
    rank: int = strawberry.field(description="Position in the ladder, 0 = the entry tier.")
    threshold: int = strawberry.field(description="Growth value that reaches this tier.")
    keep_threshold: int = strawberry.field(
        description="Growth within a qualifying period that keeps this tier (keep-level, 保级)."
    )
    multiplier_pct: int = strawberry.field(
        description="Points multiplier in percent (150 = ×1.5) applied by earning rules."
    )
    points_multiplier: float = strawberry.field(
        description="The points multiplier as a factor (1.5)."
    )
    discount_bp: int = strawberry.field(
        description="Price rate in basis points (9500 = members pay 95 %)."
    )
    discount_rate: float = strawberry.field(description="The price rate as a fraction (0.95).")
    gifts: list[str] = strawberry.field(
        description='Rewards granted on entering the tier, as "kind:code" (e.g. coupon:GOLD).'
    )

    @classmethod
    def from_def(cls, t: TierDef, rank: int) -> Tier:
        return cls(
            code=t.code,
            name=t.name,
            rank=rank,
            threshold=t.threshold,
            keep_threshold=t.keep_threshold,
            multiplier_pct=t.multiplier_pct,
            points_multiplier=t.multiplier_pct / 100,
            discount_bp=t.discount_bp,
            discount_rate=t.discount_bp / 10_000,
            gifts=list(t.gifts),
        )


@strawberry.type(description="The tenant's tier policy: the ladder and how tiers are kept.")
class TierPolicyInfo:
    rule_set: str = strawberry.field(description="The tiers rule set that defines it.")
    measure: TierMeasure = strawberry.field(description="What upgrades compare to thresholds.")
    period: TierPeriod = strawberry.field(description="When keep-level (保级) is reviewed.")
    months: int = strawberry.field(description="Length of a ROLLING period in months.")
    downgrade: TierDowngrade = strawberry.field(description="What missing the keep does.")
    tiers: list[Tier] = strawberry.field(description="The ladder, entry tier first.")


def _ladder(policy: TierPolicy) -> list[Tier]:
    return [Tier.from_def(t, i) for i, t in enumerate(policy.tiers)]


# ---- a member's tier -----------------------------------------------------------------------


@strawberry.type(description="A manual tier override (an operator's exception) and its end.")
class TierOverride:
    tier: str = strawberry.field(description="The tier code the member has while it lasts.")
    until: datetime | None = strawberry.field(description="When it ends.")
    reason: str | None = strawberry.field(description="Why it was set.")


@strawberry.type(
    description="A member's tier (等级) as of now, with the progress to the next tier and to "
    "keeping this one (保级)."
)
class TierStatus:
    code: str = strawberry.field(
        description="Effective tier code (an active override wins over the natural tier)."
    )
    name: str = strawberry.field(description="Effective tier name.")
    rank: int = strawberry.field(description="Effective tier's rank, 0 = the entry tier.")
    natural: str = strawberry.field(
        description="The tier the policy gives (equals `code` unless an override is active)."
    )
    since: datetime | None = strawberry.field(description="When the natural tier was reached.")
    growth: int = strawberry.field(
        description="Lifetime growth value (成长值): the growth balance."
    )
    period_growth: int = strawberry.field(
        description="Growth earned in the current qualifying period (periodStart → now)."
    )
    upgrade_growth: int = strawberry.field(
        description="The growth the next tier's threshold is compared to: lifetime growth, or "
        "growth in the current window when the policy measures by period."
    )
    next_tier: Tier | None = strawberry.field(
        description="The next tier up from the natural tier (null at the top)."
    )
    growth_to_next: int | None = strawberry.field(
        description="Growth still needed to reach `nextTier` (null at the top)."
    )
    keep_threshold: int = strawberry.field(
        description="Growth needed within the period to keep the natural tier (保级)."
    )
    growth_to_keep: int = strawberry.field(
        description="Growth still needed by `periodEnd` to keep the natural tier (0 = kept)."
    )
    period_start: datetime | None = strawberry.field(
        description="Start of the current qualifying period."
    )
    period_end: datetime | None = strawberry.field(
        description="End of the current qualifying period: the keep-level review."
    )
    multiplier_pct: int = strawberry.field(
        description="Points multiplier of the effective tier in percent (150 = ×1.5)."
    )
    points_multiplier: float = strawberry.field(
        description="Points multiplier of the effective tier as a factor (1.5)."
    )
    discount_bp: int = strawberry.field(
        description="Price rate of the effective tier in basis points (9500 = 95 %)."
    )
    discount_rate: float = strawberry.field(
        description="Price rate of the effective tier as a fraction (0.95)."
    )
    override: TierOverride | None = strawberry.field(
        description="The active manual override, if any."
    )
    evaluated_at: datetime | None = strawberry.field(
        description="When the stored tier was last evaluated (null: never; the status is then "
        "what the policy gives now)."
    )


def _state_of(row: Any) -> TierState:
    return TierState(
        tier=row.tier,
        since=row.since,
        period_start=row.period_start,
        period_end=row.period_end,
        override=row.override,
        override_until=row.override_until,
        override_reason=row.override_reason,
        evaluated_at=row.evaluated_at,
    )


def tier_status(
    policy: TierPolicy,
    stored: TierState,
    lifetime: int,
    moves: Sequence[tuple[datetime, int]],
    timezone: str,
    now: datetime,
) -> TierStatus:
    """The member's tier as of ``now``: the stored state walked forward with the policy (pure;
    nothing is written), then the progress numbers."""
    state = decide(policy, TierFacts(stored, lifetime, moves, timezone), now).state
    natural = tier_def(policy, state.tier) or policy.tiers[0]
    nat_rank = policy.tiers.index(natural)
    effective = tier_def(policy, state.effective(now)) or natural
    override = None
    if state.override and (state.override_until is None or state.override_until > now):
        override = TierOverride(
            tier=state.override, until=state.override_until, reason=state.override_reason
        )
    start = state.period_start
    end = min(state.period_end, now) if state.period_end is not None else now
    period_growth = sum(a for at, a in moves if start <= at <= end) if start is not None else 0
    if policy.measure == "lifetime":
        measure = lifetime
    else:
        window = horizon(policy, TierState(), now, timezone)
        measure = sum(a for at, a in moves if window <= at <= now)
    nxt = policy.tiers[nat_rank + 1] if nat_rank + 1 < len(policy.tiers) else None
    return TierStatus(
        code=effective.code,
        name=effective.name,
        rank=policy.tiers.index(effective),
        natural=natural.code,
        since=state.since,
        growth=lifetime,
        period_growth=period_growth,
        upgrade_growth=measure,
        next_tier=None if nxt is None else Tier.from_def(nxt, nat_rank + 1),
        growth_to_next=None if nxt is None else max(nxt.threshold - measure, 0),
        keep_threshold=natural.keep_threshold,
        growth_to_keep=max(natural.keep_threshold - period_growth, 0),
        period_start=state.period_start,
        period_end=state.period_end,
        multiplier_pct=effective.multiplier_pct,
        points_multiplier=effective.multiplier_pct / 100,
        discount_bp=effective.discount_bp,
        discount_rate=effective.discount_bp / 10_000,
        override=override,
        evaluated_at=stored.evaluated_at,
    )


# ---- tier history --------------------------------------------------------------------------


@strawberry.type(description="One entry of a member's tier history (append-only).")
class TierHistoryEntry:
    change: TierChangeKind = strawberry.field(description="What happened.")
    from_tier: str | None = strawberry.field(description="Effective tier before.")
    to_tier: str = strawberry.field(description="Effective tier after.")
    natural: str = strawberry.field(description="The natural tier after the change.")
    reason: str = strawberry.field(description="Why, in words (English).")
    rule_set: str = strawberry.field(description="The tiers rule set in force.")
    growth: int = strawberry.field(
        description="The growth the decision was based on (period growth for reviews)."
    )
    actor: str | None = strawberry.field(
        description="Who made a manual change (an API key, a CLI user); null for the policy."
    )
    at: datetime = strawberry.field(description="When it took effect (business time).")
    recorded_at: datetime = strawberry.field(description="When it was written.")


HistoryKey = tuple[datetime, datetime, uuid.UUID]


def _history_cursor(row: Any) -> str:
    return encode_cursor(
        "tierhistory", f"{row.at.isoformat()}|{row.created_at.isoformat()}|{row.id}"
    )


def _decode_history_cursor(after: str | None) -> HistoryKey | None:
    value = decode_cursor("tierhistory", after)
    if value is None:
        return None
    try:
        at, created, hid = value.split("|")
        return datetime.fromisoformat(at), datetime.fromisoformat(created), uuid.UUID(hid)
    except ValueError as exc:
        raise InvalidInput("after is not a cursor from this connection", field="after") from exc


async def _tier_history_page(
    tx: Tx, member_id: uuid.UUID, *, first: int, before: HistoryKey | None
) -> list[Any]:
    """Newest first by business time, then by when it was written (a late event's upgrade is
    stamped with the review time it caught up with, so several entries can share ``at``)."""
    conds = [TH.c.tenant_id == tx.tenant_id, TH.c.member_id == member_id]
    if before is not None:
        at, created, hid = before
        conds.append(
            or_(
                TH.c.at < at,
                and_(TH.c.at == at, TH.c.created_at < created),
                and_(TH.c.at == at, TH.c.created_at == created, TH.c.id < hid),
            )
        )
    rows = await tx.conn.execute(
        select(TH)
        .where(*conds)
        .order_by(TH.c.at.desc(), TH.c.created_at.desc(), TH.c.id.desc())
        .limit(first + 1)
    )
    return list(rows)


def _history_entry(r: Any) -> TierHistoryEntry:
    return TierHistoryEntry(
        change=TierChangeKind(r.change),
        from_tier=r.from_tier,
        to_tier=r.to_tier,
        natural=r.natural,
        reason=r.reason,
        rule_set=r.rule,
        growth=int(r.growth),
        actor=r.actor,
        at=r.at,
        recorded_at=r.created_at,
    )


# ---- tasks ---------------------------------------------------------------------------------


@strawberry.type(description="Extra reward on the N-th consecutive check-in day.")
class StreakBonus:
    days: int = strawberry.field(description="Consecutive days that earn the bonus.")
    points: int = strawberry.field(description="Bonus points.")
    growth: int = strawberry.field(description="Bonus growth value.")
    repeat: bool = strawberry.field(description="Paid again every `days` days of the streak.")
    rewards: list[str] = strawberry.field(
        description="Rewards granted with the bonus, `kind:code` (e.g. `coupon:STREAK7`)."
    )


@strawberry.type(description="How often a task pays (null: no limit of that kind).")
class TaskLimits:
    per_day: int | None = strawberry.field(
        description="Completions per tenant-local day (check-ins: 1)."
    )
    per_period: int | None = strawberry.field(description="Completions per `period`.")
    period: str = strawberry.field(description="The period of `perPeriod`: week, month or year.")
    lifetime: int | None = strawberry.field(description="Completions ever.")


@strawberry.type(name="TaskProgress", description="A task (任务) and the member's progress on it.")
class TaskProgressInfo:
    code: str = strawberry.field(description="Stable task code.")
    title: str = strawberry.field(description="Display title.")
    kind: TaskKind = strawberry.field(description="What completes it.")
    rule_set: str = strawberry.field(description="The tasks rule set that declares it.")
    event: str | None = strawberry.field(
        description="The event type that advances it (send it with `recordActivity`)."
    )
    points: int = strawberry.field(description="Points per completion.")
    growth: int = strawberry.field(description="Growth value per completion.")
    rewards: list[str] = strawberry.field(
        description="Rewards granted on each completion besides points and growth, `kind:code` "
        "(e.g. `coupon:FOLLOW10`; coupons are issued at once)."
    )
    streak_bonuses: list[StreakBonus] = strawberry.field(
        description="Check-in streak bonuses (check-in tasks)."
    )
    limits: TaskLimits = strawberry.field(description="How often it pays.")
    channels: list[str] | None = strawberry.field(
        description="Only events from these channels count (null: any channel)."
    )
    today: int = strawberry.field(description="Completions today (tenant-local day).")
    this_period: int = strawberry.field(description="Completions in the current period.")
    lifetime: int = strawberry.field(description="Completions ever.")
    streak: int = strawberry.field(
        description="Current check-in streak in days (0 once a day was missed)."
    )
    progress: int = strawberry.field(
        description="How far along: streak days, categories or profile fields so far, or "
        "lifetime completions."
    )
    target: int = strawberry.field(
        description="What `progress` aims at (longest streak bonus, categories needed, fields "
        "needed, lifetime limit; 0 when open-ended)."
    )
    available: bool = strawberry.field(description="Completing it now would pay.")
    blocked_reason: str | None = strawberry.field(
        description="Why not, when not available: ALREADY_DONE_TODAY, ALREADY_DONE, "
        "DAILY_LIMIT, PERIOD_LIMIT or LIFETIME_LIMIT."
    )


def _task_info(rule: str, t: TaskDef, s: TaskStatus) -> TaskProgressInfo:
    per_day = t.per_day if t.per_day is not None else (1 if t.kind == "checkin" else None)
    return TaskProgressInfo(
        code=t.code,
        title=t.title,
        kind=TaskKind(t.kind),
        rule_set=rule,
        event=event_type(t),
        points=t.points,
        growth=t.growth,
        rewards=list(t.rewards),
        streak_bonuses=[
            StreakBonus(
                days=b.days,
                points=b.points,
                growth=b.growth,
                repeat=b.repeat,
                rewards=list(b.rewards),
            )
            for b in t.streak
        ],
        limits=TaskLimits(
            per_day=per_day, per_period=t.per_period, period=t.period, lifetime=t.lifetime
        ),
        channels=None if t.channels is None else list(t.channels),
        today=s.today,
        this_period=s.this_period,
        lifetime=s.lifetime,
        streak=s.streak,
        progress=s.progress,
        target=s.target,
        available=s.available,
        blocked_reason=s.blocked,
    )


# ---- grants --------------------------------------------------------------------------------


@strawberry.type(
    name="Grant",
    description="A reward given to a member by a rule (join gift, tier gift, benefit) or bought "
    "in the points mall, waiting for or done with fulfilment by the owning system.",
)
class MemberRewardGrant:
    id: strawberry.ID = strawberry.field(description="Opaque id.")
    kind: str = strawberry.field(description="Reward kind: coupon, gift, physical, … ")
    code: str = strawberry.field(description="The item in the owning system (coupon template).")
    reward: str = strawberry.field(description='"kind:code", as rules and the catalog name it.')
    quantity: int = strawberry.field(description="Units granted.")
    rule: str = strawberry.field(description="The rule (or `mall`) that granted it.")
    reason: str = strawberry.field(description="Why, in words.")
    source: str = strawberry.field(description="What caused it: `event:<id>` or `redemption:<id>`.")
    status: GrantStatus = strawberry.field(description="Fulfilment state.")
    created_at: datetime = strawberry.field(description="When it was granted.")


def grant_from_row(r: Any) -> MemberRewardGrant:
    return MemberRewardGrant(
        id=strawberry.ID(global_id("Grant", r.id)),
        kind=r.kind,
        code=r.code,
        reward=f"{r.kind}:{r.code}",
        quantity=int(r.quantity),
        rule=r.rule,
        reason=r.reason,
        source=r.source,
        status=GrantStatus(r.status),
        created_at=r.created_at,
    )


# ---- batch reads (one statement per relation and request) ----------------------------------


async def _tier_rows(tx: Tx, keys: Sequence[uuid.UUID]) -> dict[uuid.UUID, TierState]:
    rows = await tx.conn.execute(
        select(MT).where(MT.c.tenant_id == tx.tenant_id, MT.c.member_id.in_(list(keys)))
    )
    return {r.member_id: _state_of(r) for r in rows}


async def _growth_moves(
    tx: Tx, keys: Sequence[uuid.UUID], since: datetime
) -> dict[uuid.UUID, list[tuple[datetime, int]]]:
    """Growth facts from ``since`` of each member and of the members merged into it (as
    :func:`gateway.rules.engine.growth_moves`, for many members in one statement)."""
    ids = list(keys)
    own = select(GF.c.member_id.label("owner"), GF.c.occurred_at, GF.c.amount).where(
        GF.c.tenant_id == tx.tenant_id, GF.c.member_id.in_(ids), GF.c.occurred_at >= since
    )
    merged = (
        select(MB.c.merged_into.label("owner"), GF.c.occurred_at, GF.c.amount)
        .select_from(GF.join(MB, and_(MB.c.tenant_id == GF.c.tenant_id, MB.c.id == GF.c.member_id)))
        .where(
            GF.c.tenant_id == tx.tenant_id,
            MB.c.merged_into.in_(ids),
            GF.c.occurred_at >= since,
        )
    )
    out: dict[uuid.UUID, list[tuple[datetime, int]]] = {k: [] for k in ids}
    for r in await tx.conn.execute(union_all(own, merged)):
        owner = r.owner if isinstance(r.owner, uuid.UUID) else uuid.UUID(str(r.owner))
        out.setdefault(owner, []).append((r.occurred_at, int(r.amount)))
    for moves in out.values():
        moves.sort()
    return out


async def _task_rows(
    tx: Tx, keys: Sequence[uuid.UUID], tasks: Sequence[str]
) -> dict[tuple[uuid.UUID, str], dict[str, Any]]:
    rows = await tx.conn.execute(
        select(TP.c.member_id, TP.c.task, TP.c.state).where(
            TP.c.tenant_id == tx.tenant_id,
            TP.c.member_id.in_(list(keys)),
            TP.c.task.in_(list(tasks)),
        )
    )
    return {(r.member_id, r.task): dict(r.state or {}) for r in rows}


async def _grant_rows(
    tx: Tx, keys: Sequence[uuid.UUID], *, limit: int, status: str | None
) -> dict[uuid.UUID, list[Any]]:
    """Each member's newest grants, ``limit`` per member, in one ``ROW_NUMBER()`` statement."""
    conds = [G.c.tenant_id == tx.tenant_id, G.c.member_id.in_(list(keys))]
    if status is not None:
        conds.append(G.c.status == status)
    rn = (
        func.row_number()
        .over(partition_by=G.c.member_id, order_by=(G.c.created_at.desc(), G.c.id.desc()))
        .label("rn")
    )
    inner = select(G, rn).where(*conds).subquery()
    rows = await tx.conn.execute(
        select(inner).where(inner.c.rn <= limit).order_by(inner.c.member_id, inner.c.rn)
    )
    out: dict[uuid.UUID, list[Any]] = {k: [] for k in keys}
    for r in rows:
        out.setdefault(r.member_id, []).append(r)
    return out


# ---- loaders -------------------------------------------------------------------------------


async def active_config(ctx: RequestContext) -> tuple[RuleConfig, str]:
    """The tenant's active rule config and timezone, read once per request."""

    def factory(c: RequestContext) -> DataLoader[int, tuple[RuleConfig, str]]:
        async def load(keys: list[int]) -> list[tuple[RuleConfig, str]]:
            found = await c.read(rule_config.active, c.hub.rules)
            return [found for _ in keys]

        return DataLoader(load)

    return await ctx.loaders.named("rules:config", factory).load(0)


def tier_loader(ctx: RequestContext) -> DataLoader[uuid.UUID, TierStatus | None]:
    def factory(c: RequestContext) -> DataLoader[uuid.UUID, TierStatus | None]:
        async def load(keys: list[uuid.UUID]) -> list[TierStatus | None]:
            cfg, timezone = await active_config(c)
            policy = cfg.tier_policy
            if policy is None:
                return [None for _ in keys]
            now = utcnow()
            states = await c.read(_tier_rows, keys)
            balances = await c.loaders.balances(30).load_many(keys)
            since = min(horizon(policy, states.get(k, TierState()), now, timezone) for k in keys)
            moves = await c.read(_growth_moves, keys, since)
            out: list[TierStatus | None] = []
            for k, views in zip(keys, balances, strict=True):
                lifetime = next((b.available for b in views if b.account == "growth"), 0)
                out.append(
                    tier_status(
                        policy,
                        states.get(k, TierState()),
                        lifetime,
                        moves.get(k, []),
                        timezone,
                        now,
                    )
                )
            return out

        return DataLoader(load)

    return ctx.loaders.named("rules:tier", factory)


def tasks_loader(ctx: RequestContext) -> DataLoader[uuid.UUID, list[TaskProgressInfo]]:
    def factory(c: RequestContext) -> DataLoader[uuid.UUID, list[TaskProgressInfo]]:
        async def load(keys: list[uuid.UUID]) -> list[list[TaskProgressInfo]]:
            cfg, timezone = await active_config(c)
            defs = engine.task_defs(c.hub.rules, cfg)
            if not defs:
                return [[] for _ in keys]
            states = await c.read(_task_rows, keys, [t.code for _, t in defs])
            now = utcnow()
            return [
                [
                    _task_info(rule, t, task_status(t, states.get((k, t.code), {}), now, timezone))
                    for rule, t in defs
                ]
                for k in keys
            ]

        return DataLoader(load)

    return ctx.loaders.named("rules:tasks", factory)


def grants_loader(
    ctx: RequestContext, first: int, status: str | None
) -> DataLoader[uuid.UUID, list[MemberRewardGrant]]:
    def factory(c: RequestContext) -> DataLoader[uuid.UUID, list[MemberRewardGrant]]:
        async def load(keys: list[uuid.UUID]) -> list[list[MemberRewardGrant]]:
            found = await c.read(_grant_rows, keys, limit=first, status=status)
            return [[grant_from_row(r) for r in found.get(k, [])] for k in keys]

        return DataLoader(load)

    return ctx.loaders.named(("rules:grants", first, status), factory)


async def _prime(loader: DataLoader[uuid.UUID, Any], ids: Sequence[uuid.UUID]) -> None:
    missing = [k for k in dict.fromkeys(ids) if loader.cache_map.get(k) is None]
    if missing:
        values = await loader.load_fn(missing)  # type: ignore[call-arg]
        loader.prime_many(dict(zip(missing, values, strict=True)))


async def prefetch(ctx: RequestContext, ids: Sequence[uuid.UUID], name: str, args: Any) -> None:
    """Prime the loader of the ``Member`` field ``name`` for a page of members (called by
    ``schema.lookahead.prefetch_members``) so each item resolves synchronously."""
    if name == "tier":
        await _prime(tier_loader(ctx), ids)
    elif name == "tasks":
        await _prime(tasks_loader(ctx), ids)
    elif name == "grants":
        first = (args or {}).get("first", 20)
        if (args or {}).get("status") is None and isinstance(first, int):
            if 0 < first <= MAX_GRANTS:
                await _prime(grants_loader(ctx, first, None), ids)


# ---- Member fields (attached to ``Member`` in schema/types.py) ------------------------------


def _member_tier(root: Any) -> TierStatus | None:
    return peek(tier_loader(root.ctx), root.id)  # type: ignore[return-value]


async def _member_tier_history(
    root: Any,
    first: Annotated[int, strawberry.argument(description="Page size, 0-100.")] = 20,
    after: Annotated[
        str | None, strawberry.argument(description="endCursor of the previous page.")
    ] = None,
) -> Connection[TierHistoryEntry]:
    check_first(first)
    before = _decode_history_cursor(after)
    ctx: RequestContext = root.ctx
    rows = (
        []
        if first == 0
        else await ctx.read(_tier_history_page, root.id, first=first, before=before)
    )
    return build_connection(
        rows,
        first,
        wrap=_history_entry,
        cursor_of=_history_cursor,
        has_previous=after is not None,
    )


def _member_tasks(root: Any) -> list[TaskProgressInfo]:
    return peek(tasks_loader(root.ctx), root.id)  # type: ignore[return-value]


def _member_grants(
    root: Any,
    first: Annotated[int, strawberry.argument(description="How many, newest first, 0-100.")] = 20,
    status: Annotated[
        GrantStatus | None, strawberry.argument(description="Only grants in this state.")
    ] = None,
) -> list[MemberRewardGrant]:
    check_first(first, maximum=MAX_GRANTS)
    if first == 0:
        return []
    loader = grants_loader(root.ctx, first, None if status is None else status.value)
    return peek(loader, root.id)  # type: ignore[return-value]


MEMBER_TIER: Any = strawberry.field(
    resolver=_member_tier,
    description="The member's tier (等级) as of now with progress to the next tier and to "
    "keep-level (保级); null when the tenant runs no tier rule set. Batched across members.",
)
MEMBER_TIER_HISTORY: Any = strawberry.field(
    resolver=_member_tier_history,
    description="Tier changes and keep-level reviews, newest first (keyset-paginated, ≤ 100 a "
    "page).",
)
MEMBER_TASKS: Any = strawberry.field(
    resolver=_member_tasks,
    description="Every task of the tenant's tasks rule sets with the member's progress. "
    "Batched across members.",
)
MEMBER_GRANTS: Any = strawberry.field(
    resolver=_member_grants,
    description="Rewards granted to the member (coupons, gifts, mall purchases), newest first. "
    "Batched across members.",
)


# ---- root queries --------------------------------------------------------------------------


@strawberry.type(description="A rule set installed on this gateway (plugin entry points).")
class RuleSetInfo:
    name: str = strawberry.field(description="Unique name; what a config's `rule:` names.")
    slot: RuleSlot = strawberry.field(description="The slot it fills.")
    version: str = strawberry.field(description="The rule set's version.")
    description: str = strawberry.field(description="What it does (for brand admins).")
    config_schema: JSON | None = strawberry.field(
        description="JSON Schema (2020-12) of its config; null when it takes none."
    )
    exclusive: bool = strawberry.field(
        description="Its slot holds one rule set at most (tiers, expiry)."
    )
    priority: int | None = strawberry.field(
        description="Benefits: default priority (higher runs first)."
    )
    stacking: str | None = strawberry.field(
        description="Benefits: `stack` (always applies) or `exclusive` (only the highest "
        "priority exclusive benefit applies)."
    )
    enabled: bool = strawberry.field(description="The tenant's active config uses it.")


@strawberry.type(description="One saved version of the tenant's rule config (immutable).")
class RuleConfigVersion:
    version: int = strawberry.field(description="Version number, from 1.")
    document: JSON = strawberry.field(
        description="The config document: slots (tiers, expiry, earning, tasks, exchange, "
        "benefits) and the points-mall catalog (`mall`)."
    )
    digest: str = strawberry.field(description="SHA-256 of the canonical document.")
    created_at: datetime = strawberry.field(description="When it was saved.")
    created_by: str = strawberry.field(description="Who saved it (API key or CLI user).")
    comment: str = strawberry.field(description="Why (the operator's comment).")
    active: bool = strawberry.field(
        description="It is the tenant's active config (at the time of the answer)."
    )


def _version(v: rule_config.ConfigVersion, active: bool) -> RuleConfigVersion:
    return RuleConfigVersion(
        version=v.version,
        document=dict(v.document),
        digest=v.digest,
        created_at=v.created_at,
        created_by=v.created_by,
        comment=v.comment,
        active=active,
    )


@strawberry.type(description="A member event type rules react to (see `recordActivity`).")
class EventTypeInfo:
    name: str = strawberry.field(description="Dotted lower-case name, e.g. task.checkin.")
    description: str = strawberry.field(description="What it means.")
    payload: JSON = strawberry.field(description="The payload keys it carries and their meaning.")
    recordable: bool = strawberry.field(
        description="recordActivity accepts it (order, join and tier events are recorded by "
        "the gateway itself)."
    )


@strawberry.type(description="A kind of reward the mall can sell and rules can grant.")
class RewardKindInfo:
    name: str = strawberry.field(description="Kind name, e.g. coupon, gift, physical.")
    description: str = strawberry.field(description="What it is.")
    fulfilment: str = strawberry.field(
        description="Who delivers it: coupon, ship, store, ledger or plugin."
    )


def _read_ctx(info: Info) -> RequestContext:
    ctx = ctx_of(info)
    ctx.require(Scope.READ)
    return ctx


async def _active_version(tx: Tx, registry: Any) -> rule_config.ConfigVersion | None:
    cfg, _ = await rule_config.active(tx, registry)
    if cfg.version == 0:
        return None
    return await rule_config.get_version(tx, cfg.version)


@strawberry.type
class RulesQueries:
    @strawberry.field(
        description="The tenant's tier ladder with each tier's benefits (entry "
        "tier first); empty when it runs no tier rule set."
    )
    async def tiers(self, info: Info) -> list[Tier]:
        cfg, _ = await active_config(_read_ctx(info))
        return [] if cfg.tier_policy is None else _ladder(cfg.tier_policy)

    @strawberry.field(
        description="The tenant's tier policy (ladder, upgrade measure, keep-level period, "
        "downgrade); null when it runs no tier rule set."
    )
    async def tier_policy(self, info: Info) -> TierPolicyInfo | None:
        cfg, _ = await active_config(_read_ctx(info))
        p, entry = cfg.tier_policy, cfg.one("tiers")
        if p is None or entry is None:
            return None
        return TierPolicyInfo(
            rule_set=entry.rule,
            measure=TierMeasure(p.measure),
            period=TierPeriod(p.period),
            months=p.months,
            downgrade=TierDowngrade(p.downgrade),
            tiers=_ladder(p),
        )

    @strawberry.field(description="Rule sets installed on this gateway, by name.")
    async def rule_sets(self, info: Info) -> list[RuleSetInfo]:
        ctx = _read_ctx(info)
        cfg, _ = await active_config(ctx)
        enabled = set(cfg.rule_names)
        registry = ctx.hub.rules
        out = []
        for name in registry.names():
            rs = registry.get(name)
            assert rs is not None
            benefits = rs.slot == "benefits"
            schema = getattr(rs, "config_schema", None)
            out.append(
                RuleSetInfo(
                    name=name,
                    slot=RuleSlot(rs.slot),
                    version=rs.version,
                    description=str(getattr(rs, "description", "") or ""),
                    config_schema=None if schema is None else dict(schema),
                    exclusive=rs.slot in EXCLUSIVE_SLOTS,
                    priority=int(getattr(rs, "priority", 0)) if benefits else None,
                    stacking=str(getattr(rs, "stacking", "stack")) if benefits else None,
                    enabled=name in enabled,
                )
            )
        return out

    @strawberry.field(description="The tenant's active rule config; null when none was ever saved.")
    async def rule_config(self, info: Info) -> RuleConfigVersion | None:
        ctx = _read_ctx(info)
        v = await ctx.read(_active_version, ctx.hub.rules)
        return None if v is None else _version(v, True)

    @strawberry.field(description="Saved rule config versions, newest first (the audit trail).")
    async def rule_config_history(
        self,
        info: Info,
        first: Annotated[int, strawberry.argument(description="How many, 1-100.")] = 20,
    ) -> list[RuleConfigVersion]:
        ctx = _read_ctx(info)
        check_first(first)
        if first == 0:
            return []
        cfg, _ = await active_config(ctx)
        versions = await ctx.read(rule_config.history, limit=first)
        return [_version(v, v.version == cfg.version) for v in versions]

    @strawberry.field(description="Member event types the installed rules know.")
    def event_types(self, info: Info) -> list[EventTypeInfo]:
        ctx = _read_ctx(info)
        return [
            EventTypeInfo(
                name=et.name,
                description=et.description,
                payload=dict(et.payload),
                recordable=et.recorded_by is None or bool(et.recorded_by),
            )
            for et in sorted(ctx.hub.rules.event_types.values(), key=lambda e: e.name)
        ]

    @strawberry.field(description="Reward kinds the mall catalog and grants may use.")
    def reward_kinds(self, info: Info) -> list[RewardKindInfo]:
        ctx = _read_ctx(info)
        return [
            RewardKindInfo(name=k.name, description=k.description, fulfilment=k.fulfilment)
            for k in sorted(ctx.hub.rules.reward_kinds.values(), key=lambda k: k.name)
        ]


# ---- the event report ----------------------------------------------------------------------


@strawberry.type(
    description="One outcome a rule decided: a credit (account + amount) or a grant (reward)."
)
class RuleIntent:
    rule_set: str = strawberry.field(description="The rule set that produced it.")
    slot: RuleSlot = strawberry.field(description="Its slot.")
    rule: str = strawberry.field(description="The rule inside the rule set.")
    account: str | None = strawberry.field(description="Credits: points, growth or stored_value.")
    amount: int | None = strawberry.field(description="Credits: the amount (> 0).")
    kind: str = strawberry.field(
        description="Credits: the ledger kind (earn, task, …); grants: `grant`."
    )
    grant: str | None = strawberry.field(description='Grants: the reward, "kind:code".')
    quantity: int | None = strawberry.field(description="Grants: units.")
    reason: str = strawberry.field(description="Why, in words.")
    fulfilment: GrantStatus | None = strawberry.field(
        default=None,
        description="Grants written now: FULFILLED (coupons issued / points credited), "
        "UNFULFILLED (refused, see fulfilmentReason) or ISSUED (another system's kind); null "
        "for credits and for grants written before (a replay).",
    )
    fulfilment_reason: str | None = strawberry.field(
        default=None,
        description="UNFULFILLED: the refusal code (MEMBER_LIMIT, TOTAL_LIMIT, INACTIVE, "
        "EXPIRED, NOT_FOUND, INVALID_CODE).",
    )
    coupon_codes: list[str] | None = strawberry.field(
        default=None,
        description="Coupon grants: the codes issued (in a dry run: that would be issued; "
        "rolled back).",
    )


@strawberry.type(description="What an event did to one task.")
class TaskStep:
    task: str = strawberry.field(description="Task code.")
    completed: bool = strawberry.field(description="It completed and pays.")
    refused: str | None = strawberry.field(
        description="Why it did not pay: ALREADY_DONE_TODAY, ALREADY_DONE, DAILY_LIMIT, "
        "PERIOD_LIMIT or LIFETIME_LIMIT (null: completed or only progressed)."
    )
    reason: str = strawberry.field(description="The reward's reason text (completions).")
    points: int = strawberry.field(description="Points paid, streak bonus included.")
    growth: int = strawberry.field(description="Growth value paid.")


@strawberry.type(description="One tier change an event caused.")
class TierChange:
    change: TierChangeKind = strawberry.field(description="What happened.")
    from_tier: str | None = strawberry.field(description="Effective tier before.")
    to_tier: str = strawberry.field(description="Effective tier after.")
    natural: str = strawberry.field(description="Natural tier after.")
    reason: str = strawberry.field(description="Why, in words.")
    growth: int = strawberry.field(description="The growth the decision was based on.")
    at: datetime = strawberry.field(description="When it took effect.")


@strawberry.type(description="The member's tier before and after an event.")
class TierMove:
    before: str | None = strawberry.field(description="Effective tier before the event.")
    after: str | None = strawberry.field(description="Effective tier after it.")
    changes: list[TierChange] = strawberry.field(description="Changes, in order.")


@strawberry.type(
    description="What the tenant's rules did (or, in a dry run, would do) for one member event: "
    "credits and grants, task steps, the tier, and the events it caused in turn."
)
class EventReport:
    event_id: str = strawberry.field(description="The event's id (uuid).")
    type: str = strawberry.field(description="The event type.")
    occurred_at: datetime = strawberry.field(description="When it happened.")
    dry_run: bool = strawberry.field(description="Nothing was written.")
    recorded: bool = strawberry.field(
        description="The event was recorded now (false for dry runs and for an event recorded "
        "before: a retry changes nothing)."
    )
    intents: list[RuleIntent] = strawberry.field(
        description="Credits and grants the rules decided, in order."
    )
    tasks: list[TaskStep] = strawberry.field(description="Tasks the event concerned.")
    tier: TierMove | None = strawberry.field(
        description="The tier before and after (null when the tenant runs no tier rule set)."
    )
    follow_ups: list[EventReport] = strawberry.field(
        description="Events this one caused (a tier.changed grants the new tier's gifts), "
        "processed in turn."
    )
    member_id: strawberry.Private[uuid.UUID | None]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="The member, read after the event.")
    def member(self) -> MemberRef | None:
        return member_ref(self.ctx, self.member_id)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], ctx: RequestContext) -> EventReport:
        tier = d.get("tier")
        return cls(
            event_id=d["event_id"],
            type=d["type"],
            occurred_at=datetime.fromisoformat(d["occurred_at"]),
            dry_run=bool(d["dry_run"]),
            recorded=bool(d["recorded"]),
            intents=[
                RuleIntent(
                    **{
                        **i,
                        "slot": RuleSlot(i["slot"]),
                        "fulfilment": GrantStatus(i["fulfilment"]) if i.get("fulfilment") else None,
                    }
                )
                for i in d.get("intents", [])
            ],
            tasks=[TaskStep(**s) for s in d.get("tasks", [])],
            tier=None
            if tier is None
            else TierMove(
                before=tier["before"],
                after=tier["after"],
                changes=[_change_from_dict(c) for c in tier["changes"]],
            ),
            follow_ups=[cls.from_dict(f, ctx) for f in d.get("follow_ups", [])],
            member_id=uuid.UUID(d["member_id"]) if d.get("member_id") else None,
            ctx=ctx,
        )


def member_ref(ctx: RequestContext, member_id: uuid.UUID | None) -> Any:
    from schema.mutations import _member

    return _member(ctx, member_id)


def _change_dict(c: DomainTierChange) -> dict[str, Any]:
    return {
        "change": c.change,
        "from_tier": c.from_tier,
        "to_tier": c.to_tier,
        "natural": c.natural,
        "reason": c.reason,
        "growth": c.growth,
        "at": c.at.isoformat(),
    }


def _change_from_dict(c: Mapping[str, Any]) -> TierChange:
    return TierChange(
        change=TierChangeKind(c["change"]),
        from_tier=c["from_tier"],
        to_tier=c["to_tier"],
        natural=c["natural"],
        reason=c["reason"],
        growth=int(c["growth"]),
        at=datetime.fromisoformat(c["at"]),
    )


def report(
    out: engine.Outcome, *, recorded: bool, member_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """An outcome as plain JSON (stored with an idempotency key; :meth:`EventReport.from_dict`
    builds the answer from it, first time and replay alike)."""
    intents = []
    done = list(out.fulfilments)  # in the order the grants were planned (and written)
    for p in out.planned:
        o = p.outcome
        common = {"rule_set": p.rule_set, "slot": p.slot, "rule": o.rule, "reason": o.reason}
        if isinstance(o, Grant):
            f = next(
                (x for x in done if f"{x.kind}:{x.code}" == o.reward[: len(o.kind) + 65]), None
            )
            if f is not None:
                done.remove(f)
            intents.append(
                {
                    **common,
                    "account": None,
                    "amount": None,
                    "kind": "grant",
                    "grant": o.reward,
                    "quantity": o.quantity,
                    "fulfilment": None if f is None else f.status,
                    "fulfilment_reason": None if f is None else f.reason,
                    "coupon_codes": None
                    if f is None or f.kind != "coupon"
                    else [c.code for c in f.coupons],
                }
            )
        else:
            intents.append(
                {
                    **common,
                    "account": o.account,
                    "amount": o.amount,
                    "kind": o.kind,
                    "grant": None,
                    "quantity": None,
                }
            )
    has_tier = out.tier_before is not None or out.tier_after is not None or out.tier_changes
    mid = out.member_id or member_id
    return {
        "event_id": str(out.event.id),
        "type": out.event.type,
        "occurred_at": out.event.occurred_at.isoformat(),
        "member_id": None if mid is None else str(mid),
        "dry_run": out.dry_run,
        "recorded": recorded,
        "intents": intents,
        "tasks": [
            {
                "task": s.task,
                "completed": s.completed,
                "refused": s.refused,
                "reason": s.reason,
                "points": s.points if s.completed else 0,
                "growth": s.growth if s.completed else 0,
            }
            for s in out.tasks
        ],
        "tier": {
            "before": out.tier_before,
            "after": out.tier_after,
            "changes": [_change_dict(c) for c in out.tier_changes],
        }
        if has_tier
        else None,
        "follow_ups": [report(f, recorded=recorded) for f in out.follow_ups],
    }


# ---- inputs --------------------------------------------------------------------------------


@strawberry.input(description="A member event: what happened and when.")
class MemberEventInput:
    type: str = strawberry.field(
        description="A registered event type (see `eventTypes`), e.g. order.paid, task.checkin."
    )
    occurred_at: datetime | None = strawberry.field(
        default=None, description="When it happened, with offset (default: now)."
    )
    payload: JSON | None = strawberry.field(
        default=None,
        description="Event details as a JSON object (see the type's `payload`), e.g. "
        '{"channel": "miniapp"}; order.paid carries paid_fen, lines, …',
    )


@strawberry.input(
    description="Run one event for a member under the candidate config; always rolled back."
)
class ConfigSimulationInput:
    member_id: strawberry.ID = strawberry.field(description="The member.")
    event: MemberEventInput = strawberry.field(description="The event to run.")


@strawberry.input(
    description="Validate and save a new version of the tenant's rule config (admin). Saving "
    "a document identical to the active one is a no-op."
)
class ApplyRuleConfigInput:
    document: JSON = strawberry.field(
        description="The whole config: {tiers, expiry, earning, tasks, exchange, benefits, "
        "mall} (see plugins/README.md, 'The config file')."
    )
    comment: str = strawberry.field(default="", description="Why (kept in the audit trail).")
    dry_run: bool = strawberry.field(
        default=False,
        description="Validate and report what would change (and `simulate`) without saving; "
        "the idempotencyKey is not used up.",
    )
    simulate: ConfigSimulationInput | None = strawberry.field(
        default=None,
        description="Also run this event under the candidate config (rolled back).",
    )
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)


@strawberry.input(
    description="Dry-run an event for a member under the active config: what would it earn, "
    "which tasks would advance, would the tier change? Nothing is written."
)
class SimulateEventInput:
    member_id: strawberry.ID = strawberry.field(description="The member.")
    type: str = strawberry.field(
        description="A registered event type (see `eventTypes`), e.g. order.paid."
    )
    occurred_at: datetime | None = strawberry.field(
        default=None, description="When it happens, with offset (default: now)."
    )
    payload: JSON | None = strawberry.field(
        default=None,
        description='Event details as a JSON object, e.g. {"paid_fen": 38800, "channel": '
        '"tmall", "lines": [{"sku": "A", "category": "tea", "quantity": 1, "amount_fen": '
        "38800}]}.",
    )


@strawberry.input(
    description="Record a member activity from a frontend (check-in, post, follow, …) and run "
    "the tenant's rules for it."
)
class RecordActivityInput:
    member_id: strawberry.ID = strawberry.field(description="The member.")
    type: str = strawberry.field(
        description="A registered, recordable event type (see `eventTypes`), e.g. task.checkin, "
        "community.posted, wechat.followed."
    )
    occurred_at: datetime | None = strawberry.field(
        default=None,
        description="When it happened, with offset (default: now; at most 5 minutes ahead).",
    )
    payload: JSON | None = strawberry.field(
        default=None,
        description='Event details as a JSON object, e.g. {"channel": "miniapp"}.',
    )
    idempotency_key: str | None = strawberry.field(
        default=None,
        description=IDEMPOTENCY_DOC
        + " The event's id is derived from it, so a retry records nothing twice.",
    )
    dry_run: bool = strawberry.field(
        default=False,
        description="Report what it would do without writing (the idempotencyKey is not used "
        "up; the report says so if the event was recorded before).",
    )


@strawberry.input(
    description="Set a manual tier override until a given time, or clear it (tier: null)."
)
class OverrideTierInput:
    member_id: strawberry.ID = strawberry.field(description="The member.")
    tier: str | None = strawberry.field(
        description="Tier code to give the member; null clears the active override."
    )
    reason: str = strawberry.field(description="Why (1-200 characters, kept in the history).")
    until: datetime | None = strawberry.field(
        default=None, description="When the override ends (required unless clearing)."
    )
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)


# ---- payloads ------------------------------------------------------------------------------


@strawberry.type(description="One path where the config differs from the active one.")
class ConfigChange:
    path: str = strawberry.field(description="Where, e.g. `earning[0].config.points_per_yuan`.")
    change: ConfigChangeKind = strawberry.field(description="Added, removed or changed.")
    before: JSON | None = strawberry.field(description="The active value (null when added).")
    after: JSON | None = strawberry.field(description="The new value (null when removed).")


@strawberry.type(description="The result of applying (or dry-running) a rule config.")
class ApplyRuleConfigPayload:
    dry_run: bool = strawberry.field(description="Nothing was saved.")
    saved: bool = strawberry.field(
        description="A new version was saved and activated (false for dry runs and for a "
        "document identical to the active one)."
    )
    changed: bool = strawberry.field(description="The document differs from the active config.")
    version: int = strawberry.field(
        description="The version number the document has, or would get if saved."
    )
    config: RuleConfigVersion | None = strawberry.field(
        description="The stored version now active (null for a dry run that would create one)."
    )
    changes: list[ConfigChange] = strawberry.field(
        description="What differs from the active config, path by path (≤ 500)."
    )
    simulation: EventReport | None = strawberry.field(
        description="The `simulate` event under this config (rolled back)."
    )


@strawberry.type(description="The override (or its clearing) and the tier changes it made.")
class OverrideTierPayload:
    changes: list[TierChange] = strawberry.field(
        description="Changes recorded in the tier history, in order."
    )
    member_id: strawberry.Private[uuid.UUID]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="The member, with its tier now.")
    def member(self) -> MemberRef | None:
        return member_ref(self.ctx, self.member_id)


COMMON: tuple[type[Error], ...] = (
    NotFoundError,
    InvalidInputError,
    IdempotencyKeyReusedError,
    PermissionDeniedError,
)
APPLY_ERRORS = (*COMMON, ConfigInvalidError)


def result_union(name: str, payload: type, errors: tuple[type[Error], ...], doc: str) -> Any:
    return Annotated[
        Union[payload, *errors],  # type: ignore[valid-type]
        strawberry.union(name, description=doc),
    ]


ApplyRuleConfigResult = result_union(
    "ApplyRuleConfigResult", ApplyRuleConfigPayload, APPLY_ERRORS, "applyRuleConfig result."
)
SimulateEventResult = result_union(
    "SimulateEventResult", EventReport, COMMON, "simulateEvent result."
)
RecordActivityResult = result_union(
    "RecordActivityResult", EventReport, COMMON, "recordActivity result."
)
OverrideTierResult = result_union(
    "OverrideTierResult", OverrideTierPayload, COMMON, "overrideTier result."
)


# ---- helpers -------------------------------------------------------------------------------

Result = dict[str, Any]


async def run_mutation(
    info: Info,
    *,
    operation: str,
    scopes: tuple[Scope, ...],
    inp: Any,
    execute: Callable[[Tx, str], Awaitable[Result]],
    allowed: tuple[type[Error], ...],
) -> tuple[RequestContext, Result | Error]:
    """``schema.mutations._run`` (permission, idempotency claim, one transaction, typed errors);
    imported late because ``schema.mutations`` imports this module's mixin."""
    from schema.mutations import _run

    return await _run(
        info, operation=operation, scopes=scopes, inp=inp, execute=execute, allowed=allowed
    )


def without_key(inp: Any) -> Any:
    """A dry run claims no idempotency key: the same key stays free for the real request."""
    return dataclasses.replace(inp, idempotency_key=None)


async def run_dry(
    info: Info,
    *,
    scopes: tuple[Scope, ...],
    execute: Callable[[Tx], Awaitable[Result]],
    allowed: tuple[type[Error], ...],
) -> tuple[RequestContext, Result | Error]:
    """Permission check, one transaction, typed errors — for operations without a key."""
    ctx = ctx_of(info)
    try:
        ctx.require(*scopes)
        async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
            result = await execute(tx)
    except DomainError as exc:
        return ctx, allowed_error(exc, allowed)
    return ctx, result


async def resolve_member(tx: Tx, raw: object, field: str, *, lock: bool = True) -> uuid.UUID:
    """An id from an input → this tenant's active member (merged ids follow their survivor)."""
    mid = decode_id(raw, "Member")
    resolved = None if mid is None else await members.resolve(tx, mid, lock=lock)
    if resolved is None:
        raise NotFound("no Member with this id", field=field)
    return resolved


def _actor(ctx: RequestContext) -> str:
    key = ctx.principal.api_key_id
    return f"api-key:{key}" if key is not None else "api"


def _event_type(
    registry: Any, name: str, field: str, *, recordable: bool, ctx: RequestContext | None = None
) -> str:
    et = registry.event_types.get(name)
    if et is None:
        raise InvalidInput(
            f"unknown event type {name!r} (see eventTypes for the registered ones)", field=field
        )
    if recordable and et.recorded_by is not None:
        if not et.recorded_by:
            raise InvalidInput(
                f"{name} is recorded by the gateway itself (orders, members, tiers), not through "
                "recordActivity",
                field=field,
            )
        assert ctx is not None
        if not ctx.principal.can(*(Scope(s) for s in et.recorded_by)):
            raise PermissionDenied(
                f"{name} may only be recorded with scope {' or '.join(et.recorded_by)}"
            )
    return name


def _payload(raw: object, field: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput("payload must be a JSON object", field=field)
    if len(json.dumps(raw, ensure_ascii=False, default=str)) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(f"payload must be at most {MAX_PAYLOAD_BYTES} bytes", field=field)
    return raw


def _when(raw: datetime | None, now: datetime, field: str) -> datetime:
    if raw is None:
        return now
    if raw.tzinfo is None or raw.utcoffset() is None:
        raise InvalidInput("needs a timezone offset, e.g. 2026-03-01T10:00:00+08:00", field=field)
    return raw


def config_diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Path-level differences between two config documents (mappings by key, lists by index)."""
    out: list[dict[str, Any]] = []

    def walk(a: Any, b: Any, p: str) -> None:
        if len(out) >= MAX_CONFIG_CHANGES:
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in [*a, *(k for k in b if k not in a)]:
                q = f"{p}.{k}" if p else str(k)
                if k not in b:
                    out.append({"path": q, "change": "removed", "before": a[k], "after": None})
                elif k not in a:
                    out.append({"path": q, "change": "added", "before": None, "after": b[k]})
                else:
                    walk(a[k], b[k], q)
        elif isinstance(a, list) and isinstance(b, list):
            for i in range(max(len(a), len(b))):
                q = f"{p}[{i}]"
                if i >= len(b):
                    out.append({"path": q, "change": "removed", "before": a[i], "after": None})
                elif i >= len(a):
                    out.append({"path": q, "change": "added", "before": None, "after": b[i]})
                else:
                    walk(a[i], b[i], q)
        elif type(a) is not type(b) or a != b:
            out.append({"path": p or "$", "change": "changed", "before": a, "after": b})

    walk(before, after, path)
    return out[:MAX_CONFIG_CHANGES]


def _version_dict(v: rule_config.ConfigVersion) -> dict[str, Any]:
    return {
        "version": v.version,
        "document": dict(v.document),
        "digest": v.digest,
        "created_at": v.created_at.isoformat(),
        "created_by": v.created_by,
        "comment": v.comment,
    }


def _version_from_dict(d: Mapping[str, Any]) -> RuleConfigVersion:
    return RuleConfigVersion(
        version=int(d["version"]),
        document=d["document"],
        digest=d["digest"],
        created_at=datetime.fromisoformat(d["created_at"]),
        created_by=d["created_by"],
        comment=d["comment"],
        active=True,
    )


# ---- mutations -----------------------------------------------------------------------------

ADMIN: tuple[Scope, ...] = ()
SIMULATE = (Scope.POS,)
ACTIVITY = (Scope.POS, Scope.CONNECTOR)


@strawberry.type
class RulesMutations:
    @strawberry.mutation(
        description="Validate the whole rule config and save it as the tenant's next version "
        "(ConfigInvalidError lists every problem; nothing is half-saved). `dryRun` reports what "
        "would change without saving; `simulate` runs an event under the candidate config. "
        "Scope: admin."
    )
    async def apply_rule_config(
        self, info: Info, input: ApplyRuleConfigInput
    ) -> ApplyRuleConfigResult:
        ctx = ctx_of(info)

        async def execute(tx: Tx, _ledger_key: str) -> Result:
            document = input.document
            if not isinstance(document, dict):
                raise InvalidInput("document must be a JSON object of slots", field="document")
            registry = ctx.hub.rules
            candidate = rule_config.validate(document, registry)
            active = await _active_version(tx, registry)
            changed = active is None or active.digest != rule_config.digest(document)
            changes = config_diff({} if active is None else dict(active.document), document)
            stored: rule_config.ConfigVersion | None
            if input.dry_run:
                saved = False
                if changed:
                    newest = await rule_config.history(tx, limit=1)
                    version = (newest[0].version if newest else 0) + 1
                    stored = None
                else:
                    assert active is not None
                    version, stored = active.version, active
            else:
                stored, saved = await rule_config.save(
                    tx, document, registry, actor=_actor(ctx), comment=input.comment
                )
                version = stored.version
            simulation = None
            if input.simulate is not None:
                sim = input.simulate
                member_id = await resolve_member(tx, sim.member_id, "simulate.memberId")
                now = utcnow()
                cfg = RuleConfig(
                    version,
                    candidate.entries,
                    candidate.document,
                    candidate.mall,
                    candidate.tier_policy,
                )
                event = EventView(
                    uuid7(),
                    _event_type(registry, sim.event.type, "simulate.event.type", recordable=False),
                    member_id,
                    _when(sim.event.occurred_at, now, "simulate.event.occurredAt"),
                    _payload(sim.event.payload, "simulate.event.payload"),
                )
                out = await engine.process_event(
                    tx, event, registry, now=now, config=cfg, dry_run=True
                )
                simulation = report(out, recorded=False, member_id=member_id)
            return {
                "typename": "ApplyRuleConfigPayload",
                "dry_run": input.dry_run,
                "saved": saved,
                "changed": changed,
                "version": version,
                "config": None if stored is None else _version_dict(stored),
                "changes": changes,
                "simulation": simulation,
            }

        ctx, r = await run_mutation(
            info,
            operation="applyRuleConfig",
            scopes=ADMIN,
            inp=without_key(input) if input.dry_run else input,
            execute=execute,
            allowed=APPLY_ERRORS,
        )
        if isinstance(r, Error):
            return r
        return ApplyRuleConfigPayload(
            dry_run=bool(r["dry_run"]),
            saved=bool(r["saved"]),
            changed=bool(r["changed"]),
            version=int(r["version"]),
            config=None if r["config"] is None else _version_from_dict(r["config"]),
            changes=[
                ConfigChange(
                    path=c["path"],
                    change=ConfigChangeKind(c["change"]),
                    before=c["before"],
                    after=c["after"],
                )
                for c in r["changes"]
            ],
            simulation=None
            if r["simulation"] is None
            else EventReport.from_dict(r["simulation"], ctx),
        )

    @strawberry.mutation(
        description="Dry-run an event for a member under the active config: the credits and "
        "grants it would produce, task steps, and the tier before and after. Nothing is "
        "written. Scopes: admin, pos."
    )
    async def simulate_event(self, info: Info, input: SimulateEventInput) -> SimulateEventResult:
        ctx = ctx_of(info)

        async def execute(tx: Tx) -> Result:
            registry = ctx.hub.rules
            now = utcnow()
            member_id = await resolve_member(tx, input.member_id, "memberId")
            event = EventView(
                uuid7(),
                _event_type(registry, input.type, "type", recordable=False),
                member_id,
                _when(input.occurred_at, now, "occurredAt"),
                _payload(input.payload, "payload"),
            )
            out = await engine.process_event(tx, event, registry, now=now, dry_run=True)
            return report(out, recorded=False, member_id=member_id)

        ctx, r = await run_dry(info, scopes=SIMULATE, execute=execute, allowed=COMMON)
        return r if isinstance(r, Error) else EventReport.from_dict(r, ctx)

    @strawberry.mutation(
        description="Record a member activity (check-in, post, follow, …) from a frontend and "
        "run the tenant's rules for it: task progress, streaks, rewards. The type must be "
        "registered (`eventTypes`); with an idempotencyKey a retry records nothing twice. "
        "Scopes: admin, pos, connector."
    )
    async def record_activity(self, info: Info, input: RecordActivityInput) -> RecordActivityResult:
        ctx = ctx_of(info)

        async def execute(tx: Tx, _ledger_key: str) -> Result:
            registry = ctx.hub.rules
            now = utcnow()
            etype = _event_type(registry, input.type, "type", recordable=True, ctx=ctx)
            occurred = _when(input.occurred_at, now, "occurredAt")
            if occurred > now + MAX_FUTURE_SKEW:
                raise InvalidInput("occurredAt must not be in the future", field="occurredAt")
            payload = _payload(input.payload, "payload")
            member_id = await resolve_member(tx, input.member_id, "memberId")
            key = input.idempotency_key
            event_id = derived_id(tx.tenant_id, "activity", key) if key is not None else uuid7()
            out = await engine.record_and_process(
                tx,
                event_id=event_id,
                member_id=member_id,
                type=etype,
                payload=payload,
                occurred_at=occurred,
                registry=registry,
                now=now,
                dry_run=input.dry_run,
            )
            if out is None:  # recorded before: a retry that must change nothing
                return {
                    "typename": "EventReport",
                    "event_id": str(event_id),
                    "type": etype,
                    "occurred_at": occurred.isoformat(),
                    "member_id": str(member_id),
                    "dry_run": input.dry_run,
                    "recorded": False,
                    "intents": [],
                    "tasks": [],
                    "tier": None,
                    "follow_ups": [],
                }
            return {
                "typename": "EventReport",
                **report(out, recorded=not input.dry_run, member_id=member_id),
            }

        ctx, r = await run_mutation(
            info,
            operation="recordActivity",
            scopes=ACTIVITY,
            inp=without_key(input) if input.dry_run else input,
            execute=execute,
            allowed=COMMON,
        )
        return r if isinstance(r, Error) else EventReport.from_dict(r, ctx)

    @strawberry.mutation(
        description="Set a manual tier override until a given time (a VIP gesture, a "
        "complaint), or clear it with tier: null; recorded in the tier history with the API "
        "key. The member falls back to the policy's tier when it ends. Scope: admin."
    )
    async def override_tier(self, info: Info, input: OverrideTierInput) -> OverrideTierResult:
        ctx = ctx_of(info)

        async def execute(tx: Tx, _ledger_key: str) -> Result:
            member_id = await resolve_member(tx, input.member_id, "memberId")
            changes = await override_tier(
                tx,
                member_id,
                tier=input.tier,
                until=input.until,
                reason=input.reason,
                actor=_actor(ctx),
                registry=ctx.hub.rules,
            )
            return {
                "typename": "OverrideTierPayload",
                "member_id": str(member_id),
                "changes": [_change_dict(c) for c in changes],
            }

        ctx, r = await run_mutation(
            info,
            operation="overrideTier",
            scopes=ADMIN,
            inp=input,
            execute=execute,
            allowed=COMMON,
        )
        if isinstance(r, Error):
            return r
        return OverrideTierPayload(
            changes=[_change_from_dict(c) for c in r["changes"]],
            member_id=uuid.UUID(r["member_id"]),
            ctx=ctx,
        )


__all__ = [
    "MEMBER_GRANTS",
    "MEMBER_TASKS",
    "MEMBER_TIER",
    "MEMBER_TIER_HISTORY",
    "EventReport",
    "RulesMutations",
    "RulesQueries",
    "Tier",
    "TierStatus",
    "active_config",
    "prefetch",
    "report",
    "tier_status",
]
