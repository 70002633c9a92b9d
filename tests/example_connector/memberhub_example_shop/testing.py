"""The Example Shop fake (for the conformance kit) — what a partner ships next to a connector.

It renders the kit's synthetic :class:`~connectors.testing.world.World` (channel ``example``) in
Example Shop's wire format, checks the bearer key, pages 50 orders at a time and answers 401 /
429 (``Retry-After``) like the real API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from connectors.testing import FakePlatform, Faults, Harness, Person, World
from gateway.sync import Identifier

PAGE = 5  # small, so that the kit's world spans several pages per window
SHOP = "shop-1"


class ExampleShopFake(FakePlatform):
    name = "example_shop"

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/orders", self.orders), web.get("/v1/refunds", self.refunds)]

    def rate_limited(self, ban_seconds: int) -> web.Response:
        return web.json_response(
            {"error": {"code": "rate_limited", "message": "slow down"}},
            status=429,
            headers={"Retry-After": str(ban_seconds)},
        )

    def page_key(self, request: web.Request) -> str:
        return f"{request.path}:{request.query.get('updated_from')}"

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.app_secret}":
            return web.json_response(
                {"error": {"code": "unauthorised", "message": "invalid API key"}}, status=401
            )
        return None

    def _window(self, request: web.Request) -> tuple[datetime, datetime, int]:
        q = request.query
        return (
            datetime.fromisoformat(q["updated_from"]),
            datetime.fromisoformat(q["updated_to"]),
            int(q.get("page", "1")),
        )

    def _page(self, request: web.Request, rows: list[Any], page: int) -> tuple[list[Any], bool]:
        if self.duplicate_page(self.page_key(request)) and page > 1:
            page -= 1  # the platform served the previous page again
        chunk = rows[(page - 1) * PAGE : page * PAGE]
        return chunk, page * PAGE < len(rows)

    async def orders(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied:
            return denied
        a, b, page = self._window(request)
        rows = [o for o in self.world.orders.get("example", []) if a <= o.modified < b]
        chunk, more = self._page(request, rows, page)
        return web.json_response(
            {
                "orders": [
                    {
                        "id": o.external_id,
                        "shop": SHOP,
                        "status": {
                            "created": "pending",
                            "paid": "paid",
                            "completed": "fulfilled",
                        }.get(o.status, "cancelled"),
                        "created_at": o.created.isoformat(),
                        "paid_at": o.paid_at.isoformat() if o.paid_at else None,
                        "updated_at": o.modified.isoformat(),
                        "total": o.total_fen,
                        "paid": o.paid_fen,
                        "customer": {
                            "id": f"c{o.person.index}",
                            "phone": o.person.phone,
                            "name": o.person.name,
                        },
                        "items": [
                            {
                                "sku": li.sku,
                                "title": li.name,
                                "category": li.category,
                                "qty": li.quantity,
                                "price": li.unit_fen,
                            }
                            for li in o.lines
                        ],
                    }
                    for o in chunk
                ],
                "has_more": more,
            }
        )

    async def refunds(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied:
            return denied
        a, b, page = self._window(request)
        rows = [
            (o, r) for o in self.world.orders.get("example", []) for r in o.refunds if a <= r.at < b
        ]
        chunk, more = self._page(request, rows, page)
        return web.json_response(
            {
                "refunds": [
                    {
                        "id": r.refund_id,
                        "order_id": o.external_id,
                        "amount": r.amount_fen,
                        "updated_at": r.at.isoformat(),
                    }
                    for o, r in chunk
                ],
                "has_more": more,
            }
        )


class ExampleShopHarness(Harness):
    def make_fake(self, world: World, faults: Faults | None = None) -> FakePlatform:
        return ExampleShopFake(world, app_secret="sk_live_example", faults=faults)

    def config(self, fake: FakePlatform) -> dict[str, Any]:
        return {"base_url": fake.base_url, "shop": SHOP, "api_key": fake.app_secret}

    def link_identifier(self, person: Person) -> Any:
        return Identifier("phone", None, person.phone)
