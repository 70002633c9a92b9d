"""The rule engine: one member event → the tenant's enabled rule sets → ledger, grants, tiers.

For an event it (all inside the caller's transaction, the member's row locked):

1. loads the tenant's active config (:mod:`gateway.rules.config`, cached per version) and
   builds the frozen :class:`MemberSnapshot` — balances, profile, the *effective* tier after any
   keep-level review or override expiry due before the event;
2. asks the **earning** rule sets, the **tasks** engine (:mod:`gateway.rules.tasks`) and the
   **benefits** rule sets (by priority, honouring ``exclusive`` stacking) for intents;
3. writes them: each :class:`Intent` is one ``ledger.credit`` keyed
   ``uuid5(tenant, "rules", event, rule, account)`` (points lots dated by the **expiry** rule
   set), growth is also recorded as a :class:`GrowthFact` in business time, each :class:`Grant`
   one ``member_grant`` row keyed the same way — delivered at once when the gateway owns the
   reward kind (coupons, points: :mod:`gateway.rules.fulfil`);
4. runs the **tiers** policy (:func:`gateway.rules.tiers.decide`) on the new facts; a change is
   stored with its history and emitted as a ``tier.changed`` (or ``tier.kept``) event, which
   this engine then processes in turn (tier gifts, upgrade benefits).

Everything written is keyed by the event, so processing an event twice changes nothing; callers
process an event only when :func:`gateway.events.record_event` inserted it. ``dry_run`` does all
of it in a savepoint, reports, and rolls back — the answer to "what would this order do?".
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from gateway import ledger
from gateway.errors import IdempotencyKeyReused
from gateway.events import record_event
from gateway.identity.reads import get_members, resolve
from gateway.ids import derived_id
from gateway.ledger.accounts import ACCOUNTS
from gateway.rules import config as rule_config
from gateway.rules.config import RuleConfig
from gateway.rules.fulfil import Fulfilment
from gateway.rules.fulfil import fulfil as fulfil_grant
from gateway.rules.hookspecs import EventView, Grant, Intent, MemberSnapshot, TaskDef, TierPolicy
from gateway.rules.manager import RuleRegistry, default_registry
from gateway.rules.tasks import TaskStep, advance, event_type
from gateway.rules.tiers import (
    TierChange,
    TierDecision,
    TierFacts,
    TierState,
    decide,
    horizon,
    tier_def,
    tier_view,
    upgrade_window_start,
)
from gateway.sql import BatchRead, in_ids, upsert_insert
from gateway.storage.db import Tx
from gateway.storage.tables import (
    GrowthFact,
    Member,
    MemberGrant,
    MemberTier,
    TaskCompletion,
    TaskProgress,
    TierHistory,
)
from gateway.storage.types import utcnow

log = logging.getLogger(__name__)
GF: Any = GrowthFact.__table__  # type: ignore[attr-defined]
G: Any = MemberGrant.__table__  # type: ignore[attr-defined]
MT: Any = MemberTier.__table__  # type: ignore[attr-defined]
TH: Any = TierHistory.__table__  # type: ignore[attr-defined]
TP: Any = TaskProgress.__table__  # type: ignore[attr-defined]
TC: Any = TaskCompletion.__table__  # type: ignore[attr-defined]
M: Any = Member.__table__  # type: ignore[attr-defined]
MAX_DEPTH = 2
"""Events emitted by the engine (``tier.changed``) are processed too, but not beyond this."""

# The statements every event runs are built once per dialect (``gateway.sql.BatchRead``): building
# a SQLAlchemy statement and its cache key costs more CPU than the database round trip, and on
# PostgreSQL these go straight to the asyncpg connection as prepared statements.
_TIER_ROW = BatchRead(
    lambda _d: select(
        MT.c.tier,
        MT.c.since,
        MT.c.period_start,
        MT.c.period_end,
        MT.c.override,
        MT.c.override_until,
        MT.c.override_reason,
        MT.c.evaluated_at,
    ).where(MT.c.tenant_id == bindparam("tenant_id"), MT.c.member_id == bindparam("member_id"))
)


def _mine_or_merged(column: Any) -> Any:
    """Rows of the member and of every member merged into it (growth facts stay put)."""
    losers = select(M.c.id).where(
        M.c.tenant_id == bindparam("tenant_id"), M.c.merged_into == bindparam("member_id")
    )
    return (column == bindparam("member_id")) | column.in_(losers)


_GROWTH_MOVES = BatchRead(
    lambda _d: (
        select(GF.c.occurred_at, GF.c.amount)
        .where(
            GF.c.tenant_id == bindparam("tenant_id"),
            _mine_or_merged(GF.c.member_id),
            GF.c.occurred_at >= bindparam("since"),
        )
        .order_by(GF.c.occurred_at)
    )
)
_GROWTH_SUM = BatchRead(
    lambda _d: select(func.coalesce(func.sum(GF.c.amount), 0)).where(
        GF.c.tenant_id == bindparam("tenant_id"),
        _mine_or_merged(GF.c.member_id),
        GF.c.occurred_at >= bindparam("since"),
    )
)
_GROWTH_FACT = BatchRead(
    lambda d: (
        (postgresql.insert if d == "postgresql" else sqlite.insert)(GF)
        .values(
            tenant_id=bindparam("tenant_id"),
            id=bindparam("id"),
            member_id=bindparam("member_id"),
            amount=bindparam("amount"),
            occurred_at=bindparam("occurred_at"),
            source=bindparam("source"),
        )
        .on_conflict_do_nothing()
    )
)


def _insert(dialect: str, table: Any) -> Any:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _binds(table: Any, *names: str) -> dict[str, Any]:
    return {n: bindparam(n, type_=table.c[n].type) for n in names}


_COMPLETION = BatchRead(
    lambda d: (
        _insert(d, TC)
        .values(
            **_binds(
                TC,
                "tenant_id",
                "id",
                "member_id",
                "task",
                "rule",
                "occurrence",
                "event_id",
                "points",
                "growth",
                "reason",
                "at",
            )
        )
        .on_conflict_do_nothing()
        .returning(TC.c.id)
    )
)
_PROGRESS = BatchRead(
    lambda d: (
        _insert(d, TP)
        .values(**_binds(TP, "tenant_id", "member_id", "task", "state", "updated_at"))
        .on_conflict_do_update(
            index_elements=[TP.c.tenant_id, TP.c.member_id, TP.c.task],
            set_={
                "state": bindparam("state", type_=TP.c.state.type),
                "updated_at": bindparam("updated_at", type_=TP.c.updated_at.type),
            },
        )
    )
)
_TASK_STATES = BatchRead(
    lambda d: select(TP.c.task, TP.c.state).where(
        TP.c.tenant_id == bindparam("tenant_id"),
        TP.c.member_id == bindparam("member_id"),
        in_ids(TP.c.task, d, "tasks"),
    )
)


@dataclass(frozen=True)
class Planned:
    """One intent or grant and the rule set (and slot) that produced it."""

    rule_set: str
    slot: str
    outcome: Intent | Grant


@dataclass
class Outcome:
    """What processing an event did (or, in a dry run, would do)."""

    event: EventView
    member_id: uuid.UUID | None = None
    planned: list[Planned] = field(default_factory=list)
    transfers: list[Any] = field(default_factory=list)
    grants: list[uuid.UUID] = field(default_factory=list)
    fulfilments: list[Fulfilment] = field(default_factory=list)
    tasks: list[TaskStep] = field(default_factory=list)
    tier_changes: list[TierChange] = field(default_factory=list)
    tier_before: str | None = None
    tier_after: str | None = None
    follow_ups: list[Outcome] = field(default_factory=list)
    dry_run: bool = False

    def all(self) -> list[Outcome]:
        out = [self]
        for f in self.follow_ups:
            out.extend(f.all())
        return out


# ---- entry points -----------------------------------------------------------------------------


async def process_event(
    tx: Tx,
    event: EventView,
    registry: RuleRegistry | None = None,
    *,
    now: datetime | None = None,
    config: RuleConfig | None = None,
    dry_run: bool = False,
    _depth: int = 0,
) -> Outcome:
    """Run the tenant's rules for ``event`` (see the module docstring). ``config`` overrides the
    stored one (dry-running a config before saving it)."""
    if dry_run:
        sp = await tx.conn.begin_nested()
        try:
            out = await process_event(tx, event, registry, now=now, config=config, _depth=_depth)
        finally:
            await sp.rollback()
        for o in out.all():
            o.dry_run = True
        return out
    registry = registry if registry is not None else default_registry()
    now = now or utcnow()
    if config is None:
        cfg, timezone = await rule_config.active(tx, registry)
    else:
        timezone = await _timezone(tx)
        cfg = config
    out = Outcome(event)
    if not cfg.entries and cfg.triggers is None:
        return out
    member_id = await resolve(tx, event.member_id, lock=True)
    if member_id is None:
        return out
    out.member_id = member_id
    ctx = await _Context.load(tx, registry, cfg, timezone, member_id, event, now)
    out.tier_before = ctx.effective_tier()
    snapshot = ctx.snapshot()
    planned = _plan_rules(registry, cfg, snapshot, event, "earning")
    steps = await _plan_tasks(tx, registry, cfg, snapshot, event, member_id, now)
    out.tasks = [s for s, _ in steps]
    for step, rule in steps:
        if step.completed:
            planned.extend(_task_outcomes(step, rule))
    planned.extend(_tier_gifts(cfg, event))
    planned.extend(_plan_benefits(registry, cfg, snapshot, event))
    out.planned = planned
    await _write(tx, ctx, out, now)
    if cfg.triggers is not None:  # the tenant's care trigger actions (coupons, points)
        from gateway.triggers.actions import run_actions

        await run_actions(tx, cfg, event, member_id, registry=registry, timezone=timezone, now=now)
    tier_events = await ctx.settle_tier(tx, out, now)
    out.tier_after = ctx.effective_tier()
    if _depth < MAX_DEPTH:
        for ev in tier_events:
            out.follow_ups.append(
                await process_event(tx, ev, registry, now=now, config=config, _depth=_depth + 1)
            )
    return out


async def record_and_process(
    tx: Tx,
    *,
    event_id: uuid.UUID,
    member_id: uuid.UUID,
    type: str,
    payload: dict[str, Any],
    occurred_at: datetime,
    registry: RuleRegistry | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> Outcome | None:
    """Record a member event and run the rules for it — once: ``None`` when an event with this
    id was recorded before (a replay, which must change nothing)."""
    if dry_run:
        sp = await tx.conn.begin_nested()
        try:
            out = await record_and_process(
                tx,
                event_id=event_id,
                member_id=member_id,
                type=type,
                payload=payload,
                occurred_at=occurred_at,
                registry=registry,
                now=now,
            )
        finally:
            await sp.rollback()
        if out is not None:
            for o in out.all():
                o.dry_run = True
        return out
    inserted = await record_event(
        tx,
        event_id=event_id,
        member_id=member_id,
        type=type,
        payload=payload,
        occurred_at=occurred_at,
    )
    if not inserted:
        return None
    event = EventView(event_id, type, member_id, occurred_at, payload)
    return await process_event(tx, event, registry, now=now)


async def member_joined(
    tx: Tx,
    member_id: uuid.UUID,
    *,
    channel: str,
    at: datetime,
    registry: RuleRegistry | None = None,
    scene: Any = None,
) -> Outcome | None:
    """Record ``member.joined`` for a new member — always, since webhook subscribers want every
    join — and run the rules on it (join gift, entry tier) only when the tenant's config reacts
    to members (not ``bulk_safe``). ``scene`` (a :class:`gateway.tags.scene.JoinScene` or
    ``None``) goes into the payload. Returns the rules' outcome, ``None`` if none ran."""
    registry = registry if registry is not None else default_registry()
    cfg, _ = await rule_config.active(tx, registry)
    event_id = derived_id(tx.tenant_id, "member", member_id, "joined")
    payload = joined_payload(channel, scene)
    if cfg.bulk_safe:
        await record_event(
            tx,
            event_id=event_id,
            member_id=member_id,
            type="member.joined",
            payload=payload,
            occurred_at=at,
        )
        return None
    return await record_and_process(
        tx,
        event_id=event_id,
        member_id=member_id,
        type="member.joined",
        payload=payload,
        occurred_at=at,
        registry=registry,
    )


