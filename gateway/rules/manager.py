"""Plugin discovery: load rule sets from the ``memberhub.rules`` entry points into a registry.

The gateway reaches plugins only through entry points (first-party plugins register exactly as a
partner's package would), so a missing or broken plugin is a packaging matter, not an import in
the core. The registry validates what plugins return once, at load time, instead of failing in
the middle of recording an order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import pluggy

from gateway.rules.hookspecs import ENTRY_POINT_GROUP, PROJECT, SLOTS, RuleSet, RuleSpecs


class RuleRegistry:
    """Rule sets by unique name."""

    def __init__(self, rule_sets: Iterable[RuleSet]) -> None:
        self._by_name: dict[str, RuleSet] = {}
        for rs in rule_sets:
            name = getattr(rs, "name", None)
            if not isinstance(name, str) or not name:
                raise ValueError(f"rule set {rs!r} has no name")
            if getattr(rs, "slot", None) not in SLOTS:
                raise ValueError(f"rule set {name!r} has unknown slot {rs.slot!r}")
            if not isinstance(getattr(rs, "version", None), str):
                raise ValueError(f"rule set {name!r} needs a version string")
            if not callable(getattr(rs, "evaluate", None)):
                raise ValueError(f"rule set {name!r} has no evaluate()")
            if name in self._by_name:
                raise ValueError(f"two plugins provide a rule set named {name!r}")
            self._by_name[name] = rs

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> RuleSet | None:
        return self._by_name.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(RuleSpecs)
    return pm


def load_rules(extra_plugins: Iterable[object] = ()) -> RuleRegistry:
    """Discover every installed rule plugin; ``extra_plugins`` adds plugin objects directly
    (tests, embedding)."""
    pm = plugin_manager()
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra_plugins:
        pm.register(plugin)
    rule_sets: list[RuleSet] = []
    for batch in pm.hook.register_rule_sets():
        rule_sets.extend(batch or [])
    return RuleRegistry(rule_sets)


@functools.cache
def default_registry() -> RuleRegistry:
    """The process-wide registry of installed plugins (entry points are read once)."""
    return load_rules()
