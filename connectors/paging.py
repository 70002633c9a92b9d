"""Windowed, page-numbered reads shared by the JD and Youzan streams.

Both platforms list rows changed within a time window, page by page from 1 up to a page cap, and
both shift rows between pages while the pager walks (a row updated mid-read moves, so a page may
repeat one already served and another row is skipped). :class:`WindowedStream` reads consecutive
``[a, b)`` windows and checkpoints after each; within a window it halves the window until its
total fits under the cap, de-duplicates rows by primary key, asks again for a page that only
repeats earlier rows, and reads the window once more if rows are still missing at the end.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from gateway.sync.contract import Checkpoint, Partition, Stream, parse_cursor, window_count, windows
from gateway.sync.errors import PlatformError
from gateway.sync.records import Record

MAX_REFETCH = 3
MAX_PASSES = 3


class WindowedStream(Stream):
    """A stream read in ``[a, b)`` windows of a time key, paged from 1 up to ``max_page``.

    Subclasses set ``platform`` (for messages) and ``format_time`` (the platform's time format)
    and implement :meth:`fetch`, :meth:`key`, :meth:`row_time` and :meth:`to_record`.
    """

    window: timedelta = timedelta(days=1)
    platform: ClassVar[str]
    format_time: ClassVar[Callable[[datetime], str]]

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"memberhub.connectors.{self.connector.name}")

    @property
    def page_size(self) -> int:
        return int(self.connector.config.get("page_size", 100))

    @property
    def max_page(self) -> int:
        return int(self.connector.max_page)  # type: ignore[attr-defined]

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
        """Where to start reading from the bookmark (a stream may look back further)."""
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
                # The platforms' bounds are whole seconds and inclusive: keep exactly [a, b).
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
                fmt = type(self).format_time
                raise PlatformError(
                    f"{total} rows changed within {fmt(a)}…{fmt(b)}: more than "
                    f"{self.platform}'s page cap ({self.max_page} pages) and the window cannot "
                    "shrink"
                )
            mid = a + (b - a) / 2
            self.log.info("%s: %d rows in one window; splitting at %s", self.name, total, mid)
            return {**await self._rows(a, mid), **await self._rows(mid, b)}
        seen: dict[str, Mapping[str, Any]] = {}
        for attempt in range(MAX_PASSES):
            if attempt:
                self.log.info("%s: window lost rows to page shifts; reading it again", self.name)
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
