"""memberhub connector for the Example Shop storefront API (a partner's package).

This is the worked example from ``connectors/README.md``: a complete connector in one module,
registered through the ``memberhub.connectors`` entry point, proven by one test file that calls
the conformance kit (``tests/test_conformance.py`` in this package).

The Example Shop API: ``GET /v1/orders?updated_from=…&updated_to=…&page=N`` (ISO-8601 instants,
pages from 1, ``has_more``), authenticated by ``Authorization: Bearer <api_key>``; money in fen;
errors as ``{"error": {"code": …, "message": …}}`` with HTTP 401 / 429 (``Retry-After``) / 5xx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from gateway.sync import (
    Checkpoint,
    CheckResult,
    Connector,
    Identifier,
    OrderLineRecord,
    OrderRecord,
    Partition,
    Profile,
    RefundRecord,
    Request,
    Response,
    Stream,
    errors,
    hookimpl,
    parse_cursor,
    window_count,
    windows,
)

WINDOW = timedelta(days=1)


def parse(resp: Response) -> Any:
    """Map Example Shop's answers onto the runner's error types."""
    body = resp.json()
    if resp.status == 401:
        raise errors.AuthFailed(body.get("error", {}).get("message", "unauthorised"), code="401")
    if resp.status >= 400:
        raise errors.PlatformError(str(body.get("error")), code=str(resp.status))
    return body


MAX_REPEATS = 5


async def rows(
    shop: ExampleShop, path: str, field: str, a: datetime, b: datetime
) -> AsyncIterator[list[Mapping[str, Any]]]:
    """The pages of one ``[a, b)`` window. Example Shop pages by offset, and under load it may
    serve a page again in place of the next one: a page whose ids are exactly the previous
    page's is asked for again (a bounded number of times) instead of being taken as page N."""
    page, previous, repeats = 1, None, 0
    while True:
        body = await shop.get(path, updated_from=a, updated_to=b, page=page)
        items = body[field]
        ids = [item["id"] for item in items]
        if page > 1 and ids and ids == previous:
            repeats += 1
            if repeats > MAX_REPEATS:
                raise errors.PlatformError(f"{path} keeps repeating page {page - 1}")
            continue
        repeats, previous = 0, ids
        yield items
        if not body.get("has_more"):
            return
        page += 1


class OrdersStream(Stream):
    name = "orders"
    record_type = OrderRecord

    async def read(
        self, partition: Partition, state: Mapping[str, Any] | None
    ) -> AsyncIterator[OrderRecord | Checkpoint]:
        shop: ExampleShop = self.connector  # type: ignore[assignment]
        start = parse_cursor(state, partition.since)
        total = window_count(start, partition.until, WINDOW)
        for i, (a, b) in enumerate(windows(start, partition.until, WINDOW), 1):
            async for page in rows(shop, "/v1/orders", "orders", a, b):
                for o in page:
                    yield order_record(o)
            yield Checkpoint({"cursor": b.isoformat()}, done=i, total=total)


class RefundsStream(Stream):
    name = "refunds"
    record_type = RefundRecord

    async def read(
        self, partition: Partition, state: Mapping[str, Any] | None
    ) -> AsyncIterator[RefundRecord | Checkpoint]:
        shop: ExampleShop = self.connector  # type: ignore[assignment]
        start = parse_cursor(state, partition.since)
        total = window_count(start, partition.until, WINDOW)
        for i, (a, b) in enumerate(windows(start, partition.until, WINDOW), 1):
            async for page in rows(shop, "/v1/refunds", "refunds", a, b):
                for r in page:
                    yield RefundRecord(
                        refund_id=r["id"],
                        order_external_id=r["order_id"],
                        amount_fen=r["amount"],
                        updated_at=datetime.fromisoformat(r["updated_at"]),
                    )
            yield Checkpoint({"cursor": b.isoformat()}, done=i, total=total)


def order_record(o: Mapping[str, Any]) -> OrderRecord:
    customer = o["customer"]
    buyer = [Identifier("example_shop_customer", o["shop"], customer["id"])]
    if customer.get("phone"):
        buyer.append(Identifier("phone", None, customer["phone"]))
    return OrderRecord(
        external_id=o["id"],
        status={"pending": "created", "paid": "paid", "fulfilled": "completed"}.get(
            o["status"], "cancelled"
        ),
        placed_at=datetime.fromisoformat(o["created_at"]),
        paid_at=datetime.fromisoformat(o["paid_at"]) if o.get("paid_at") else None,
        updated_at=datetime.fromisoformat(o["updated_at"]),
        total_fen=o["total"],
        paid_fen=o["paid"],
        lines=tuple(
            OrderLineRecord(
                sku=li["sku"],
                name=li["title"],
                category=li.get("category"),
                quantity=li["qty"],
                unit_price_fen=li["price"],
                amount_fen=li["qty"] * li["price"],
            )
            for li in o["items"]
        ),
        buyer=tuple(buyer),
        profile=Profile(name=customer.get("name")) if customer.get("name") else None,
    )


class ExampleShop(Connector):
    name = "example_shop"
    title = "Example Shop"
    version = "1.0.0"
    rate_limit = 20.0
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["shop", "api_key"],
        "properties": {
            "base_url": {"type": "string", "default": "https://api.example-shop.test"},
            "shop": {"type": "string", "minLength": 1, "description": "Shop id (identifier scope)"},
            "api_key": {"type": "string", "minLength": 1, "writeOnly": True},
            "start_date": {"type": "string", "format": "date-time"},
            "rate_limit": {"type": "number", "exclusiveMinimum": 0},
        },
    }
    identifier_kinds = ()

    async def get(self, path: str, **params: Any) -> Any:
        query = {k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in params.items()}

        def build() -> Request:
            return Request(
                "GET",
                self.config.get("base_url", "https://api.example-shop.test") + path,
                params={**query, "shop": self.config["shop"]},
                headers={"Authorization": f"Bearer {self.config['api_key']}"},
            )

        return await self.http.call(build, parse)

    async def check(self) -> CheckResult:
        try:
            now = self.now()
            await self.get("/v1/orders", updated_from=now, updated_to=now, page=1)
        except errors.ConnectorError as exc:
            return CheckResult(False, f"Example Shop refused: {exc}")
        except Exception as exc:  # check() never raises
            return CheckResult(False, f"cannot reach Example Shop: {type(exc).__name__}")
        return CheckResult(True, "ok")

    def streams(self) -> Sequence[Stream]:
        return (OrdersStream(self), RefundsStream(self))


@hookimpl
def register_connectors() -> list[type[Connector]]:
    return [ExampleShop]


@hookimpl
def register_identifier_kinds() -> list[Any]:
    from gateway.identifiers import IdentifierKind

    return [
        IdentifierKind(
            "example_shop_customer", True, False, "", "Example Shop customer id within a shop"
        )
    ]