def joined_payload(channel: str, scene: Any = None) -> dict[str, Any]:
    """The ``member.joined`` payload (shared with the sync's set-based batch path)."""
    return {"channel": channel, "scene": scene.payload() if scene is not None else None}


async def _timezone(tx: Tx) -> str:
    """The tenant's timezone alone (a caller-supplied config must not parse the stored one)."""
    from gateway.storage.tables import Tenant

    t: Any = Tenant.__table__  # type: ignore[attr-defined]
    row = (await tx.conn.execute(select(t.c.timezone).where(t.c.id == tx.tenant_id))).first()
    return row.timezone if row is not None else "Asia/Shanghai"


# ---- planning (pure calls into rule sets) -------------------------------------------------------


def _checked(
    rs_name: str, slot: str, outcomes: object, registry: RuleRegistry | None
) -> list[Planned]:
    """Plugins are third-party code: reject malformed output before it reaches the ledger."""
    if not isinstance(outcomes, list):
        raise TypeError(f"rule set {rs_name!r} must return a list of Intent/Grant")
    seen: set[tuple[str, str]] = set()
    out = []
    for o in outcomes:
        if isinstance(o, Intent):
            if not isinstance(o.rule, str) or not o.rule:
                raise ValueError(f"rule set {rs_name!r} returned an intent without a rule name")
            if o.account not in ACCOUNTS:
                raise ValueError(f"rule set {rs_name!r}: unknown account {o.account!r}")
            if not isinstance(o.amount, int) or isinstance(o.amount, bool) or o.amount <= 0:
                raise ValueError(f"rule set {rs_name!r}: intent amounts must be positive ints")
            key = (o.rule, o.account)
        elif isinstance(o, Grant):
            if not o.code:
                raise ValueError(f"rule set {rs_name!r}: reward {o.reward!r} needs a code")
            if registry is not None and o.kind not in registry.reward_kinds:
                # A config typo ("cupon:WELCOME") must not stop orders or sign-ups from being
                # recorded: skip the grant, loudly. Tier gifts are checked when configs are saved.
                log.error("rule set %r granted unknown reward kind %r; skipped", rs_name, o.reward)
                continue
            if not isinstance(o.quantity, int) or o.quantity < 1:
                raise ValueError(f"rule set {rs_name!r}: grant quantity must be ≥ 1")
            key = (o.rule, o.reward)
        else:
            raise TypeError(f"rule set {rs_name!r} returned {o!r}, not an Intent or Grant")
        if key in seen:
            raise ValueError(f"rule set {rs_name!r} returned two outcomes for {key}")
        seen.add(key)
        out.append(Planned(rs_name, slot, o))
    return out


