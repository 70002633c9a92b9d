"""The earning path, kept as a small surface over :mod:`gateway.rules.engine`.

``apply_event`` runs the tenant's rules for an event and returns the ledger transfers it made;
``evaluate`` says what they would be without writing anything. Passing ``enabled`` runs exactly
those earning rule sets with empty configs instead of the tenant's stored config (tests, tools).
Ledger writes are keyed ``derived_id(tenant, "rules", event_id, rule, account)``: replaying an
event returns the original transfers instead of paying twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.rules.config import Entry, RuleConfig
from gateway.rules.engine import process_event
from gateway.rules.hookspecs import EventView, Intent, RuleSet
from gateway.rules.manager import RuleRegistry, default_registry
from gateway.storage.db import Tx


def _only(registry: RuleRegistry, enabled: Sequence[str]) -> RuleConfig:
    entries = []
    for name in dict.fromkeys(enabled):
        rs = registry.get(name)
        if rs is not None and rs.slot == "earning":
            entries.append(Entry(name, "earning", {}))
    return RuleConfig(-1, tuple(entries), {})


async def apply_event(
    tx: Tx,
    event: EventView,
    registry: RuleRegistry | None = None,
    enabled: Sequence[str] | None = None,
    *,
    now: datetime | None = None,
) -> list[Any]:
    """Run the rules for ``event`` and return the ledger ``TransferResult`` of each credit
    (``replayed=True`` when the event had already been applied)."""
    registry = registry if registry is not None else default_registry()
    config = None if enabled is None else _only(registry, enabled)
    out = await process_event(tx, event, registry, now=now, config=config)
    return [t for o in out.all() for t in o.transfers]


async def evaluate(
    tx: Tx,
    event: EventView,
    registry: RuleRegistry | None = None,
    enabled: Sequence[str] | None = None,
    *,
    now: datetime | None = None,
) -> list[tuple[RuleSet, Intent]]:
    """What the rules want for this event, without writing anything (a dry run)."""
    registry = registry if registry is not None else default_registry()
    config = None if enabled is None else _only(registry, enabled)
    out = await process_event(tx, event, registry, now=now, config=config, dry_run=True)
    return [
        (registry.get(p.rule_set), p.outcome)  # type: ignore[misc]
        for p in out.planned
        if isinstance(p.outcome, Intent)
    ]
