"""Youzan streams: ``orders`` (``youzan.trades.sold.get/4.0.4`` on the ``update_time``
window) and ``refunds`` (``youzan.trade.refund.search/3.0.0``, shape ASSUMED — see mapping).

Windows of at most one day, a checkpoint after each. ``page_no`` runs from 1 and is capped at
100 by the platform, so a window whose total needs more pages is halved until it fits. The same
order can come back on two pages when orders change while paging (§5.2): rows are de-duplicated
by ``tid``; a page that only repeats rows already seen is fetched again, and a window that still
lacks rows at the end is read once more.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectors.paging import WindowedStream as PagedWindows
from connectors.wire import format_time
from connectors.youzan.mapping import order_record, parse_time, refund_record
from gateway.sync.records import OrderRecord, Record, RefundRecord

if TYPE_CHECKING:
    from connectors.youzan.connector import YouzanConnector


class WindowedStream(PagedWindows):
    """Youzan's windowed, paged listing (see :mod:`connectors.paging`)."""

    platform = "Youzan"
    format_time = staticmethod(format_time)
    connector: YouzanConnector


class OrdersStream(WindowedStream):
    name = "orders"
    record_type = OrderRecord

    async def fetch(
        self, a: datetime, b: datetime, page: int
    ) -> tuple[list[Mapping[str, Any]], int]:
        data = await self.connector.client.call(
            "youzan.trades.sold.get",
            "4.0.4",
            {
                "start_update": format_time(a),
                "end_update": format_time(b),
                "page_no": page,
                "page_size": self.page_size,
            },
        )
        data = data or {}
        rows = [
            entry["full_order_info"]
            for entry in data.get("full_order_info_list") or []
            if isinstance(entry, dict) and entry.get("full_order_info")
        ]
        return rows, int(data.get("total_results") or 0)

    def key(self, row: Mapping[str, Any]) -> str:
        return str(row["order_info"]["tid"])

    def row_time(self, row: Mapping[str, Any]) -> datetime | None:
        info = row.get("order_info") or {}
        return parse_time(info.get("update_time")) or parse_time(info.get("created"))

    def to_record(self, row: Mapping[str, Any]) -> Record | None:
        c = self.connector
        return order_record(row, c.kdt_id, c.config.get("wechat_appid"), c.name)


class RefundsStream(WindowedStream):
    name = "refunds"
    record_type = RefundRecord

    async def fetch(
        self, a: datetime, b: datetime, page: int
    ) -> tuple[list[Mapping[str, Any]], int]:
        data = await self.connector.client.call(
            "youzan.trade.refund.search",
            "3.0.0",
            {
                "update_time_start": format_time(a),
                "update_time_end": format_time(b),
                "page_no": page,
                "page_size": self.page_size,
            },
        )
        data = data or {}
        return list(data.get("refunds") or []), int(data.get("total") or 0)

    def key(self, row: Mapping[str, Any]) -> str:
        return str(row["refund_id"])

    def row_time(self, row: Mapping[str, Any]) -> datetime | None:
        return parse_time(row.get("modified"))

    def to_record(self, row: Mapping[str, Any]) -> Record | None:
        return refund_record(row)
