"""Conformance-kit harness for the Tmall connector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.testing.fake import FakePlatform, Faults
from connectors.testing.harness import Harness
from connectors.testing.world import Person, World
from connectors.tmall.connector import TmallConnector
from connectors.tmall.fake import DEFAULT_SHOP_ID, TmallFake
from gateway.identity.model import IdentifierInput


@dataclass
class TmallHarness(Harness):
    """TOP trades carry no buyer phone (``receiver_mobile`` is encrypted and a receiver is not
    the buyer), and the CRM member API returns no mobile either, so the cross-channel link this
    connector's records carry is the shop-scoped ``tmall_ouid`` (on members, trades and refunds);
    phones only arrive through the 会员通 bind/register SPI."""

    connector: type[TmallConnector] = TmallConnector
    world_channel: str = "tmall"
    capabilities: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {"members", "orders", "refunds", "rate_limit", "token_refresh", "webhooks"}
        )
    )
    shop_id: str = DEFAULT_SHOP_ID

    def make_fake(self, world: World, faults: Faults | None = None) -> FakePlatform:
        return TmallFake(world, faults=faults, shop_id=self.shop_id)

    def config(self, fake: FakePlatform) -> dict[str, Any]:
        return {
            "app_key": fake.app_key,
            "app_secret": fake.app_secret,
            "access_token": fake.access_token,
            "refresh_token": fake.refresh_token,
            "shop_id": self.shop_id,
            "sign_method": "hmac-sha256",
            "base_url": f"{fake.base_url}/router/rest",
            "oauth_url": fake.base_url,
            "page_size": 10,
            "ban_margin_seconds": 0.05,
        }

    def link_identifier(self, person: Person) -> IdentifierInput:
        return IdentifierInput("tmall_ouid", self.shop_id, person.tmall_ouid)
