"""Tier work outside the event path: the scheduled review and manual overrides.

``memberhub tiers evaluate`` calls :func:`evaluate_due`: every member whose qualifying period or
override ended by ``now`` — and every member with no tier yet (a brand that just enabled tiers
for an existing member base: their growth history is first backfilled from the ledger, see
:func:`backfill_growth_facts`) — is walked forward with the same pure
:func:`gateway.rules.tiers.decide` the event path uses, in short transactions (each member's row
locked); each change is stored, appended to the history and announced as ``tier.changed`` /
``tier.kept`` (processed by the rule engine, so upgrade and keep-level gifts follow). Running it
twice, or concurrently with orders, changes nothing twice: history ids derive from the change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from gateway import ledger
from gateway.errors import InvalidInput, NotFound
from gateway.identity.reads import resolve
from gateway.rules import config as rule_config
from gateway.rules.engine import (
    growth_moves,
    load_tier_state,
    process_event,
    record_changes,
    save_tier,
)
from gateway.rules.manager import RuleRegistry, default_registry
from gateway.rules.tiers import TierChange, TierFacts, decide, horizon, set_override, tier_def
from gateway.storage.db import Database, Tx
from gateway.storage.retry import transaction_retrying
from gateway.storage.tables import GrowthFact, LedgerTransfer, Member, MemberTier, Order
from gateway.storage.types import utcnow

MT: Any = MemberTier.__table__  # type: ignore[attr-defined]
M: Any = Member.__table__  # type: ignore[attr-defined]
GF: Any = GrowthFact.__table__  # type: ignore[attr-defined]
LT: Any = LedgerTransfer.__table__  # type: ignore[attr-defined]
ORD: Any = Order.__table__  # type: ignore[attr-defined]


@dataclass
class TierJobReport:
    """What one run of the review did."""

    members: int = 0
    changes: dict[str, int] = field(default_factory=dict)

    def add(self, changes: list[TierChange]) -> None:
        for c in changes:
            self.changes[c.change] = self.changes.get(c.change, 0) + 1


async def evaluate_member(
    tx: Tx,
    member_id: uuid.UUID,
    *,
    now: datetime,
    registry: RuleRegistry | None = None,
    actor: str | None = None,
) -> list[TierChange]:
    """Walk one member's tier to ``now`` (reviews, override expiry, pending upgrade)."""
    registry = registry if registry is not None else default_registry()
    cfg, timezone = await rule_config.active(tx, registry)
    policy = cfg.tier_policy
    if policy is None:
        return []
    resolved = await resolve(tx, member_id, lock=True)
    if resolved is None:
        raise NotFound("member not found", id=str(member_id))
    state = await load_tier_state(tx, resolved)
    moves = await growth_moves(tx, resolved, horizon(policy, state, now, timezone))
    views = await ledger.balances_for(tx, [resolved], now=now)
    lifetime = sum(v.available for (m, a), v in views.items() if m == resolved and a == "growth")
    decision = decide(policy, TierFacts(state, lifetime, moves, timezone), now)
    if not decision.changes:
        return []
    await save_tier(tx, resolved, decision.state, now)
    rule = cfg.one("tiers").rule  # type: ignore[union-attr]
    events = await record_changes(
        tx, resolved, policy, rule, decision.changes, f"review:{now.isoformat()}", now, actor
    )
    for ev in events:
        await process_event(tx, ev, registry, now=now)
    return list(decision.changes)


async def evaluate_due(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    now: datetime | None = None,
    registry: RuleRegistry | None = None,
    batch: int = 200,
) -> TierJobReport:
    """Review every member of the tenant whose period or override is due by ``now``."""
    now = now or utcnow()
    report = TierJobReport()
    await _initialise(db, tenant_id, now, registry, batch, report)
    after: uuid.UUID | None = None
    while True:
        async with db.tenant_tx(tenant_id) as tx:
            cond = [
                MT.c.tenant_id == tx.tenant_id,
                or_(MT.c.period_end <= now, MT.c.override_until <= now),
            ]
            if after is not None:
                cond.append(MT.c.member_id > after)
            ids = list(
                (
                    await tx.conn.execute(
                        select(MT.c.member_id).where(*cond).order_by(MT.c.member_id).limit(batch)
                    )
                ).scalars()
            )
        if not ids:
            return report
        for member_id in ids:
            async for attempt in transaction_retrying():  # a deadlock aborted it: again
                with attempt:
                    async with db.tenant_tx(tenant_id) as tx:
                        changes = await evaluate_member(tx, member_id, now=now, registry=registry)
            report.members += 1
            report.add(changes)
        after = ids[-1]


