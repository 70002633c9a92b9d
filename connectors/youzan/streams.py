"""Youzan streams: ``orders`` (``youzan.trades.sold.get/4.0.4`` on the ``update_time``
window) and ``refunds`` (``youzan.trade.refund.search/3.0.0``, shape ASSUMED — see mapping).

Windows of at most one day, a checkpoint after each. ``page_no`` runs from 1 and is capped at
100 by the platform, so a window whose total needs more pages is halved until it fits. The same
order can come back on two pages when orders change while paging (§5.2): rows are de-duplicated
by ``tid``; a page that only repeats rows already seen is fetched again, and a window that still
lacks rows at the end is read once more.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from connectors.youzan.mapping import format_time, order_record, parse_time, refund_record
from gateway.sync.contract import Checkpoint, Partition, Stream, parse_cursor, window_count, windows
from gateway.sync.errors import PlatformError
from gateway.sync.records import OrderRecord, Record, RefundRecord

if TYPE_CHECKING:
    from connectors.youzan.connector import YouzanConnector

log = logging.getLogger("memberhub.connectors.youzan")
MAX_REFETCH = 3
MAX_PASSES = 3


class WindowedStream(Stream):
    window: timedelta = timedelta(days=1)
    connector: YouzanConnector

    @property
    def page_size(self) -> int:
        return int(self.connector.config.get("page_size", 100))

    @property
    def max_page(self) -> int:
        return self.connector.max_page

    @abc.abstractmethod
    async def fetch(
        self, a: datetime, b: datetime, page: int
    ) -> tuple[list[Mapping[str, Any]], int]: ...

    @abc.abstractmethod
    def key(self, row: Mapping[str, Any]) -> str: ...

    @abc.abstractmethod
    def row_time(self, row: Mapping[str, Any]) -> datetime | None: ...

    @abc.abstractmethod
    def to_record(self, row: Mapping[str, Any]) -> Record | None: ...

    async def read(
        self, partition: Partition, state: Mapping[str, Any] | None
    ) -> AsyncIterator[Record | Checkpoint]:
        start = parse_cursor(state, partition.since)
        until = partition.until
        if start >= until:
            return
        total = window_count(start, until, self.window)
        for i, (a, b) in enumerate(windows(start, until, self.window), 1):
            for row in (await self._rows(a, b)).values():
                at = self.row_time(row)
                # Bounds are whole seconds and inclusive on the platform: keep exactly [a, b).
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
                    f"Youzan's page cap ({self.max_page} pages) and the window cannot shrink"
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
                    refetched += 1
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
