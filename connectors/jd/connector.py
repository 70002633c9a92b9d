"""The JD (JOS) connector class."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from connectors.jd.client import JdClient
from connectors.jd.streams import OrdersStream, RefundsStream
from connectors.wire import format_time
from gateway.identifiers import IdentifierKind
from gateway.sync.contract import CheckResult, Connector, Stream
from gateway.sync.errors import ConnectorError

JD_XID = IdentifierKind(
    "jd_xid",
    True,
    False,
    "",
    "JD buyer xid (xid_buyer): one stable id per buyer within one vendor",
)


class JdConnector(Connector):
    name = "jd"
    title = "JD 京东 (JOS)"
    version = "1"
    rate_limit = 10.0
    identifier_kinds: ClassVar[Sequence[IdentifierKind]] = (JD_XID,)
    max_page: ClassVar[int] = 300
    """JOS serves at most 300 pages of one query (§2.2); larger windows are split."""

    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["app_key", "app_secret", "access_token", "vender_id"],
        "properties": {
            "base_url": {
                "type": "string",
                "format": "uri",
                "default": "https://api.jd.com",
                "description": "JOS gateway; /routerjson is appended",
            },
            "oauth_url": {
                "type": "string",
                "format": "uri",
                "default": "https://open-oauth.jd.com",
                "description": "JD OAuth 2 server (token refresh)",
            },
            "app_key": {"type": "string", "minLength": 1},
            "app_secret": {"type": "string", "minLength": 1, "writeOnly": True},
            "access_token": {"type": "string", "minLength": 1, "writeOnly": True},
            "refresh_token": {"type": "string", "minLength": 1, "writeOnly": True},
            "vender_id": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_.-]{1,64}$",
                "description": "JD shop (vendor) id: the scope of jd_xid / jd_open_id",
            },
            "start_date": {
                "type": "string",
                "format": "date-time",
                "description": "Backfill horizon for the first sync",
            },
            "page_size": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100},
            "refund_lookback_hours": {
                "type": "number",
                "minimum": 0,
                "maximum": 720,
                "default": 72,
                "description": "Refund applications re-read before the bookmark (approvals)",
            },
        },
    }

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self.client = JdClient(self)

    @property
    def vender_id(self) -> str:
        return str(self.config["vender_id"])

    def streams(self) -> Sequence[Stream]:
        return (OrdersStream(self), RefundsStream(self))

    async def check(self) -> CheckResult:
        """One order search over the last minute (page size 1)."""
        now = self.now()
        try:
            payload = await self.client.call(
                "jingdong.pop.order.search",
                {
                    "start_date": format_time(now - timedelta(minutes=1)),
                    "end_date": format_time(now),
                    "order_state": "WAIT_SELLER_STOCK_OUT",
                    "optional_fields": "orderId",
                    "dateType": 0,
                    "page": 1,
                    "page_size": 1,
                },
            )
            api = (payload.get("searchorderinfo_result") or {}).get("apiResult") or {}
            if not api.get("success", False):
                msg = api.get("englishErrCode") or api.get("chineseErrCode") or "apiResult failed"
                return CheckResult(False, f"JD refused the order search: {msg}")
        except ConnectorError as exc:
            return CheckResult(False, str(exc))
        except Exception as exc:  # check() never raises
            return CheckResult(False, f"JD check failed: {exc.__class__.__name__}: {exc}")
        return CheckResult(True, f"JD vendor {self.vender_id} reachable")

    async def refresh_token(self) -> None:
        body = await self.client.refresh()
        update = {"access_token": str(body["access_token"])}
        if body.get("refresh_token"):
            update["refresh_token"] = str(body["refresh_token"])
        self.config.update(update)
        await self.context.save_secrets(update)