def _plan_rules(
    registry: RuleRegistry, cfg: RuleConfig, snapshot: MemberSnapshot, event: EventView, slot: str
) -> list[Planned]:
    out: list[Planned] = []
    for entry in cfg.slot(slot):
        rs = registry.get(entry.rule)
        if rs is None:
            continue
        got = rs.evaluate(snapshot, event, dict(entry.config))  # type: ignore[attr-defined]
        out.extend(_checked(rs.name, slot, got, registry))
    return out


def _plan_benefits(
    registry: RuleRegistry, cfg: RuleConfig, snapshot: MemberSnapshot, event: EventView
) -> list[Planned]:
    out: list[Planned] = []
    exclusive_taken = False
    for entry in cfg.slot("benefits"):  # highest priority first
        rs = registry.get(entry.rule)
        if rs is None:
            continue
        exclusive = getattr(rs, "stacking", "stack") == "exclusive"
        if exclusive and exclusive_taken:
            continue
        got = rs.evaluate(snapshot, event, dict(entry.config))  # type: ignore[attr-defined]
        planned = _checked(rs.name, "benefits", got, registry)
        if planned and exclusive:
            exclusive_taken = True
        out.extend(planned)
    return out


def task_defs(registry: RuleRegistry, cfg: RuleConfig) -> list[tuple[str, TaskDef]]:
    """Every task the tenant's tasks rule sets declare, as ``(rule set, task)``."""
    out: list[tuple[str, TaskDef]] = []
    for entry in cfg.slot("tasks"):
        rs = registry.get(entry.rule)
        if rs is None:
            continue
        # Cached on the config object itself: a parsed config is immutable, and an id()-keyed
        # global cache would hand a later candidate config an earlier one's tasks.
        key = ("tasks", entry.rule, id(registry))
        defs = cfg.cache.get(key)
        if defs is None:
            defs = tuple(rs.tasks(dict(entry.config)))  # type: ignore[attr-defined]
            cfg.cache[key] = defs
        out.extend((entry.rule, t) for t in defs)
    return out


