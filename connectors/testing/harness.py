"""How the conformance kit (and the tests) drive one connector against its fake platform.

Every connector that wants to run the kit provides a :class:`Harness`: which fake to start for a
world, how to configure the connector against it, and which of a person's identifiers the
connector's records carry that another channel would also know (to prove ONE ID across channels).
Optional capabilities (``refunds``, ``token_refresh`` …) let the kit skip what a channel does not
do, or — at the strictest level — fail when a harness leaves out something it should provide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.testing.fake import FakePlatform, Faults
from connectors.testing.world import Person, World
from gateway.identity.model import IdentifierInput
from gateway.sync.contract import Connector


@dataclass
class Harness:
    """Subclass per connector. ``world_channel`` is the :data:`World` channel the fake renders."""

    connector: type[Connector]
    world_channel: str
    capabilities: frozenset[str] = field(
        default_factory=lambda: frozenset({"orders", "refunds", "rate_limit", "token_refresh"})
    )

    def make_fake(self, world: World, faults: Faults | None = None) -> FakePlatform:
        raise NotImplementedError

    def config(self, fake: FakePlatform) -> dict[str, Any]:
        """A working configuration (secrets included) pointing at ``fake.base_url``."""
        raise NotImplementedError

    def bad_credentials(self, fake: FakePlatform) -> dict[str, Any]:
        """A configuration the platform refuses (wrong secret): ``check()`` must say so."""
        config = dict(self.config(fake))
        for key, value in self.secret_values(config).items():
            config[key] = f"wrong-{value}"
        return config

    def secret_values(self, config: Mapping[str, Any]) -> dict[str, Any]:
        from gateway.sync.contract import secret_fields

        return {k: config[k] for k in secret_fields(self.connector.config_schema) if k in config}

    def link_identifier(self, person: Person) -> IdentifierInput:
        """A strong identifier of ``person`` that this connector's records carry and another
        channel would also know (usually the phone, or the WeChat unionid)."""
        return IdentifierInput("phone", None, person.phone)
