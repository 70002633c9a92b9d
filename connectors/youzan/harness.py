"""Conformance-kit harness for the Youzan connector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.testing.fake import FakePlatform, Faults
from connectors.testing.harness import Harness
from connectors.testing.world import World
from connectors.youzan.connector import YouzanConnector
from connectors.youzan.fake import KDT_ID, YouzanFake
from gateway.sync.contract import Connector

WECHAT_APPID = "wx5f1d2c3b4a596877"


@dataclass
class YouzanHarness(Harness):
    """Links people through the buyer's bound phone (the default ``link_identifier``)."""

    connector: type[Connector] = YouzanConnector
    world_channel: str = "youzan"
    capabilities: frozenset[str] = field(
        default_factory=lambda: frozenset({"orders", "refunds", "rate_limit", "token_refresh"})
    )

    def make_fake(self, world: World, faults: Faults | None = None) -> FakePlatform:
        return YouzanFake(
            world,
            app_key="yz-client-id",
            app_secret="yz-client-secret",
            faults=faults,
            kdt_id=KDT_ID,
        )

    def config(self, fake: FakePlatform) -> dict[str, Any]:
        """No access token: the connector obtains one with the silent grant."""
        return {
            "base_url": fake.base_url,
            "client_id": fake.app_key,
            "client_secret": fake.app_secret,
            "kdt_id": KDT_ID,
            "wechat_appid": WECHAT_APPID,
        }
