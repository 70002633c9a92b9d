"""How the conformance kit drives the WeChat connector against :class:`WechatFake`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.testing.fake import FakePlatform, Faults
from connectors.testing.harness import Harness
from connectors.testing.world import Person, World
from connectors.wechat.connector import WechatConnector
from connectors.wechat.fake import WechatFake
from gateway.identity.model import IdentifierInput
from gateway.sync.contract import Connector

OPEN_PLATFORM_ID = "open-brand-1"
CALLBACK_TOKEN = "memberhubToken42"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"


@dataclass
class WechatHarness(Harness):
    """WeChat has no order pull: the harness offers members (followers) only."""

    connector: type[Connector] = WechatConnector
    world_channel: str = "wechat"
    capabilities: frozenset[str] = field(
        default_factory=lambda: frozenset({"members", "rate_limit", "token_refresh"})
    )
    page_size: int = 7

    def make_fake(self, world: World, faults: Faults | None = None) -> FakePlatform:
        return WechatFake(world, faults=faults, page_size=self.page_size)

    def config(self, fake: FakePlatform) -> dict[str, Any]:
        assert isinstance(fake, WechatFake)
        return {
            "appid": fake.appid,
            "secret": fake.secret,
            "oa_appid": fake.oa_appid,
            "oa_secret": fake.oa_secret,
            "token": CALLBACK_TOKEN,
            "open_platform_id": OPEN_PLATFORM_ID,
            "base_url": fake.base_url,
        }

    def bad_credentials(self, fake: FakePlatform) -> dict[str, Any]:
        """Wrong AppSecrets that still satisfy the config schema (WeChat answers 40125)."""
        config = self.config(fake)
        config["secret"] = "0" + config["secret"][1:][::-1]
        config["oa_secret"] = "0" + config["oa_secret"][1:][::-1]
        return config

    def link_identifier(self, person: Person) -> IdentifierInput:
        return IdentifierInput("wechat_unionid", OPEN_PLATFORM_ID, person.wechat_unionid)
