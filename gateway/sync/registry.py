"""Connector discovery: the ``memberhub.connectors`` entry points into a validated registry.

Like rule plugins, connectors reach the gateway only through entry points, so a first-party
connector is installed exactly like a partner's. What plugins return is checked once, at load
time (names unique, config schemas valid JSON Schema, identifier kinds consistent, webhooks
pointing at a known connector), instead of failing in the middle of a sync.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import jsonschema
import pluggy

from gateway.identifiers import register_kind
from gateway.sync.contract import Connector
from gateway.sync.hookspecs import ENTRY_POINT_GROUP, PROJECT, ConnectorSpecs, Webhook

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


class ConnectorRegistry:
    """Installed connectors by name, and their webhooks by ``(connector, name)``."""

    def __init__(
        self, connectors: Iterable[type[Connector]], webhooks: Iterable[Webhook] = ()
    ) -> None:
        self._by_name: dict[str, type[Connector]] = {}
        for cls in connectors:
            if not (isinstance(cls, type) and issubclass(cls, Connector)):
                raise ValueError(f"{cls!r} is not a Connector subclass")
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS:
                raise ValueError(f"connector {cls.__qualname__} needs a name of a-z, 0-9, _")
            if name in self._by_name and self._by_name[name] is not cls:
                raise ValueError(f"two plugins provide a connector named {name!r}")
            try:
                jsonschema.Draft202012Validator.check_schema(cls.config_schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(
                    f"connector {name!r} has an invalid config schema: {exc.message}"
                ) from exc
            for kind in cls.identifier_kinds:
                register_kind(kind)
            self._by_name[name] = cls
        self._hooks: dict[tuple[str, str], Webhook] = {}
        for hook in webhooks:
            if hook.connector not in self._by_name:
                raise ValueError(
                    f"webhook {hook.name!r} is for unknown connector {hook.connector!r}"
                )
            key = (hook.connector, hook.name)
            if key in self._hooks:
                raise ValueError(f"two webhooks named {hook.name!r} for {hook.connector!r}")
            self._hooks[key] = hook

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> type[Connector] | None:
        return self._by_name.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def webhook(self, connector: str, name: str) -> Webhook | None:
        return self._hooks.get((connector, name))

    def webhooks(self, connector: str | None = None) -> list[Webhook]:
        return [h for (c, _), h in sorted(self._hooks.items()) if connector in (None, c)]


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(ConnectorSpecs)
    return pm


def load_connectors(extra_plugins: Iterable[object] = ()) -> ConnectorRegistry:
    """Discover installed connector plugins; ``extra_plugins`` adds plugin objects directly."""
    pm = plugin_manager()
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra_plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    for batch in pm.hook.register_identifier_kinds():
        for kind in batch or []:
            register_kind(kind)
    classes = [cls for batch in pm.hook.register_connectors() for cls in batch or []]
    hooks = [h for batch in pm.hook.register_webhooks() for h in batch or []]
    return ConnectorRegistry(classes, hooks)


@functools.cache
def default_registry() -> ConnectorRegistry:
    return load_connectors()
