"""Doudian streams: members (会员通 lookups of the buyers), orders and refunds (after-sales).

All page an update-time window with ``page`` starting at **0** (PLATFORMS §3.3, §10): stop at an
empty page or when ``(page + 1) * size >= total``; rows are de-duplicated by id within a window.
Windows are at most one day (the platform allows 90 days per query) on whole Unix seconds; each
window's end is the next one's start, so a row updated on the boundary second is read by both
(whether the platform's end bound is inclusive or not) and the runner applies it idempotently.
The checkpoint after a window is its end, never later than ``Partition.until``.

Offset paging over a moving set can skip rows: an order updated while we page leaves the window
(its new update time is after the sync start) and every later row moves up one place. The
``total`` of each page is compared with the first page's; when it changes the window is paged
again from 0 (rows already yielded are not yielded twice).

There is no API that lists 会员通 members, so the ``members`` stream discovers them from orders:
it pages the same update-time windows of ``order.searchList`` and sends the buyers'
``doudian_open_id`` s not asked about yet in this read, at most 10 per call, to
``member.mGetMemberInfoByOpenIdList``. It runs before ``orders`` (streams run members → orders →
refunds), so an order's open id already resolves to the member with their union id and phone.
Each stream yields one record type (what the conformance kit and the runner expect); the price
is paging the order windows twice.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from connectors.douyin import mapping
from gateway.sync.contract import Checkpoint, Partition, Stream, parse_cursor
from gateway.sync.errors import PlatformError
from gateway.sync.records import MemberRecord, OrderRecord, Record, RefundRecord

if TYPE_CHECKING:
    from connectors.douyin.client import DouyinClient
    from connectors.douyin.connector import DouyinConnector

DAY = 86_400
MEMBER_BATCH = 10  # member.mGetMemberInfoByOpenIdList: open_id_list ≤ 10
MAX_SCANS = 5  # times a window is paged again because its total kept changing


def second_windows(start: datetime, until: datetime, size: int = DAY) -> list[tuple[int, int]]:
    """Windows ``(a, b)`` in Unix seconds covering ``[start, until]``, each ≤ ``size``."""
    a, u = math.floor(start.timestamp()), math.floor(until.timestamp())
    if a >= u:
        return []
    bounds = [*range(a, u, size), u]
    return list(itertools.pairwise(bounds))


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class _WindowedStream(Stream):
    api: ClassVar[str]
    list_key: ClassVar[str]
    connector: DouyinConnector

    @property
    def client(self) -> DouyinClient:
        return self.connector.client

    @property
    def page_size(self) -> int:
        return max(1, min(100, int(self.connector.config.get("page_size") or 100)))

    def window_params(self, a: int, b: int) -> dict[str, Any]:
        raise NotImplementedError

    def row_key(self, row: Mapping[str, Any]) -> str:
        raise NotImplementedError

    async def pages(self, a: int, b: int) -> AsyncIterator[list[Mapping[str, Any]]]:
        """The window's rows, page by page, each row once (by id)."""
        size = self.page_size
        yielded: set[str] = set()
        for _ in range(MAX_SCANS):
            first_total: int | None = None
            page = 0
            moved = False
            while True:
                params = {**self.window_params(a, b), "page": page, "size": size}
                data = await self.client.call(self.api, params, page=page)
                total = int(data.get("total") or 0)
                rows = [r for r in data.get(self.list_key) or () if isinstance(r, Mapping)]
                if first_total is None:
                    first_total = total
                elif total != first_total:
                    moved = True
                    break
                fresh = []
                for row in rows:
                    key = self.row_key(row)
                    if key not in yielded:
                        yielded.add(key)
                        fresh.append(row)
                if fresh:
                    yield fresh
                if not rows or (page + 1) * size >= total:
                    break
                page += 1
            if not moved:
                return
        raise PlatformError(
            f"douyin {self.api}: the window {_at(a).isoformat()}..{_at(b).isoformat()} kept "
            f"changing while it was paged ({MAX_SCANS} attempts)"
        )

    async def read(
        self, partition: Partition, state: Mapping[str, Any] | None
    ) -> AsyncIterator[Record | Checkpoint]:
        cursor = parse_cursor(state, partition.since)
        if cursor >= partition.until:
            return
        spans = second_windows(cursor, partition.until)
        for i, (a, b) in enumerate(spans):
            async for record in self.read_window(a, b):
                yield record
            yield Checkpoint(state={"cursor": _at(b).isoformat()}, done=i + 1, total=len(spans))

    def read_window(self, a: int, b: int) -> AsyncIterator[Record]:
        raise NotImplementedError


