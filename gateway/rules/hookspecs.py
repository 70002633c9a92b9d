"""The rule-plugin contract: pluggy project ``memberhub``, one hook, pure rule sets.

A rule plugin is any importable module or object registered under the ``memberhub.rules``
entry-point group that implements :func:`RuleSpecs.register_rule_sets` with the ``hookimpl``
marker below. The gateway never imports a plugin by name: it loads entry points, then dispatches
per tenant to the rule sets that tenant enabled.

Rule sets are **pure**: a frozen :class:`MemberSnapshot` and an :class:`EventView` in, a list of
:class:`Intent` out, no I/O. Purity is what makes replaying an event safe, a dry run trivial and
plugin tests fast; the gateway turns intents into idempotent ledger writes itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import pluggy

PROJECT = "memberhub"
ENTRY_POINT_GROUP = "memberhub.rules"
SLOTS = ("earning",)
"""Slots the dispatcher runs today; tiers, expiry, tasks, exchange and benefits come later."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class Intent:
    """What a rule wants to happen: credit ``amount`` (> 0) to ``account`` for ``reason``.

    ``rule`` names the rule that produced it; together with the event id and the account it
    forms the idempotency key of the resulting ledger write, so a rule set must not emit two
    intents with the same ``(rule, account)`` for one event.
    """

    account: str
    amount: int
    reason: str
    rule: str
    kind: str = "earn"


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class MemberSnapshot:
    """What a rule may know about the member when the event is evaluated (read-only).

    ``balances`` maps account → available amount; ``timezone`` is the tenant's, for calendar
    rules (birthday month, member day).
    """

    member_id: uuid.UUID
    created_at: datetime
    balances: Mapping[str, int] = field(default_factory=dict)
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        object.__setattr__(self, "balances", _frozen(self.balances))


@dataclass(frozen=True)
class EventView:
    """A member event as rules see it. Order events carry ``order_id``, ``channel``,
    ``external_id``, ``paid_fen``, ``total_fen`` and ``lines`` in ``payload``."""

    id: uuid.UUID
    type: str
    member_id: uuid.UUID
    occurred_at: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "payload", _frozen(self.payload))


@runtime_checkable
class RuleSet(Protocol):
    """A named, versioned rule set for one slot. ``evaluate`` must be pure and deterministic."""

    name: str
    slot: str
    version: str

    def evaluate(self, snapshot: MemberSnapshot, event: EventView) -> list[Intent]: ...


class RuleSpecs:
    """Hook specifications of the ``memberhub`` pluggy project."""

    @hookspec
    def register_rule_sets(self) -> list[RuleSet]:  # type: ignore[empty-body]
        """Return the rule sets this plugin provides.

        Called once when the gateway loads plugins (``gateway.rules.manager.load_rules``). Each
        rule set needs a ``name`` unique across all installed plugins (it is what a tenant
        enables and what ledger lines show as ``source="rule:<name>"``), a ``slot`` from
        :data:`SLOTS`, a ``version`` string, and a pure ``evaluate(snapshot, event)`` returning
        :class:`Intent` objects. Installing a plugin enables nothing: each tenant chooses its rule
        sets in ``tenant.enabled_rules``.
        """