async def _plan_tasks(
    tx: Tx,
    registry: RuleRegistry,
    cfg: RuleConfig,
    snapshot: MemberSnapshot,
    event: EventView,
    member_id: uuid.UUID,
    now: datetime,
) -> list[tuple[TaskStep, str]]:
    relevant = [(r, t) for r, t in task_defs(registry, cfg) if event_type(t) == event.type]
    if not relevant:
        return []
    rows = await _TASK_STATES.fetch(
        tx, tenant_id=tx.tenant_id, member_id=member_id, tasks=[t.code for _, t in relevant]
    )
    states = {}
    for task_code, state in rows:
        if isinstance(state, str):  # JSON text straight from the asyncpg driver
            state = json.loads(state)
        states[task_code] = dict(state or {})
    out: list[tuple[TaskStep, str]] = []
    for rule, task in relevant:
        before = states.get(task.code, {})
        step = advance(task, before, snapshot, event)
        if step is None:
            continue
        if step.completed:
            cid = derived_id(tx.tenant_id, "task", member_id, task.code, step.occurrence)
            inserted = await _COMPLETION.fetch(
                tx,
                tenant_id=tx.tenant_id,
                id=cid,
                member_id=member_id,
                task=task.code,
                rule=rule,
                occurrence=step.occurrence[:128],
                event_id=event.id,
                points=step.points,
                growth=step.growth,
                reason=step.reason[:200],
                at=event.occurred_at,
            )
            if not inserted:  # this occurrence was paid already
                step = replace(step, completed=False, state=before, refused="ALREADY_DONE")
        if step.state != before:
            state = json.dumps(step.state) if tx.driver is not None else step.state
            await _PROGRESS.execute(
                tx,
                tenant_id=tx.tenant_id,
                member_id=member_id,
                task=task.code,
                state=state,
                updated_at=now,
            )
        out.append((step, rule))
    return out


