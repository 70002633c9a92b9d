"""JD streams: ``orders`` (``jingdong.pop.order.search``) and ``refunds``
(``jingdong.pop.afs.soa.refundapply.queryPageList``).

Both read consecutive windows of at most one day on the platform's time key and checkpoint after
each window. Within a window pages run from 1 and stop at JD's **page cap (300)**; a window whose
total would need more pages is split in half until it fits. Rows are de-duplicated by primary key
within a window and a page that only repeats rows already seen (the index shifting under the
pager) is fetched again; if rows are still missing at the end, the window is read once more.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from connectors.jd.mapping import ORDER_STATES, order_record, parse_time, refund_record
from connectors.paging import WindowedStream as PagedWindows
from connectors.wire import format_time
from gateway.sync.errors import PlatformError
from gateway.sync.records import OrderRecord, Record, RefundRecord

if TYPE_CHECKING:
    from connectors.jd.connector import JdConnector


ORDER_FIELDS = (
    "orderId,venderId,orderType,payType,orderTotalPrice,orderSellerPrice,orderPayment,"
    "freightPrice,sellerDiscount,orderState,orderStartTime,orderEndTime,paymentConfirmTime,"
    "modified,open_id_buyer,xid_buyer,consigneeInfo,itemInfoList"
)


class WindowedStream(PagedWindows):
    """JD's windowed, paged listing (see :mod:`connectors.paging`)."""

    platform = "JD"
    format_time = staticmethod(format_time)
    connector: JdConnector


class OrdersStream(WindowedStream):
    """Orders by modified time (``dateType=0``; ASSUMED to mean modified time, §2.2/§11)."""

    name = "orders"
    record_type = OrderRecord

    async def fetch(
        self, a: datetime, b: datetime, page: int
    ) -> tuple[list[Mapping[str, Any]], int]:
        payload = await self.connector.client.call(
            "jingdong.pop.order.search",
            {
                "start_date": format_time(a),
                "end_date": format_time(b),
                "order_state": ORDER_STATES,
                "optional_fields": ORDER_FIELDS,
                "dateType": 0,
                "sortType": 1,
                "page": page,
                "page_size": self.page_size,
            },
        )
        result = payload.get("searchorderinfo_result") or {}
        api = result.get("apiResult") or {}
        if not api.get("success", False):
            code = str(api.get("numberCode") or api.get("englishErrCode") or "")
            msg = api.get("englishErrCode") or api.get("chineseErrCode") or "apiResult failed"
            raise PlatformError(f"jingdong.pop.order.search refused: {msg}", code=code)
        return list(result.get("orderInfoList") or []), int(result.get("orderTotal") or 0)

    def key(self, row: Mapping[str, Any]) -> str:
        return str(row["orderId"])

    def row_time(self, row: Mapping[str, Any]) -> datetime | None:
        return parse_time(row.get("modified")) or parse_time(row.get("orderStartTime"))

    def to_record(self, row: Mapping[str, Any]) -> Record | None:
        return order_record(row, self.connector.vender_id, self.connector.name)


class RefundsStream(WindowedStream):
    """Refund applications by apply time. A state cursor re-reads ``refund_lookback_hours``
    (default 72) before it, so an application approved after it was first seen is picked up."""

    name = "refunds"
    record_type = RefundRecord

    def start(self, cursor: datetime, state: Mapping[str, Any] | None) -> datetime:
        if not state or not state.get("cursor"):
            return cursor
        hours = float(self.connector.config.get("refund_lookback_hours", 72))
        return cursor - timedelta(hours=hours)

    async def fetch(
        self, a: datetime, b: datetime, page: int
    ) -> tuple[list[Mapping[str, Any]], int]:
        payload = await self.connector.client.call(
            "jingdong.pop.afs.soa.refundapply.queryPageList",
            {
                "applyTimeStart": format_time(a),
                "applyTimeEnd": format_time(b),
                "pageIndex": page,
                "pageSize": self.page_size,
            },
        )
        result = payload.get("queryResult") or {}
        if not result.get("success", False):
            code = str(result.get("resultCode") or "")
            msg = result.get("resultDescribe") or "queryResult failed"
            raise PlatformError(f"refundapply.queryPageList refused: {msg}", code=code)
        return list(result.get("result") or []), int(result.get("totalCount") or 0)

    def key(self, row: Mapping[str, Any]) -> str:
        return str(row["id"])

    def row_time(self, row: Mapping[str, Any]) -> datetime | None:
        return parse_time(row.get("applyTime"))

    def to_record(self, row: Mapping[str, Any]) -> Record | None:
        return refund_record(row)