class _OrderWindows(_WindowedStream):
    """``order.searchList`` by update time, ascending."""

    api = "order.searchList"
    list_key = "shop_order_list"

    def window_params(self, a: int, b: int) -> dict[str, Any]:
        return {
            "update_time_start": a,
            "update_time_end": b,
            "order_by": "update_time",
            "order_asc": True,
        }

    def row_key(self, row: Mapping[str, Any]) -> str:
        return str(row.get("order_id"))


class MembersStream(_OrderWindows):
    """会员通 members of the shop's buyers, discovered from ``order.searchList``.

    For each page of orders, the buyers' ``doudian_open_id`` s not asked about yet in this read
    go to ``member.mGetMemberInfoByOpenIdList`` (at most 10 per call). A member's ``updated_at``
    is the update time of the latest order of theirs on that page.
    """

    name = "members"
    record_type = MemberRecord

    def __init__(self, connector: DouyinConnector) -> None:
        super().__init__(connector)
        self._asked: set[str] = set()  # open ids already sent to the member API in this read

    async def read(
        self, partition: Partition, state: Mapping[str, Any] | None
    ) -> AsyncIterator[Record | Checkpoint]:
        self._asked = set()
        async for item in super().read(partition, state):
            yield item

    async def read_window(self, a: int, b: int) -> AsyncIterator[Record]:
        async for rows in self.pages(a, b):
            for member in await self.members(rows):
                yield member

    async def members(self, rows: list[Mapping[str, Any]]) -> list[MemberRecord]:
        """Member records of the buyers on a page not asked about yet in this read."""
        seen_at: dict[str, datetime] = {}
        for row in rows:
            open_id = row.get("doudian_open_id")
            updated = mapping.from_unix(row.get("update_time"))
            if not isinstance(open_id, str) or not open_id or updated is None:
                continue
            if open_id not in self._asked:
                seen_at[open_id] = max(updated, seen_at.get(open_id, updated))
        conn = self.connector
        out: list[MemberRecord] = []
        pending = list(seen_at)
        for i in range(0, len(pending), MEMBER_BATCH):
            batch = pending[i : i + MEMBER_BATCH]
            data = await self.client.call(
                "member.mGetMemberInfoByOpenIdList",
                {"app_id": conn.member_app_id, "open_id_list": batch},
            )
            for info in data.get("member_infos") or ():
                if not isinstance(info, Mapping) or info.get("open_id") not in seen_at:
                    continue
                record = mapping.member_record(
                    info,
                    open_id_scope=conn.open_id_scope,
                    union_id_scope=conn.union_id_scope,
                    updated_at=seen_at[str(info["open_id"])],
                )
                if record is not None:
                    out.append(record)
            self._asked.update(batch)
        return out


class OrdersStream(_OrderWindows):
    """Orders by update time; buyer = ``doudian_open_id`` (weak ``douyin_open_id``)."""

    name = "orders"
    record_type = OrderRecord

    async def read_window(self, a: int, b: int) -> AsyncIterator[Record]:
        scope = self.connector.open_id_scope
        async for rows in self.pages(a, b):
            for row in rows:
                yield mapping.order_record(row, open_id_scope=scope)


class RefundsStream(_WindowedStream):
    """``afterSale.List`` by update time; only succeeded refunds (``refund_status`` 3).

    Assumed shape (not in PLATFORMS.md): request ``update_start_time`` / ``update_end_time``
    (Unix seconds), ``page`` from 0, ``size`` ≤ 100; answer ``data.items[].aftersale_info`` with
    ``aftersale_id``, ``order_id`` (the shop order id), ``refund_amount`` (fen), ``refund_status``
    and ``update_time``, plus ``total`` / ``page`` / ``size``.
    """

    name = "refunds"
    record_type = RefundRecord
    api = "afterSale.List"
    list_key = "items"

    def window_params(self, a: int, b: int) -> dict[str, Any]:
        return {"update_start_time": a, "update_end_time": b}

    def row_key(self, row: Mapping[str, Any]) -> str:
        info = row.get("aftersale_info")
        return str((info if isinstance(info, Mapping) else row).get("aftersale_id"))

    async def read_window(self, a: int, b: int) -> AsyncIterator[Record]:
        async for rows in self.pages(a, b):
            for row in rows:
                record = mapping.refund_record(row)
                if record is not None:
                    yield record
