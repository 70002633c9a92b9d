"""Conformance-kit harness for the JD connector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.jd.connector import JdConnector
from connectors.jd.fake import JdFake, xid_of
from connectors.testing.fake import FakePlatform, Faults
from connectors.testing.harness import Harness
from connectors.testing.world import Person, World
from gateway.identity.model import IdentifierInput
from gateway.sync.contract import Connector

VENDER_ID = "10086"


@dataclass
class JdHarness(Harness):
    connector: type[Connector] = JdConnector
    world_channel: str = "jd"
    capabilities: frozenset[str] = field(
        default_factory=lambda: frozenset({"orders", "refunds", "rate_limit", "token_refresh"})
    )

    def make_fake(self, world: World, faults: Faults | None = None) -> FakePlatform:
        return JdFake(
            world,
            app_key="jd-app",
            app_secret="jd-secret-密钥",
            access_token="jd-token",
            refresh_token="jd-refresh",
            faults=faults,
            vender_id=VENDER_ID,
        )

    def config(self, fake: FakePlatform) -> dict[str, Any]:
        return {
            "base_url": fake.base_url,
            "oauth_url": fake.base_url,
            "app_key": fake.app_key,
            "app_secret": fake.app_secret,
            "access_token": fake.access_token,
            "refresh_token": fake.refresh_token,
            "vender_id": VENDER_ID,
        }

    def link_identifier(self, person: Person) -> IdentifierInput:
        """JD gives no buyer phone; the buyer's ``xid_buyer`` is the strong per-vendor key."""
        return IdentifierInput("jd_xid", VENDER_ID, xid_of(person))
