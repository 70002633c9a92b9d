"""The earning path: member event → the tenant's enabled earning rule sets → ledger credits.

Rule sets only compute intents; this module owns every side effect. Each intent becomes one
``ledger.credit`` whose idempotency key is ``derived_id(tenant, "rules", event_id, rule,
account)``: replaying an event (a re-sent order, a retried sync, an operator re-run) returns the
original transfers instead of paying twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from gateway import ledger
from gateway.errors import IdempotencyKeyReused
from gateway.identity.reads import get_members, resolve
from gateway.ids import derived_id
from gateway.rules.hookspecs import EventView, Intent, MemberSnapshot, RuleSet
from gateway.rules.manager import RuleRegistry, default_registry
from gateway.storage.db import Tx
from gateway.storage.tables import Tenant

log = logging.getLogger(__name__)
T: Any = Tenant.__table__  # type: ignore[attr-defined]
SLOT = "earning"


async def _tenant_rules(tx: Tx) -> tuple[list[str], str]:
    row = (
        await tx.conn.execute(select(T.c.enabled_rules, T.c.timezone).where(T.c.id == tx.tenant_id))
    ).first()
    if row is None:
        return [], "Asia/Shanghai"
    return list(row.enabled_rules or []), row.timezone


def _rule_sets(registry: RuleRegistry, enabled: Sequence[str]) -> list[RuleSet]:
    out: list[RuleSet] = []
    for name in dict.fromkeys(enabled):
        rs = registry.get(name)
        if rs is None:
            # A tenant may enable a plugin that this deployment has not installed (yet); the
            # order must still be recorded, so skip loudly rather than fail.
            log.warning("enabled rule set %r is not installed; skipped", name)
            continue
        if rs.slot == SLOT:
            out.append(rs)
    return out


def _check(rs: RuleSet, intents: object) -> list[Intent]:
    """Plugins are third-party code: reject malformed output before it reaches the ledger."""
    if not isinstance(intents, list):
        raise TypeError(f"rule set {rs.name!r} must return a list of Intent")
    seen: set[tuple[str, str]] = set()
    for intent in intents:
        if not isinstance(intent, Intent):
            raise TypeError(f"rule set {rs.name!r} returned {intent!r}, not an Intent")
        if not isinstance(intent.rule, str) or not intent.rule:
            raise ValueError(f"rule set {rs.name!r} returned an intent without a rule name")
        key = (intent.rule, intent.account)
        if key in seen:
            raise ValueError(f"rule set {rs.name!r} returned two intents for {key}")
        seen.add(key)
    return intents


async def evaluate(
    tx: Tx,
    event: EventView,
    registry: RuleRegistry | None = None,
    enabled: Sequence[str] | None = None,
    *,
    now: datetime | None = None,
) -> list[tuple[RuleSet, Intent]]:
    """What the enabled rule sets want for this event, without writing anything (dry run)."""
    return (await _plan(tx, event, registry, enabled, now))[1]


async def _plan(
    tx: Tx,
    event: EventView,
    registry: RuleRegistry | None,
    enabled: Sequence[str] | None,
    now: datetime | None,
) -> tuple[uuid.UUID | None, list[tuple[RuleSet, Intent]]]:
    """The member the event resolves to now, and the intents of the enabled rule sets."""
    registry = registry if registry is not None else default_registry()
    tenant_enabled, timezone = await _tenant_rules(tx)
    rule_sets = _rule_sets(registry, tenant_enabled if enabled is None else enabled)
    if not rule_sets:
        return None, []
    member_id = await resolve(tx, event.member_id, lock=True)
    if member_id is None:
        return None, []
    member = (await get_members(tx, [member_id]))[member_id]
    views = await ledger.balances_for(tx, [member_id], now=now)
    balances = {acct: view.available for (mid, acct), view in views.items() if mid == member_id}
    snapshot = MemberSnapshot(member_id, member.created_at, balances, timezone)
    out: list[tuple[RuleSet, Intent]] = []
    for rs in rule_sets:
        out.extend((rs, i) for i in _check(rs, rs.evaluate(snapshot, event)))
    return member_id, out


async def apply_event(
    tx: Tx,
    event: EventView,
    registry: RuleRegistry | None = None,
    enabled: Sequence[str] | None = None,
    *,
    now: datetime | None = None,
) -> list[Any]:
    """Run the earning rule sets for ``event`` and credit their intents; returns the ledger
    ``TransferResult`` of each (``replayed=True`` when the event had already been applied).

    ``enabled`` defaults to the tenant's ``enabled_rules`` (read inside ``tx``); passing a list
    runs exactly those rule sets. Credits go to the member the event's member resolves to now.
    """
    member_id, planned = await _plan(tx, event, registry, enabled, now)
    if member_id is None or not planned:
        return []
    source_ref = event.payload.get("order_id") if event.type.startswith("order.") else None
    results: list[Any] = []
    for rs, intent in planned:
        key = derived_id(tx.tenant_id, "rules", event.id, intent.rule, intent.account)
        try:
            result = await ledger.credit(
                tx,
                member_id=member_id,
                account=intent.account,
                amount=intent.amount,
                reason=intent.reason,
                source=f"rule:{rs.name}",
                idem_key=str(key),
                source_ref=None if source_ref is None else str(source_ref),
                kind=intent.kind,
                now=now,
            )
        except IdempotencyKeyReused:
            if member_id == event.member_id:
                raise
            # Applied before the member was merged: the credit went to the original member and
            # the merge moved it to this survivor. Nothing more to pay.
            continue
        results.append(result)
    return results
