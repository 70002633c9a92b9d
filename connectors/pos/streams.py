"""The ``pos`` connector's streams.

Both streams are *mixed*: a store's receipts interleave sales, voids and returns, so each stream
yields :class:`~gateway.sync.OrderRecord` (sales, voids) **and**
:class:`~gateway.sync.RefundRecord` (returns) — orders before refunds within each safe point, so a
return in the same window or batch finds its sale. ``record_types`` lists both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from connectors.pos.csv_format import CsvFormatError, read_batch, ready_batches
from connectors.pos.mapping import (
    BlindReturn,
    TicketError,
    records_in_order,
    ticket_from_json,
    ticket_records,
)
from gateway.sync import (
    Checkpoint,
    OrderRecord,
    Partition,
    Record,
    RecordError,
    RefundRecord,
    Stream,
    parse_cursor,
    window_count,
    windows,
)
from gateway.sync.errors import PlatformError

if TYPE_CHECKING:
    from connectors.pos.connector import PosConnector

log = logging.getLogger("memberhub.connectors.pos")
WINDOW = timedelta(days=1)
"""The Pospal ticket query accepts at most 24 hours per call."""
SECOND = timedelta(seconds=1)


def _ceil_second(moment: datetime) -> datetime:
    if moment.microsecond == 0:
        return moment
    return moment.replace(microsecond=0) + SECOND


class TicketsStream(Stream):
    """Receipts from the cloud POS API (``queryTicketPages``), in ≤ 1-day windows on the
    ticket's closing time. Tickets are immutable once closed (a correction is a new return or
    void receipt), so the closing time is a sound replication key. ``lookback_minutes`` re-reads
    the end of the previous window for tills that upload late (offline tills)."""

    name = "tickets"
    record_type = OrderRecord
    record_types: ClassVar[tuple[type, ...]] = (OrderRecord, RefundRecord)
    replication_key = "updated_at"
    connector: PosConnector

    async def read(
        self, partition: Partition, state: Mapping[str, Any] | None
    ) -> AsyncIterator[Record | Checkpoint]:
        conn = self.connector
        # The configured first store day (GMT+8 midnight) wins over the runner's generic horizon,
        # which reads a date-only start_date in UTC and would skip that day's first 8 hours.
        horizon = conn.start_date()
        default = horizon if horizon is not None else partition.since
        cursor = parse_cursor(state, default)
        end = partition.until
        if cursor >= end:
            return
        start = cursor - timedelta(minutes=int(conn.config.get("lookback_minutes") or 0))
        scope = conn.brand_scope
        total = window_count(start, end, WINDOW)
        for done, (a, b) in enumerate(windows(start, end, WINDOW), 1):
            # [a, b) in whole seconds: tickets closed at a <= t < b (the API's range is inclusive)
            first, last = _ceil_second(a), _ceil_second(b) - SECOND
            records: list[Record] = []
            if first <= last:
                raw = await conn.client.tickets(first, last)
                raw.sort(key=lambda t: (str(t.get("datetime")), str(t.get("sn"))))
                for obj in raw:
                    try:
                        records.extend(ticket_records(ticket_from_json(obj), scope))
                    except BlindReturn as exc:
                        log.warning("skipping %s", exc)
                    except (TicketError, RecordError) as exc:
                        raise PlatformError(f"Pospal sent a malformed ticket: {exc}") from exc
            for record in records_in_order(records):
                yield record
            yield Checkpoint(state={"cursor": b.isoformat()}, done=done, total=total)


class CsvFilesStream(Stream):
    """Batches dropped in ``drop_dir`` (:mod:`connectors.pos.csv_format`). The bookmark is the
    list of batches already applied (``state = {"files": [...], "cursor": <scan time>}``),
    checkpointed after each batch; a malformed batch stops the stream with a
    :class:`~gateway.sync.errors.PlatformError` naming file and line, nothing of it applied."""

    name = "csv_files"
    record_type = OrderRecord
    record_types: ClassVar[tuple[type, ...]] = (OrderRecord, RefundRecord)
    replication_key = None
    connector: PosConnector

    async def read(
        self, partition: Partition, state: Mapping[str, Any] | None
    ) -> AsyncIterator[Record | Checkpoint]:
        conn = self.connector
        directory = Path(str(conn.config["drop_dir"]))
        if not await asyncio.to_thread(directory.is_dir):
            raise PlatformError(f"drop_dir {directory} is not a readable directory")
        ready = await asyncio.to_thread(ready_batches, directory)
        present = {name.base for name in ready}
        applied = set((state or {}).get("files") or ()) & present  # forget archived batches
        pending = [name for name in ready if name.base not in applied]
        cursor = min(partition.until, conn.now()).isoformat()
        if not pending:
            yield Checkpoint(state={"files": sorted(applied), "cursor": cursor}, done=0, total=0)
            return
        for done, name in enumerate(pending, 1):
            try:
                tickets = await asyncio.to_thread(read_batch, directory, name)
                records: list[Record] = []
                for ticket in tickets:
                    records.extend(ticket_records(ticket, conn.brand_scope))
            except CsvFormatError as exc:
                raise PlatformError(f"malformed POS batch: {exc}", code="csv_format") from exc
            except (TicketError, RecordError) as exc:
                raise PlatformError(
                    f"malformed POS batch {name.base}: {exc}", code="csv_format"
                ) from exc
            except OSError as exc:
                raise PlatformError(f"cannot read POS batch {name.base}: {exc}") from exc
            for record in records_in_order(records):
                yield record
            applied.add(name.base)
            yield Checkpoint(
                state={"files": sorted(applied), "cursor": cursor}, done=done, total=len(pending)
            )


__all__ = ["CsvFilesStream", "TicketsStream"]