def _task_outcomes(step: TaskStep, rule: str) -> list[Planned]:
    name = f"{rule}.{step.task}"
    out = []
    if step.points:
        out.append(Planned(rule, "tasks", Intent("points", step.points, step.reason, name, "task")))
    if step.growth:
        out.append(Planned(rule, "tasks", Intent("growth", step.growth, step.reason, name, "task")))
    # Grants are keyed by (event, rule, reward): the task's name as the rule keeps two tasks
    # rewarding the same coupon on one event apart.
    out.extend(Planned(rule, "tasks", Grant(r, step.reason, name)) for r in step.rewards)
    return out


# ---- writing ------------------------------------------------------------------------------------


async def _write(tx: Tx, ctx: _Context, out: Outcome, now: datetime) -> None:
    event, member_id = out.event, out.member_id
    assert member_id is not None
    source_ref = event.payload.get("order_id") if event.type.startswith("order.") else None
    expiry = ctx.expiry()
    for p in out.planned:
        o = p.outcome
        if isinstance(o, Grant):
            gid = derived_id(tx.tenant_id, "rules", event.id, o.rule, o.reward)
            ins = await tx.conn.execute(
                upsert_insert(tx, G)
                .values(
                    tenant_id=tx.tenant_id,
                    id=gid,
                    member_id=member_id,
                    **_grant_fields(o),
                    source=f"event:{event.id}",
                    status="issued",
                    created_at=now,
                )
                .on_conflict_do_nothing()
                .returning(G.c.id)
            )
            if ins.first() is not None:
                out.grants.append(gid)
                out.fulfilments.append(await _fulfil(tx, ctx, gid, member_id, o, now))
            continue
        key = derived_id(tx.tenant_id, "rules", event.id, o.rule, o.account)
        kwargs: dict[str, Any] = {}
        if expiry is not None and ACCOUNTS[o.account].expiring:
            rs, conf = expiry
            kwargs["expires_at"] = rs.expires_at(event.occurred_at, o.account, ctx.timezone, conf)
        try:
            result = await ledger.credit(
                tx,
                member_id=member_id,
                account=o.account,
                amount=o.amount,
                reason=o.reason[:200],
                source=f"rule:{p.rule_set}"[:64],
                idem_key=str(key),
                source_ref=None if source_ref is None else str(source_ref),
                kind=o.kind,
                now=now,
                **kwargs,
            )
        except IdempotencyKeyReused:
            if member_id == event.member_id:
                raise
            # Applied before the member was merged: the credit went to the original member and
            # the merge moved it to this survivor. Nothing more to pay.
            continue
        out.transfers.append(result)
        if o.account == "growth" and not result.replayed:
            ctx.growth_credited(o.amount, event.occurred_at)
            await add_growth_fact(tx, key, member_id, o.amount, event.occurred_at, p.rule_set)


