"""Tmall streams: shop CRM members, trades (orders) and refunds, in time windows.

All three read ``[cursor, until)`` in consecutive windows of at most one day (TOP's limit for
``taobao.trades.sold.increment.get``; ``window_minutes`` may lower it, TOP recommends 30) and put
a checkpoint after every window, so a resumed sync restarts at the first unfinished window.

Window bounds are sent as ``start = a`` and ``end = b`` (second precision, GMT+8). TOP does not
document whether the end is inclusive; sending ``b`` itself means a row modified exactly at a
boundary may be read by two windows (harmless: rows are de-duplicated within a window and the
runner applies records idempotently) but is never missed.

Paging (PLATFORMS.md §1.3): the first page gives ``total_results``; the page count is computed
from it (``use_has_next=false``) and the remaining pages are read **from the last page back to
the first**. Results are ordered by ``modified`` descending, so a row that leaves the window
while we page (it was modified again, after ``until``) shifts the rest towards pages we have not
read yet instead of making us skip one. A page that repeats the previous one exactly (a proxy
or gateway replaying a response) is fetched again, a bounded number of times; if it keeps
repeating, the stream fails with a transient error (and resumes from its last checkpoint) rather
than silently losing that page.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from connectors.tmall import mapping
from connectors.tmall.signing import format_time
from gateway.sync.contract import Checkpoint, Partition, Stream, parse_cursor, window_count, windows
from gateway.sync.errors import TransientError
from gateway.sync.records import MemberRecord, OrderRecord, Record, RefundRecord

if TYPE_CHECKING:
    from connectors.tmall.connector import TmallConnector

MAX_WINDOW = timedelta(days=1)
REPEAT_RETRIES = 5
TRADE_LIST_FIELDS = "tid,tid_str,status,modified"
TRADE_FULL_FIELDS = ",".join(
    (
        "tid,tid_str,status,type,created,modified,pay_time,end_time",
        "payment,total_fee,post_fee,discount_fee",
        "buyer_open_uid,ouid,o2o_shop_id,o2o_guide_id",
        "orders.oid,orders.num_iid,orders.sku_id,orders.outer_iid,orders.outer_sku_id",
        "orders.title,orders.price,orders.num,orders.payment,orders.total_fee",
        "orders.refund_status,orders.status",
    )
)
REFUND_FIELDS = "refund_id,tid,oid,status,refund_fee,total_fee,payment,created,modified,reason"


class _WindowedStream(Stream):
    """Shared machinery: windows, page count from the total, (reverse) paging, checkpoints."""

    connector: TmallConnector
    api: ClassVar[str]
    outer: ClassVar[str]
    inner: ClassVar[str]
    key: ClassVar[str]
    total_key: ClassVar[str] = "total_results"
    page_param: ClassVar[str] = "page_no"
    start_param: ClassVar[str] = "start_modified"
    end_param: ClassVar[str] = "end_modified"
    reverse: ClassVar[bool] = True

    def extra_params(self) -> dict[str, Any]:
        return {}

    def window_size(self) -> timedelta:
        minutes = int(self.connector.config.get("window_minutes", 1440))
        return min(MAX_WINDOW, timedelta(minutes=max(1, minutes)))

    @property
    def page_size(self) -> int:
        return max(1, min(100, int(self.connector.config.get("page_size", 100))))

    async def _page(self, base: Mapping[str, Any], page: int) -> dict[str, Any]:
        return await self.connector.client.call(self.api, {**base, self.page_param: page})

    def _keys(self, body: Mapping[str, Any]) -> list[str]:
        return [str(r.get(self.key)) for r in mapping.wrapped(body, self.outer, self.inner)]

    async def fetch_window(self, a: datetime, b: datetime) -> list[dict[str, Any]]:
        """Every row modified in the window, each once (first occurrence wins)."""
        base = {
            **self.extra_params(),
            self.start_param: format_time(a),
            self.end_param: format_time(b),
            "page_size": self.page_size,
        }
        first = await self._page(base, 1)
        total = int(first.get(self.total_key) or 0)
        pages = math.ceil(total / self.page_size) if total > 0 else 0
        bodies: list[dict[str, Any]] = [first]
        if pages > 1:
            bodies = []
            previous = self._keys(first)
            order = range(pages, 0, -1) if self.reverse else range(2, pages + 1)
            if not self.reverse:
                bodies.append(first)
            for page in order:
                body = await self._page(base, page)
                tries = 0
                while previous and self._keys(body) == previous:
                    if tries == REPEAT_RETRIES:
                        raise TransientError(
                            f"{self.api} page {page} keeps repeating the previous page"
                        )
                    tries += 1
                    body = await self._page(base, page)
                previous = self._keys(body)
                bodies.append(body)
        rows: dict[str, dict[str, Any]] = {}
        for body in bodies:
            for row in mapping.wrapped(body, self.outer, self.inner):
                rows.setdefault(str(row.get(self.key)), row)
        return list(rows.values())

    def records(
        self, rows: list[dict[str, Any]], a: datetime, b: datetime
    ) -> AsyncIterator[Record]:
        raise NotImplementedError

    async def read(
        self, partition: Partition, state: Mapping[str, Any] | None
    ) -> AsyncIterator[Record | Checkpoint]:
        start = parse_cursor(state, partition.since)
        end = partition.until
        if start >= end:
            return
        size = self.window_size()
        total = window_count(start, end, size)
        for i, (a, b) in enumerate(windows(start, end, size), 1):
            rows = await self.fetch_window(a, b)
            async for record in self.records(rows, a, b):
                yield record
            yield Checkpoint(state={"cursor": b.isoformat()}, done=i, total=total)


class MembersStream(_WindowedStream):
    """Shop CRM members via ``taobao.crm.members.increment.get.privy`` (ouid per shop)."""

    name = "members"
    record_type = MemberRecord
    api = "taobao.crm.members.increment.get.privy"
    outer, inner, key = "members", "basic_member", "ouid"
    total_key = "total_result"
    page_param = "current_page"
    start_param, end_param = "start_modify", "end_modify"
    reverse = False  # the CRM API documents no order; forward paging + de-duplication

    async def records(
        self, rows: list[dict[str, Any]], a: datetime, b: datetime
    ) -> AsyncIterator[Record]:
        for row in rows:
            record = mapping.map_member(row, shop_id=self.connector.shop_id, window_end=b)
            if record is not None:
                yield record


class OrdersStream(_WindowedStream):
    """Trades via ``taobao.trades.sold.increment.get`` (ids by modified time, reverse paged),
    then ``taobao.trade.fullinfo.get`` per trade for lines, amounts and buyer ids."""

    name = "orders"
    record_type = OrderRecord
    api = "taobao.trades.sold.increment.get"
    outer, inner, key = "trades", "trade", "tid"

    def extra_params(self) -> dict[str, Any]:
        return {"fields": TRADE_LIST_FIELDS, "use_has_next": False}

    async def records(
        self, rows: list[dict[str, Any]], a: datetime, b: datetime
    ) -> AsyncIterator[Record]:
        client = self.connector.client
        for row in rows:
            tid = mapping.tid_of(row)
            body = await client.call(
                "taobao.trade.fullinfo.get", {"tid": tid, "fields": TRADE_FULL_FIELDS}
            )
            trade = body.get("trade")
            if not isinstance(trade, dict):
                continue  # deleted between listing and detail: nothing to sync
            yield mapping.map_trade(
                trade, shop_id=self.connector.shop_id, app_key=self.connector.app_key
            )


class RefundsStream(_WindowedStream):
    """Refunds via ``taobao.refunds.receive.get``; only ``SUCCESS`` refunds become records."""

    name = "refunds"
    record_type = RefundRecord
    api = "taobao.refunds.receive.get"
    outer, inner, key = "refunds", "refund", "refund_id"

    def extra_params(self) -> dict[str, Any]:
        return {"fields": REFUND_FIELDS, "use_has_next": False}

    async def records(
        self, rows: list[dict[str, Any]], a: datetime, b: datetime
    ) -> AsyncIterator[Record]:
        for row in rows:
            record = mapping.map_refund(row)
            if record is not None:
                yield record
