"""Plugin discovery: load rule sets, event types and reward kinds from ``memberhub.rules``.

The gateway reaches plugins only through entry points (first-party plugins register exactly as a
partner's package would), so a missing or broken plugin is a packaging matter, not an import in
the core. The registry validates what plugins return once, at load time, instead of failing in
the middle of recording an order.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import pluggy

from gateway.rules.hookspecs import (
    ENTRY_POINT_GROUP,
    EVENT_TYPES,
    PROJECT,
    REWARD_KINDS,
    SLOTS,
    STACKING,
    EventType,
    RewardKind,
    RuleSet,
    RuleSpecs,
)

SLOT_METHOD = {
    "tiers": "policy",
    "expiry": "expires_at",
    "earning": "evaluate",
    "tasks": "tasks",
    "exchange": "quote",
    "benefits": "evaluate",
}
"""The method a rule set in each slot must provide."""
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_EVENT = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


class RuleRegistry:
    """Installed rule sets by unique name, plus the event types and reward kinds they know."""

    def __init__(
        self,
        rule_sets: Iterable[RuleSet],
        event_types: Iterable[EventType] = (),
        reward_kinds: Iterable[RewardKind] = (),
    ) -> None:
        self._by_name: dict[str, RuleSet] = {}
        for rs in rule_sets:
            _check_rule_set(rs)
            if rs.name in self._by_name:
                raise ValueError(f"two plugins provide a rule set named {rs.name!r}")
            self._by_name[rs.name] = rs
        self.event_types: dict[str, EventType] = {}
        for et in (*EVENT_TYPES, *event_types):
            if not isinstance(et, EventType) or not _EVENT.match(et.name) or len(et.name) > 48:
                raise ValueError(f"event type {et!r} needs a dotted lower-case name (≤ 48)")
            self.event_types.setdefault(et.name, et)
        self.reward_kinds: dict[str, RewardKind] = {}
        for rk in (*REWARD_KINDS, *reward_kinds):
            if not isinstance(rk, RewardKind) or not _NAME.match(rk.name):
                raise ValueError(f"reward kind {rk!r} needs a lower-case name")
            self.reward_kinds.setdefault(rk.name, rk)
        # Tenant configs parsed against *this* registry, by (tenant, version): see config.active.
        self.config_cache: dict[tuple[object, int], object] = {}

    def names(self, slot: str | None = None) -> list[str]:
        return sorted(n for n, rs in self._by_name.items() if slot is None or rs.slot == slot)

    def get(self, name: str) -> RuleSet | None:
        return self._by_name.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_name.values())


def _check_rule_set(rs: object) -> None:
    name = getattr(rs, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"rule set {rs!r} needs a lower_snake_case name (≤ 64)")
    slot = getattr(rs, "slot", None)
    if slot not in SLOTS:
        raise ValueError(f"rule set {name!r} has unknown slot {slot!r} (slots: {', '.join(SLOTS)})")
    if not isinstance(getattr(rs, "version", None), str):
        raise ValueError(f"rule set {name!r} needs a version string")
    method = SLOT_METHOD[slot]
    if not callable(getattr(rs, method, None)):
        raise ValueError(f"rule set {name!r} in slot {slot!r} has no {method}()")
    schema = getattr(rs, "config_schema", None)
    if schema is not None and not isinstance(schema, dict):
        raise ValueError(f"rule set {name!r}: config_schema must be a JSON Schema object")
    if slot == "benefits":
        if getattr(rs, "stacking", "stack") not in STACKING:
            raise ValueError(f"rule set {name!r}: stacking must be one of {STACKING}")
        priority = getattr(rs, "priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ValueError(f"rule set {name!r}: priority must be an int")


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(RuleSpecs)
    return pm


def load_rules(extra_plugins: Iterable[object] = (), *, entry_points: bool = True) -> RuleRegistry:
    """Discover every installed rule plugin; ``extra_plugins`` adds plugin objects directly
    (tests, embedding); ``entry_points=False`` loads only those."""
    pm = plugin_manager()
    if entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra_plugins:
        pm.register(plugin)
    rule_sets: list[RuleSet] = []
    for batch in pm.hook.register_rule_sets():
        rule_sets.extend(batch or [])
    event_types: list[EventType] = []
    for batch in pm.hook.register_event_types():
        event_types.extend(batch or [])
    reward_kinds: list[RewardKind] = []
    for batch in pm.hook.register_reward_kinds():
        reward_kinds.extend(batch or [])
    return RuleRegistry(rule_sets, event_types, reward_kinds)


@functools.cache
def default_registry() -> RuleRegistry:
    """The process-wide registry of installed plugins (entry points are read once)."""
    return load_rules()