def _grant_fields(o: Grant) -> dict[str, Any]:
    """A grant's ``member_grant`` columns, cut to their widths: what the row holds and what
    :func:`_fulfil` delivers are the same values."""
    return {
        "kind": o.kind,
        "code": o.code[:64],
        "quantity": o.quantity,
        "rule": o.rule[:64],
        "reason": o.reason[:300],
    }


async def _fulfil(
    tx: Tx, ctx: _Context, gid: uuid.UUID, member_id: uuid.UUID, o: Grant, now: datetime
) -> Fulfilment:
    """Deliver a just-written grant the gateway owns (coupons, points: :mod:`.fulfil`); a
    refusal leaves it ``unfulfilled`` and never fails the event."""
    expires: Any = ledger.DEFAULT_EXPIRY
    expiry = ctx.expiry()
    if o.kind == "points" and expiry is not None:
        rs, conf = expiry
        expires = rs.expires_at(ctx.event.occurred_at, "points", ctx.timezone, conf)
    return await fulfil_grant(
        tx,
        grant_id=gid,
        member_id=member_id,
        **_grant_fields(o),
        now=now,
        expires_at=expires,
    )


async def add_growth_fact(
    tx: Tx, fact_id: uuid.UUID, member_id: uuid.UUID, amount: int, at: datetime, source: str
) -> None:
    """Record growth in business time (refund reversals pass a negative amount)."""
    await _GROWTH_FACT.execute(
        tx,
        tenant_id=tx.tenant_id,
        id=fact_id,
        member_id=member_id,
        amount=amount,
        occurred_at=at,
        source=source[:64],
    )


# ---- per-event context: snapshot inputs and tier state ----------------------------------------


@dataclass
class _Context:
    registry: RuleRegistry
    cfg: RuleConfig
    timezone: str
    member_id: uuid.UUID
    event: EventView
    member: Any
    balances: dict[str, int]
    tier_row: Any
    tier_state: TierState | None = None
    pending: list[tuple[datetime, int]] = field(default_factory=list)
    pre_changes: list[TierChange] = field(default_factory=list)
    moves: list[tuple[datetime, int]] | None = None
    loaded_with: int = 0

    @classmethod
    async def load(
        cls,
        tx: Tx,
        registry: RuleRegistry,
        cfg: RuleConfig,
        timezone: str,
        member_id: uuid.UUID,
        event: EventView,
        now: datetime,
    ) -> _Context:
        member = (await get_members(tx, [member_id]))[member_id]
        views = await ledger.balances_for(tx, [member_id], now=now)
        balances = {a: v.available for (m, a), v in views.items() if m == member_id}
        tier_row = None
        if cfg.tier_policy is not None:
            rows = await _TIER_ROW.fetch(tx, tenant_id=tx.tenant_id, member_id=member_id)
            tier_row = rows[0] if rows else None
        ctx = cls(registry, cfg, timezone, member_id, event, member, balances, tier_row)
        if cfg.tier_policy is not None:
            ctx.tier_state = _state(tier_row)
            await ctx._catch_up(tx)
        return ctx

    async def _catch_up(self, tx: Tx) -> None:
        """Apply reviews and override expiries due *before* the event, so the snapshot's tier
        (and its points multiplier) is the one the member had when the event happened."""
        policy = self.cfg.tier_policy
        assert policy is not None and self.tier_state is not None
        at = self.event.occurred_at
        s = self.tier_state
        due = (
            s.tier is None
            or (s.period_end is not None and s.period_end <= at)
            or (s.override_until is not None and s.override_until <= at)
        )
        if not due:
            return
        decision = decide(policy, await self._facts(tx, at), at)
        self.tier_state = decision.state
        self.pre_changes.extend(decision.changes)

    async def _facts(self, tx: Tx, at: datetime) -> TierFacts:
        policy = self.cfg.tier_policy
        assert policy is not None and self.tier_state is not None
        if self.moves is None:
            self.moves = await growth_moves(
                tx, self.member_id, horizon(policy, self.tier_state, at, self.timezone)
            )
            # Facts of this event written before the load are in ``moves`` already.
            self.loaded_with = len(self.pending)
        lifetime = self.balances.get("growth", 0) + sum(a for _, a in self.pending)
        moves = sorted([*self.moves, *self.pending[self.loaded_with :]])
        return TierFacts(self.tier_state, lifetime, moves, self.timezone)

    async def _upgrade_facts(self, tx: Tx, at: datetime) -> TierFacts:
        """Facts enough for the only question left after ``_catch_up``: an upgrade at ``at``
        (no review or override expiry is due). The growth in the upgrade window, summed by the
        database, stands in for the movements — one row instead of a year of them."""
        policy = self.cfg.tier_policy
        assert policy is not None and self.tier_state is not None
        start = upgrade_window_start(policy, at, self.timezone)
        total = await growth_since(tx, self.member_id, start)  # this event's facts included
        lifetime = self.balances.get("growth", 0) + sum(a for _, a in self.pending)
        return TierFacts(self.tier_state, lifetime, [(start, total)], self.timezone)

    def growth_credited(self, amount: int, at: datetime) -> None:
        self.pending.append((at, amount))

    def effective_tier(self) -> str | None:
        if self.tier_state is None:
            return None
        return self.tier_state.effective(self.event.occurred_at)

    def snapshot(self) -> MemberSnapshot:
        m = self.member
        tier = None
        if self.cfg.tier_policy is not None:
            tier = tier_view(self.cfg.tier_policy, self.effective_tier())
        profile = {"name": m.name, "gender": m.gender, "birthday": m.birthday, "city": m.city}
        return MemberSnapshot(
            self.member_id,
            m.created_at,
            self.balances,
            self.timezone,
            tier,
            profile,
            self.event.occurred_at,
        )

    def expiry(self) -> tuple[Any, dict[str, Any]] | None:
        entry = self.cfg.one("expiry")
        if entry is None:
            return None
        rs = self.registry.get(entry.rule)
        return None if rs is None else (rs, dict(entry.config))

    async def settle_tier(self, tx: Tx, out: Outcome, now: datetime) -> list[EventView]:
        """Decide the tier on the facts after this event's writes; store and announce changes."""
        policy = self.cfg.tier_policy
        if policy is None or self.tier_state is None:
            return []
        changes = list(self.pre_changes)
        state = self.tier_state
        if self.pending or state.tier is None:
            at = self.event.occurred_at
            facts = (
                await self._upgrade_facts(tx, at)
                if self.moves is None and state.tier is not None
                else await self._facts(tx, at)
            )
            decision = decide(policy, facts, at)
            state = decision.state
            changes.extend(decision.changes)
        self.tier_state = state
        out.tier_changes = changes
        if not changes and self.tier_row is not None:
            return []
        rule = self.cfg.one("tiers").rule  # type: ignore[union-attr]
        await save_tier(tx, self.member_id, state, now)
        return await record_changes(tx, self.member_id, policy, rule, changes, self.event.id, now)


