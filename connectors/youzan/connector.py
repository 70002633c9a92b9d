"""The Youzan (有赞云) connector class."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from connectors.wire import format_time
from connectors.youzan.client import YouzanClient
from connectors.youzan.streams import OrdersStream, RefundsStream
from gateway.identifiers import IdentifierKind
from gateway.sync.contract import CheckResult, Connector, Stream
from gateway.sync.errors import ConnectorError


class YouzanConnector(Connector):
    name = "youzan"
    title = "Youzan 有赞"
    version = "1"
    rate_limit = 10.0  # order-API QPS is undocumented (§5.4); 429s are honoured
    identifier_kinds: ClassVar[Sequence[IdentifierKind]] = ()
    max_page: ClassVar[int] = 100
    """``page_no`` ≤ 100 (§5.2); larger windows are split."""

    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["client_id", "client_secret", "kdt_id"],
        "properties": {
            "base_url": {
                "type": "string",
                "format": "uri",
                "default": "https://open.youzanyun.com",
            },
            "client_id": {"type": "string", "minLength": 1},
            "client_secret": {"type": "string", "minLength": 1, "writeOnly": True},
            "kdt_id": {
                "type": "string",
                "pattern": "^[0-9]{1,20}$",
                "description": "Shop id (grant_id of the silent grant; scope of yz_open_id)",
            },
            "access_token": {
                "type": "string",
                "writeOnly": True,
                "description": "Obtained and renewed by the connector (silent grant)",
            },
            "wechat_appid": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_-]{1,64}$",
                "description": "WeChat appid of the shop's official account / mini-program: "
                "the scope of buyer_info.outer_user_id openids (omit to ignore them)",
            },
            "start_date": {"type": "string", "format": "date-time"},
            "page_size": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100},
        },
    }

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self.client = YouzanClient(self)

    @property
    def kdt_id(self) -> str:
        return str(self.config["kdt_id"])

    def streams(self) -> Sequence[Stream]:
        return (OrdersStream(self), RefundsStream(self))

    async def check(self) -> CheckResult:
        """Get a token if needed, then list the orders updated in the last minute."""
        now = self.now()
        try:
            await self.client.call(
                "youzan.trades.sold.get",
                "4.0.4",
                {
                    "start_update": format_time(now - timedelta(minutes=1)),
                    "end_update": format_time(now),
                    "page_no": 1,
                    "page_size": 1,
                },
            )
        except ConnectorError as exc:
            return CheckResult(False, str(exc))
        except Exception as exc:  # check() never raises
            return CheckResult(False, f"Youzan check failed: {exc.__class__.__name__}: {exc}")
        return CheckResult(True, f"Youzan shop {self.kdt_id} reachable")

    async def refresh_token(self) -> None:
        """A new token from the silent grant (``refresh: true``), saved with the secrets."""
        await self.client.fetch_token(refresh=True)
