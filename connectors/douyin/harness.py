"""Conformance-kit harness for the Douyin shop connector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.douyin.connector import DouyinConnector
from connectors.douyin.fake import DEFAULT_SHOP_ID, DouyinFake
from connectors.testing.fake import FakePlatform, Faults
from connectors.testing.harness import Harness
from connectors.testing.world import Person, World
from gateway.identity.model import IdentifierInput
from gateway.sync.contract import Connector


@dataclass
class DouyinHarness(Harness):
    """Runs :class:`DouyinConnector` against :class:`DouyinFake`.

    Linking: the member records carry the buyer's ``phone`` only when 会员通 returns it in
    plaintext, i.e. for a buyer with a paid Douyin order in the 90 days before the fake's business
    clock (the world's end). :meth:`link_identifier` therefore gives the phone for such a person
    and otherwise the strong ``douyin_union_id`` (which only Douyin knows) — it never claims a
    phone the records do not carry.
    """

    connector: type[Connector] = DouyinConnector
    world_channel: str = "douyin"
    capabilities: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {"members", "orders", "refunds", "rate_limit", "token_refresh"}
        )
    )
    page_size: int = 100
    _fake: DouyinFake | None = field(default=None, repr=False)

    def make_fake(self, world: World, faults: Faults | None = None) -> FakePlatform:
        # The conformance kit runs the connector on a synthetic clock (the world's end, moved
        # forward by some tests) that the harness cannot see, so the kit's fake does not check
        # the 10-minute skew; tests/connectors/test_douyin.py checks it on a real clock.
        self._fake = DouyinFake(world, faults=faults, max_skew=None)
        return self._fake

    def config(self, fake: FakePlatform) -> dict[str, Any]:
        assert isinstance(fake, DouyinFake)
        return {
            "base_url": fake.base_url,
            "app_key": fake.app_key,
            "app_secret": fake.app_secret,
            "access_token": fake.access_token,
            "refresh_token": fake.refresh_token,
            "shop_id": fake.shop_id,
            "app_id": fake.member_app_id,
            "sign_method": "hmac-sha256",
            "page_size": self.page_size,
        }

    def link_identifier(self, person: Person) -> IdentifierInput:
        fake = self._fake
        if fake is not None and fake.is_member(person) and fake.recent_paid(person):
            return IdentifierInput("phone", None, person.phone)
        scope = fake.shop_id if fake is not None else DEFAULT_SHOP_ID
        return IdentifierInput("douyin_union_id", scope, person.douyin_union_id)