def _state(row: Any) -> TierState:
    """A ``_TIER_ROW`` row (by position) as a TierState."""
    if row is None:
        return TierState()
    return TierState(*(row[i] for i in range(8)))


async def load_tier_state(tx: Tx, member_id: uuid.UUID) -> TierState:
    rows = await _TIER_ROW.fetch(tx, tenant_id=tx.tenant_id, member_id=member_id)
    return _state(rows[0] if rows else None)


async def growth_moves(tx: Tx, member_id: uuid.UUID, since: datetime) -> list[tuple[datetime, int]]:
    """Growth facts of the member and of every member merged into it, from ``since`` on."""
    rows = await _GROWTH_MOVES.fetch(tx, tenant_id=tx.tenant_id, member_id=member_id, since=since)
    return [(r[0], int(r[1])) for r in rows]


async def growth_since(tx: Tx, member_id: uuid.UUID, since: datetime) -> int:
    """Σ growth facts of the member (and its merged members) from ``since`` on."""
    rows = await _GROWTH_SUM.fetch(tx, tenant_id=tx.tenant_id, member_id=member_id, since=since)
    return int(rows[0][0]) if rows else 0


async def save_tier(tx: Tx, member_id: uuid.UUID, state: TierState, now: datetime) -> None:
    values = {
        "tier": state.tier,
        "since": state.since,
        "period_start": state.period_start,
        "period_end": state.period_end,
        "override": state.override,
        "override_until": state.override_until,
        "override_reason": state.override_reason,
        "evaluated_at": state.evaluated_at or now,
        "updated_at": now,
    }
    ins = upsert_insert(tx, MT).values(tenant_id=tx.tenant_id, member_id=member_id, **values)
    await tx.conn.execute(
        ins.on_conflict_do_update(index_elements=[MT.c.tenant_id, MT.c.member_id], set_=values)
    )