async def override_tier(
    tx: Tx,
    member_id: uuid.UUID,
    *,
    tier: str | None,
    until: datetime | None,
    reason: str,
    actor: str,
    now: datetime | None = None,
    registry: RuleRegistry | None = None,
) -> list[TierChange]:
    """Set a manual override to ``tier`` until ``until`` (or clear it with ``tier=None``).

    An override needs a reason and an end: it is an operator's exception (a VIP gesture, a
    complaint), recorded in the history with who did it, and the member falls back to the tier
    the policy gives once it ends.
    """
    registry = registry if registry is not None else default_registry()
    now = now or utcnow()
    cfg, timezone = await rule_config.active(tx, registry)
    policy = cfg.tier_policy
    if policy is None:
        raise InvalidInput("this tenant runs no tier rule set", field="tier")
    if not reason or not reason.strip() or len(reason) > 200:
        raise InvalidInput("an override needs a reason (1-200 characters)", field="reason")
    resolved = await resolve(tx, member_id, lock=True)
    if resolved is None:
        raise NotFound("member not found", id=str(member_id))
    changes = await evaluate_member(tx, resolved, now=now, registry=registry, actor=actor)
    state = await load_tier_state(tx, resolved)
    if state.tier is None:  # never evaluated: start from the policy's answer
        decision = decide(policy, TierFacts(state, 0, (), timezone), now)
        state = decision.state
        changes.extend(decision.changes)
    if tier is None:
        if state.override is None:
            return changes
        from dataclasses import replace

        before = state.effective(now)
        state = replace(state, override=None, override_until=None, override_reason=None)
        change = TierChange(
            now,
            "override_expired",
            before,
            state.tier or "",
            state.tier or "",
            f"override cleared: {reason.strip()}",
        )
    else:
        if tier_def(policy, tier) is None:
            codes = ", ".join(t.code for t in policy.tiers)
            raise InvalidInput(f"unknown tier {tier!r} (tiers: {codes})", field="tier")
        if until is None or until.tzinfo is None or until <= now:
            raise InvalidInput(
                "an override needs a timezone-aware end in the future", field="until"
            )
        state, change = set_override(state, tier, until, reason.strip(), now)
    await save_tier(tx, resolved, state, now)
    rule = cfg.one("tiers").rule  # type: ignore[union-attr]
    events = await record_changes(
        tx, resolved, policy, rule, [change], f"override:{now.isoformat()}", now, actor
    )
    for ev in events:
        await process_event(tx, ev, registry, now=now)
    return [*changes, change]


async def backfill_growth_facts(tx: Tx, member_id: uuid.UUID) -> int:
    """Create growth facts for a member from its ledger history (once: only when it has none).

    Growth credited before the tenant ran a tier rule set (or through the sync's batch path) has
    no business-time fact; an order's growth is dated at the order's payment, anything else at the
    ledger write. Merge moves are skipped — a survivor's facts already include its losers'.
    """
    has = (
        await tx.conn.execute(
            select(GF.c.id)
            .where(GF.c.tenant_id == tx.tenant_id, GF.c.member_id == member_id)
            .limit(1)
        )
    ).first()
    if has is not None:
        return 0
    rows = (
        await tx.conn.execute(
            select(LT.c.id, LT.c.amount, LT.c.kind, LT.c.created_at, ORD.c.paid_at)
            .select_from(
                LT.outerjoin(
                    ORD,
                    and_(ORD.c.tenant_id == LT.c.tenant_id, LT.c.source_ref == _as_text(ORD.c.id)),
                )
            )
            .where(
                LT.c.tenant_id == tx.tenant_id,
                LT.c.member_id == member_id,
                LT.c.account == "growth",
                LT.c.kind.notin_(("merge_in", "merge_out", "unmerge_in", "unmerge_out")),
            )
        )
    ).all()
    from gateway.rules.engine import add_growth_fact

    for r in rows:
        at = r.paid_at if r.paid_at is not None and r.kind != "reversal" else r.created_at
        await add_growth_fact(tx, r.id, member_id, int(r.amount), at, "backfill")
    return len(rows)


def _as_text(column: Any) -> Any:
    from sqlalchemy import String, cast

    return cast(column, String)


async def _initialise(
    db: Database,
    tenant_id: uuid.UUID,
    now: datetime,
    registry: RuleRegistry | None,
    batch: int,
    report: TierJobReport,
) -> None:
    """Give every member without a tier state one (backfilling growth facts first)."""
    registry = registry if registry is not None else default_registry()
    async with db.tenant_tx(tenant_id, write=False) as tx:
        cfg, _ = await rule_config.active(tx, registry)
    if cfg.tier_policy is None:
        return
    while True:
        async with db.tenant_tx(tenant_id) as tx:
            missing = (
                select(M.c.id)
                .select_from(
                    M.outerjoin(MT, and_(MT.c.tenant_id == M.c.tenant_id, MT.c.member_id == M.c.id))
                )
                .where(
                    M.c.tenant_id == tx.tenant_id, M.c.status == "active", MT.c.member_id.is_(None)
                )
                .order_by(M.c.id)
                .limit(batch)
            )
            ids = list((await tx.conn.execute(missing)).scalars())
        if not ids:
            return
        for member_id in ids:
            async with db.tenant_tx(tenant_id) as tx:
                losers = list(
                    (
                        await tx.conn.execute(
                            select(M.c.id).where(
                                M.c.tenant_id == tx.tenant_id, M.c.merged_into == member_id
                            )
                        )
                    ).scalars()
                )
                for m in (member_id, *losers):
                    await backfill_growth_facts(tx, m)
                changes = await evaluate_member(tx, member_id, now=now, registry=registry)
                if not changes:  # nothing to record still needs a state row, or we'd loop
                    await _ensure_row(tx, member_id, now, registry)
            report.members += 1
            report.add(changes)


async def _ensure_row(tx: Tx, member_id: uuid.UUID, now: datetime, registry: RuleRegistry) -> None:
    cfg, timezone = await rule_config.active(tx, registry)
    assert cfg.tier_policy is not None
    state = await load_tier_state(tx, member_id)
    decision = decide(cfg.tier_policy, TierFacts(state, 0, (), timezone), now)
    await save_tier(tx, member_id, decision.state, now)
