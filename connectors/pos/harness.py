"""Conformance-kit harness for the ``pos`` connector, and the world's truth for the channel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.pos.connector import PosConnector
from connectors.pos.fake import PospalFake
from connectors.pos.render import first_receipts, phone_masked, ticket_time, visible
from connectors.testing.fake import FakePlatform, Faults
from connectors.testing.harness import Harness
from connectors.testing.world import Person, World
from gateway.identity.model import IdentifierInput
from gateway.sync import Identifier, OrderLineRecord, OrderRecord, Record, RefundRecord
from gateway.sync.contract import Connector

BRAND_SCOPE = "brand-demo"
WEBHOOK_SECRET = "whsec-pos-test-0123456789"


@dataclass
class PosHarness(Harness):
    connector: type[Connector] = PosConnector
    world_channel: str = "pos"
    capabilities: frozenset[str] = field(
        default_factory=lambda: frozenset({"orders", "refunds", "rate_limit"})
    )

    def make_fake(self, world: World, faults: Faults | None = None) -> FakePlatform:
        return PospalFake(world, faults=faults)

    def config(self, fake: FakePlatform) -> dict[str, Any]:
        assert isinstance(fake, PospalFake)
        return {
            "base_url": fake.base_url,
            "app_id": fake.app_id,
            "app_key": fake.pospal_app_key,
            "brand_scope": BRAND_SCOPE,
            "webhook_secret": WEBHOOK_SECRET,
            "lookback_minutes": 0,
        }

    def link_identifier(self, person: Person) -> IdentifierInput:
        """Every member's first store receipt carries the full phone (render policy)."""
        return Identifier("phone", None, person.phone)


def expected_records(world: World, brand_scope: str = BRAND_SCOPE) -> dict[str, Record]:
    """What the channel's records must be, built from the world directly (not from tickets):
    key ``order:<receipt>`` / ``refund:<return receipt>``."""
    first = first_receipts(world)
    out: dict[str, Record] = {}
    for o in world.orders.get("pos", []):
        if not visible(o):
            continue
        sale = o.status != "cancelled"
        at = ticket_time(o)
        buyer = [Identifier("pos_card", brand_scope, o.person.pos_card)]
        if not phone_masked(o, first.get(o.person.index)):
            buyer.append(Identifier("phone", None, o.person.phone))
        out[f"order:{o.external_id}"] = OrderRecord(
            external_id=o.external_id,
            status="completed" if sale else "cancelled",
            placed_at=at,
            updated_at=at,
            total_fen=o.total_fen,
            paid_fen=o.total_fen if sale else 0,
            lines=tuple(
                OrderLineRecord(line.sku, line.name, line.quantity, line.unit_fen, line.amount_fen)
                for line in o.lines
            ),
            buyer=tuple(buyer),
            paid_at=at if sale else None,
            store_code=o.store_code,
            guide_code=o.guide_code,
        )
        for r in o.refunds:
            out[f"refund:{r.refund_id}"] = RefundRecord(
                refund_id=r.refund_id,
                order_external_id=o.external_id,
                amount_fen=r.amount_fen,
                updated_at=r.at,
                reason="store return",
            )
    return out