async def record_changes(
    tx: Tx,
    member_id: uuid.UUID,
    policy: TierPolicy,
    rule: str,
    changes: Sequence[TierChange],
    cause: uuid.UUID | str,
    now: datetime,
    actor: str | None = None,
) -> list[EventView]:
    """Append tier history and record a ``tier.changed`` / ``tier.kept`` event for each change;
    returns the newly recorded events (to be processed: upgrade gifts, benefits)."""
    events: list[EventView] = []
    for c in changes:
        hid = derived_id(tx.tenant_id, "tier", member_id, c.change, c.to_tier, c.at.isoformat())
        ins = await tx.conn.execute(
            upsert_insert(tx, TH)
            .values(
                tenant_id=tx.tenant_id,
                id=hid,
                member_id=member_id,
                change=c.change,
                from_tier=c.from_tier,
                to_tier=c.to_tier,
                natural=c.natural,
                reason=c.reason[:300],
                rule=rule[:64],
                growth=c.growth,
                actor=actor,
                at=c.at,
                created_at=now,
            )
            .on_conflict_do_nothing()
            .returning(TH.c.id)
        )
        if ins.first() is None:
            continue
        if c.change == "kept":
            etype = "tier.kept"
        elif c.effective_changed:
            etype = "tier.changed"
        else:
            continue
        target = tier_def(policy, c.to_tier)
        payload = {
            "from": c.from_tier,
            "to": c.to_tier,
            "change": c.change,
            "reason": c.reason,
            "gifts": list(target.gifts) if target and c.change in ("upgrade", "initial") else [],
            "cause": str(cause),
        }
        eid = derived_id(tx.tenant_id, "tier-event", hid)
        if await record_event(
            tx, event_id=eid, member_id=member_id, type=etype, payload=payload, occurred_at=c.at
        ):
            events.append(EventView(eid, etype, member_id, c.at, payload))
    return events


def _tier_gifts(cfg: RuleConfig, event: EventView) -> list[Planned]:
    """A ``tier.changed`` into a tier with entry gifts grants them (tier benefits)."""
    entry = cfg.one("tiers")
    if event.type != "tier.changed" or entry is None:
        return []
    target = tier_def(cfg.tier_policy, event.payload.get("to")) if cfg.tier_policy else None
    reason = f"welcome gift for reaching {target.name if target else event.payload.get('to')}"
    return [
        Planned(entry.rule, "tiers", Grant(g, reason, entry.rule))
        for g in event.payload.get("gifts") or ()
    ]


def dump(out: Outcome) -> dict[str, Any]:
    """A JSON-able report of an outcome (CLI and logs)."""
    return {
        "event": {"id": str(out.event.id), "type": out.event.type},
        "member_id": None if out.member_id is None else str(out.member_id),
        "dry_run": out.dry_run,
        "intents": [_dump_planned(p) for p in out.planned],
        "tasks": [
            {"task": s.task, "completed": s.completed, "refused": s.refused, "reason": s.reason}
            for s in out.tasks
        ],
        "tier": {
            "before": out.tier_before,
            "after": out.tier_after,
            "changes": [
                {"change": c.change, "from": c.from_tier, "to": c.to_tier, "reason": c.reason}
                for c in out.tier_changes
            ],
        },
        "fulfilments": [f.as_dict() for f in out.fulfilments],
        "follow_ups": [dump(f) for f in out.follow_ups],
    }


def _dump_planned(p: Planned) -> Mapping[str, Any]:
    o = p.outcome
    if isinstance(o, Grant):
        return {
            "rule_set": p.rule_set,
            "slot": p.slot,
            "rule": o.rule,
            "grant": o.reward,
            "quantity": o.quantity,
            "reason": o.reason,
        }
    return {
        "rule_set": p.rule_set,
        "slot": p.slot,
        "rule": o.rule,
        "account": o.account,
        "amount": o.amount,
        "kind": o.kind,
        "reason": o.reason,
    }


__all__ = [
    "Outcome",
    "Planned",
    "TierDecision",
    "TierFacts",
    "add_growth_fact",
    "dump",
    "growth_moves",
    "joined_payload",
    "load_tier_state",
    "member_joined",
    "process_event",
    "record_and_process",
    "record_changes",
    "save_tier",
    "task_defs",
]
