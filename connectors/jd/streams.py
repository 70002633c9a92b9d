"""JD streams: ``orders`` (``jingdong.pop.order.search``) and ``refunds``
(``jingdong.pop.afs.soa.refundapply.queryPageList``).

Both read consecutive windows of at most one day on the platform's time key and checkpoint after
each window. Within a window pages run from 1 and stop at JD's **page cap (300)**; a window whose
total would need more pages is split in half until it fits. Rows are de-duplicated by primary key
within a window and a page that only repeats rows already seen (the index shifting under the
pager) is fetched again; if rows are still missing at the end, the window is read once more.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from connectors.jd.mapping import ORDER_STATES, format_time, order_record, parse_time, refund_record
from gateway.sync.contract import Checkpoint, Partition, Stream, parse_cursor, window_count, windows
from gateway.sync.errors import PlatformError
from gateway.sync.records import OrderRecord, Record, RefundRecord

if TYPE_CHECKING:
    from connectors.jd.connector import JdConnector

log = logging.getLogger("memberhub.connectors.jd")

ORDER_FIELDS = (
    "orderId,venderId,orderType,payType,orderTotalPrice,orderSellerPrice,orderPayment,"
    "freightPrice,sellerDiscount,orderState,orderStartTime,orderEndTime,paymentConfirmTime,"
    "modified,open_id_buyer,xid_buyer,consigneeInfo,itemInfoList"
)
MAX_REFETCH = 3
MAX_PASSES = 3


class WindowedStream(Stream):
    """A stream read in ``[a, b)`` windows of a time key, paged from 1 up to ``max_page``."""

    window: timedelta = timedelta(days=1)
    connector: JdConnector

    @property
    def page_size(self) -> int:
        return int(self.connector.config.get("page_size", 100))

    @property
    def max_page(self) -> int:
        return self.connector.max_page

    @abc.abstractmethod
    async def fetch(
        self, a: datetime, b: datetime, page: int
    ) -> tuple[list[Mapping[str, Any]], int]:
        """One page of rows whose time key is in ``[a, b]`` (seconds), and the window total."""

    @abc.abstractmethod
    def key(self, row: Mapping[str, Any]) -> str: ...

    @abc.abstractmethod
    def row_time(self, row: Mapping[str, Any]) -> datetime | None: ...

    @abc.abstractmethod
    def to_record(self, row: Mapping[str, Any]) -> Record | None: ...

    def start(self, cursor: datetime, state: Mapping[str, Any] | None) -> datetime:
        return cursor

    async def read(
        self, partition: Partition, state: Mapping[str, Any] | None
    ) -> AsyncIterator[Record | Checkpoint]:
        cursor = parse_cursor(state, partition.since)
        until = partition.until
        if cursor >= until:
            return
        start = self.start(cursor, state)
        total = window_count(start, until, self.window)
        for i, (a, b) in enumerate(windows(start, until, self.window), 1):
            for row in (await self._rows(a, b)).values():
                at = self.row_time(row)
                # JD's bounds are whole seconds and inclusive: keep exactly [a, b).
                if at is None or not a <= at < b:
                    continue
                record = self.to_record(row)
                if record is not None:
                    yield record
            yield Checkpoint(state={"cursor": b.isoformat()}, done=i, total=total)

    async def _rows(self, a: datetime, b: datetime) -> dict[str, Mapping[str, Any]]:
        rows, total = await self.fetch(a, b, 1)
        if -(-total // self.page_size) > self.max_page:
            if b - a <= timedelta(seconds=2):
                raise PlatformError(
                    f"{total} rows changed within {format_time(a)}…{format_time(b)}: more than "
                    f"JD's page cap ({self.max_page} pages) and the window cannot shrink"
                )
            mid = a + (b - a) / 2
            log.info("%s: %d rows in one window; splitting at %s", self.name, total, mid)
            return {**await self._rows(a, mid), **await self._rows(mid, b)}
        seen: dict[str, Mapping[str, Any]] = {}
        for attempt in range(MAX_PASSES):
            if attempt:
                log.info("%s: window lost rows to page shifts; reading it again", self.name)
                rows, total = await self.fetch(a, b, 1)
            page, refetched, this_pass = 1, 0, set()
            while True:
                fresh = [r for r in rows if self.key(r) not in this_pass]
                if page > 1 and rows and not fresh and refetched < MAX_REFETCH:
                    refetched += 1  # the page repeated an earlier one: ask for it again
                    rows, total = await self.fetch(a, b, page)
                    continue
                for r in rows:
                    seen[self.key(r)] = r
                    this_pass.add(self.key(r))
                pages = min(self.max_page, -(-total // self.page_size))
                if not rows or page >= pages:
                    break
                page, refetched = page + 1, 0
                rows, total = await self.fetch(a, b, page)
            if len(seen) >= total:
                break
        return seen


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
