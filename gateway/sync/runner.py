"""The sync runner: pull a channel's streams into the member graph, resumably.

For each stream (in the connector's order) and partition, the runner reads records from the
connector and commits them in batches. A batch ends at every :class:`~gateway.sync.Checkpoint`
(or every ``batch_size`` records) and commits **in one transaction**: the records' effects
(members, identities, orders, earning, refunds, points), the partition's new bookmark, and the
run's counters. So a crash at any moment loses nothing (the bookmark never covers uncommitted
records) and duplicates nothing (records re-read after the last bookmark are applied
idempotently). Bookmarks never pass the run's start (``until``): whatever changes while a sync
runs is read again by the next one.

Retries, rate limits and token refresh happen below, in :mod:`gateway.sync.http`; the runner
sees only what could not be recovered, marks the run ``failed`` with the reason, and keeps every
bookmark it committed. One run per channel at a time: a second one is refused while the first is
alive (its heartbeat is fresh and, on the same host, its process exists); a run that died is
marked ``abandoned`` by the next.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from gateway.errors import DomainError, InvalidInput, InvalidTransition
from gateway.ids import uuid7
from gateway.sql import upsert_insert
from gateway.storage.db import Tx
from gateway.storage.retry import is_transient
from gateway.storage.tables import SyncRun, SyncState
from gateway.sync import connections
from gateway.sync.apply import REJECTABLE, apply_records
from gateway.sync.contract import Checkpoint, Connector, ConnectorContext, Partition
from gateway.sync.errors import ConfigError, ConnectorError
from gateway.sync.http import PlatformHttp, RateLimiter, RetryPolicy
from gateway.sync.push import ApplyOutcome
from gateway.sync.records import Record, record_key
from gateway.sync.registry import ConnectorRegistry, default_registry

if TYPE_CHECKING:
    from gateway.hub import Hub

log = logging.getLogger("memberhub.sync")
RUN: Any = SyncRun.__table__  # type: ignore[attr-defined]
STATE: Any = SyncState.__table__  # type: ignore[attr-defined]
MAX_ERRORS = 200
DEFAULT_BACKFILL = timedelta(days=90)


class SyncAlreadyRunning(InvalidTransition):
    """Another sync of this channel is alive."""


@dataclass
class StreamStats:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    done: int | None = None
    total: int | None = None
    finished: bool = False

    def count(self, outcome: ApplyOutcome) -> None:
        setattr(self, outcome.action, getattr(self, outcome.action) + 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "done": self.done,
            "total": self.total,
            "finished": self.finished,
        }


@dataclass
class Progress:
    """A snapshot for progress displays (CLI bar, logs)."""

    run_id: uuid.UUID
    channel: str
    stream: str
    partition: str
    stats: StreamStats
    elapsed: float
    http: dict[str, Any]


@dataclass
class RunReport:
    run_id: uuid.UUID
    channel: str
    status: str
    until: datetime
    streams: dict[str, StreamStats]
    errors: list[dict[str, Any]]
    error_count: int
    http: dict[str, Any]
    message: str | None = None


@dataclass
class _Run:
    id: uuid.UUID
    tenant_id: uuid.UUID
    channel: str
    until: datetime
    started: float
    streams: dict[str, StreamStats] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    owner: str = ""

    def stats(self, http: PlatformHttp) -> dict[str, Any]:
        return {
            "streams": {k: v.as_dict() for k, v in self.streams.items()},
            "http": http.stats.as_dict(),
            "error_count": self.error_count,
            "owner": self.owner,
        }

    def error(self, stream: str, key: str | None, message: str, now: datetime) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(
                {"stream": stream, "key": key, "error": message, "at": now.isoformat()}
            )


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(owner: str) -> bool:
    """Is the process that owns a run still there? Only answerable on the same host."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clamp(state: Mapping[str, Any], until: datetime) -> dict[str, Any]:
    """Never store a cursor later than the run's start."""
    out = dict(state)
    cursor = out.get("cursor")
    if isinstance(cursor, str) and cursor:
        value = datetime.fromisoformat(cursor)
        if value.tzinfo is None:
            raise InvalidInput("a stream's state cursor must be timezone-aware", field="cursor")
        if value > until:
            out["cursor"] = until.isoformat()
    return out


class SyncRunner:
    """Runs syncs for one hub (database + settings + installed connectors and rules)."""

    def __init__(
        self,
        hub: Hub,
        *,
        registry: ConnectorRegistry | None = None,
        policy: RetryPolicy | None = None,
        batch_size: int = 500,
        clock: Callable[[], datetime] | None = None,
        stale_after: timedelta = timedelta(minutes=2),
        heartbeat_every: float = 15.0,
        rate_limit: float | None = None,
    ) -> None:
        self.hub = hub
        self._registry = registry
        self.policy = policy or RetryPolicy()
        self.batch_size = batch_size
        self.clock = clock or (lambda: datetime.now(UTC))
        self.stale_after = stale_after
        self.heartbeat_every = heartbeat_every
        # Requests/s for every connection; None: the connector's declared rate (or the
        # connection's own ``rate_limit`` setting where its schema offers one).
        self.rate_limit = rate_limit

    @property
    def registry(self) -> ConnectorRegistry:
        if self._registry is None:
            self._registry = default_registry()
        return self._registry

    # -- building connectors ------------------------------------------------------------------

    async def build(self, tenant_id: uuid.UUID, channel: str) -> Connector:
        """A connector instance for a configured channel (secrets resolved, HTTP wired)."""
        master = self.hub.settings.secret_key
        async with self.hub.db.tenant_tx(tenant_id, write=False) as tx:
            try:
                name, config = await connections.load_config(tx, channel, master)
            except ConfigError as exc:
                raise InvalidInput(str(exc), field="config") from exc
        cls = self.registry.get(name)
        if cls is None:
            raise InvalidInput(f"connector {name!r} is not installed", field="connector")
        rate = float(self.rate_limit or config.get("rate_limit") or cls.rate_limit)

        async def save_secrets(updates: Mapping[str, str]) -> None:
            async with self.hub.db.tenant_tx(tenant_id) as tx:
                await connections.save_secrets(tx, channel, updates, master)

        http = PlatformHttp(RateLimiter(rate, max(1, int(rate))), self.policy)
        context = ConnectorContext(
            channel=channel, http=http, save_secrets=save_secrets, clock=self.clock
        )
        return cls(config, context)

    # -- bookkeeping --------------------------------------------------------------------------

    async def _begin(
        self, tenant_id: uuid.UUID, channel: str, connector: str, trigger: str
    ) -> _Run:
        now = self.clock()
        run = _Run(uuid7(), tenant_id, channel, now, time.monotonic(), owner=_owner())
        async with self.hub.db.tenant_tx(tenant_id) as tx:
            running = (
                await tx.conn.execute(
                    select(RUN)
                    .where(
                        RUN.c.tenant_id == tenant_id,
                        RUN.c.channel == channel,
                        RUN.c.status == "running",
                    )
                    .with_for_update()
                )
            ).all()
            for r in running:
                owner = str((r.stats or {}).get("owner") or "")
                if r.heartbeat_at > now - self.stale_after and _alive(owner):
                    raise SyncAlreadyRunning(
                        f"a sync of {channel!r} is already running (run {r.id})"
                    )
                await tx.conn.execute(
                    update(RUN)
                    .where(RUN.c.tenant_id == tenant_id, RUN.c.id == r.id)
                    .values(status="abandoned", finished_at=now)
                )
            await tx.conn.execute(
                RUN.insert().values(
                    tenant_id=tenant_id,
                    id=run.id,
                    channel=channel,
                    connector=connector,
                    status="running",
                    trigger=trigger,
                    started_at=now,
                    until=now,
                    heartbeat_at=now,
                    stats={"owner": run.owner, "streams": {}},
                    errors=[],
                )
            )
        return run

    async def _touch(self, tx: Tx, run: _Run, http: PlatformHttp, **extra: Any) -> None:
        await tx.conn.execute(
            update(RUN)
            .where(RUN.c.tenant_id == run.tenant_id, RUN.c.id == run.id)
            .values(
                heartbeat_at=self.clock(), stats=run.stats(http), errors=list(run.errors), **extra
            )
        )

    async def load_state(
        self, tenant_id: uuid.UUID, channel: str, stream: str, partition: str
    ) -> dict[str, Any] | None:
        async with self.hub.db.tenant_tx(tenant_id, write=False) as tx:
            return await _state(tx, channel, stream, partition)

    # -- the run ------------------------------------------------------------------------------

    async def run(
        self,
        tenant_id: uuid.UUID,
        channel: str,
        *,
        trigger: str = "cli",
        streams: Sequence[str] | None = None,
        progress: Callable[[Progress], None] | None = None,
        connector: Connector | None = None,
    ) -> RunReport:
        """Sync ``channel`` for the tenant; returns when done (successfully or not)."""
        conn = connector or await self.build(tenant_id, channel)
        try:
            run = await self._begin(tenant_id, channel, conn.name, trigger)
        except BaseException:
            if connector is None:
                await conn.close()
            raise
        return await self._execute(run, conn, streams, progress, owns_connector=connector is None)

    async def start(
        self,
        tenant_id: uuid.UUID,
        channel: str,
        *,
        trigger: str = "api",
        streams: Sequence[str] | None = None,
    ) -> tuple[uuid.UUID, asyncio.Task[RunReport]]:
        """Begin a run and continue it in the background (GraphQL ``startSync``): the run
        exists, and is visible in ``syncRuns``, when this returns."""
        conn = await self.build(tenant_id, channel)
        try:
            run = await self._begin(tenant_id, channel, conn.name, trigger)
        except BaseException:
            await conn.close()
            raise
        task = asyncio.create_task(self._execute(run, conn, streams, None, owns_connector=True))
        return run.id, task

    async def _execute(
        self,
        run: _Run,
        conn: Connector,
        streams: Sequence[str] | None,
        progress: Callable[[Progress], None] | None,
        *,
        owns_connector: bool,
    ) -> RunReport:
        tenant_id, channel = run.tenant_id, run.channel
        heartbeat = asyncio.create_task(self._heartbeat(run, conn.http))
        status, message = "succeeded", None
        try:
            selected = [s for s in conn.streams() if streams is None or s.name in streams]
            if streams is not None:
                unknown = set(streams) - {s.name for s in conn.streams()}
                if unknown:
                    raise InvalidInput(f"unknown streams: {', '.join(sorted(unknown))}", "streams")
            since = self._since(conn, run.until)
            for stream in selected:
                stats = run.streams.setdefault(stream.name, StreamStats())
                for part in stream.partitions():
                    await self._partition(
                        run, conn, stream, Partition(part, run.until, since), stats, progress
                    )
                stats.finished = True
                if progress:
                    progress(self._progress(run, stream.name, "*", stats, conn.http))
        except ConnectorError as exc:
            status, message = "failed", f"{type(exc).__name__}: {exc}"
            run.error("*", None, message, self.clock())
        except DomainError as exc:
            status, message = "failed", str(exc)
            run.error("*", None, message, self.clock())
        except Exception as exc:
            log.exception("sync of %s failed", channel)
            status, message = "failed", f"internal error ({type(exc).__name__}); see the server log"
            run.error("*", None, message, self.clock())
            raise
        finally:
            heartbeat.cancel()
            try:
                async with self.hub.db.tenant_tx(tenant_id) as tx:
                    await self._touch(tx, run, conn.http, status=status, finished_at=self.clock())
            finally:
                if owns_connector:
                    await conn.close()
        return RunReport(
            run.id,
            channel,
            status,
            run.until,
            run.streams,
            run.errors,
            run.error_count,
            conn.http.stats.as_dict(),
            message,
        )

    def _since(self, conn: Connector, until: datetime) -> datetime:
        raw = conn.config.get("start_date")
        if isinstance(raw, str) and raw:
            value = datetime.fromisoformat(raw)
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        return until - DEFAULT_BACKFILL

    async def _heartbeat(self, run: _Run, http: PlatformHttp) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            try:
                async with self.hub.db.tenant_tx(run.tenant_id) as tx:
                    await self._touch(tx, run, http)
            except Exception:  # a missed heartbeat is not worth failing the sync for
                log.warning("sync heartbeat failed", exc_info=True)

    def _progress(
        self, run: _Run, stream: str, partition: str, stats: StreamStats, http: PlatformHttp
    ) -> Progress:
        return Progress(
            run.id,
            run.channel,
            stream,
            partition,
            stats,
            time.monotonic() - run.started,
            http.stats.as_dict(),
        )

    async def _partition(
        self,
        run: _Run,
        conn: Connector,
        stream: Any,
        partition: Partition,
        stats: StreamStats,
        progress: Callable[[Progress], None] | None,
    ) -> None:
        state = await self.load_state(run.tenant_id, run.channel, stream.name, partition.name)
        batch: dict[tuple[str, str], Record] = {}
        async for item in stream.read(partition, state):
            if isinstance(item, Checkpoint):
                if item.done is not None:
                    stats.done, stats.total = item.done, item.total
                await self._flush(run, conn, stream.name, partition.name, batch, item.state, stats)
                batch = {}
            else:
                stats.read += 1
                # Platforms repeat rows across pages; the latest copy of a key wins.
                batch[(item.record_type, record_key(item))] = item
                if len(batch) >= self.batch_size:
                    await self._flush(run, conn, stream.name, partition.name, batch, None, stats)
                    batch = {}
                else:
                    continue
            if progress:
                progress(self._progress(run, stream.name, partition.name, stats, conn.http))
        if batch:
            await self._flush(run, conn, stream.name, partition.name, batch, None, stats)
            if progress:
                progress(self._progress(run, stream.name, partition.name, stats, conn.http))

    async def _flush(
        self,
        run: _Run,
        conn: Connector,
        stream: str,
        partition: str,
        batch: Mapping[tuple[str, str], Record],
        state: Mapping[str, Any] | None,
        stats: StreamStats,
    ) -> None:
        records = list(batch.values())
        key = self.hub.tenant_key(run.tenant_id)
        rules = self.hub.rules
        bookmark = _clamp(state, run.until) if state is not None else None
        attempt = 0
        isolate = False
        while True:
            attempt += 1
            try:
                async with self.hub.db.tenant_tx(run.tenant_id) as tx:
                    if tx.is_postgres:
                        # Batch reads take arrays of hundreds of keys; PostgreSQL's cached generic
                        # plans for them were 10-100x slower than custom ones (backfill: 90 →
                        # 727 orders/s). Transaction-local: the API's hot paths keep their plans.
                        await tx.driver.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                    now = self.clock()
                    outcomes = await apply_records(
                        tx,
                        records,
                        channel=run.channel,
                        key=key,
                        rules=rules,
                        now=now,
                        isolate=isolate,
                    )
                    if bookmark is not None:
                        await _save_state(tx, run, stream, partition, bookmark, now)
                    # Counters are written with the data (a crash never leaves them ahead), and
                    # kept in memory only once that transaction has committed.
                    after = _Run(run.id, run.tenant_id, run.channel, run.until, run.started)
                    after.streams = {k: StreamStats(**vars(v)) for k, v in run.streams.items()}
                    after.errors, after.error_count = list(run.errors), run.error_count
                    after.owner = run.owner
                    counted = after.streams.setdefault(stream, StreamStats())
                    for o in outcomes:
                        counted.count(o)
                        if o.action == "rejected":
                            after.error(stream, o.key, o.error or "rejected", now)
                    await self._touch(tx, after, conn.http)
                for name in ("created", "updated", "unchanged", "rejected"):
                    setattr(stats, name, getattr(counted, name))
                run.errors, run.error_count = after.errors, after.error_count
                return
            except REJECTABLE:
                if isolate:
                    raise
                isolate = True
            except Exception as exc:  # wrapped by SQLAlchemy, or raw from asyncpg's hot paths
                if not is_transient(exc) or attempt >= 5:
                    raise
                await asyncio.sleep(0.05 * attempt)


async def _state(tx: Tx, channel: str, stream: str, partition: str) -> dict[str, Any] | None:
    r = (
        await tx.conn.execute(
            select(STATE.c.state).where(
                STATE.c.tenant_id == tx.tenant_id,
                STATE.c.channel == channel,
                STATE.c.stream == stream,
                STATE.c.partition == partition,
            )
        )
    ).scalar()
    return dict(r) if r is not None else None


async def _save_state(
    tx: Tx, run: _Run, stream: str, partition: str, state: Mapping[str, Any], now: datetime
) -> None:
    values = {
        "tenant_id": tx.tenant_id,
        "channel": run.channel,
        "stream": stream,
        "partition": partition,
        "state": dict(state),
        "run_id": run.id,
        "updated_at": now,
    }
    stmt = upsert_insert(tx, STATE).values(**values)
    await tx.conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[STATE.c.tenant_id, STATE.c.channel, STATE.c.stream, STATE.c.partition],
            set_={"state": values["state"], "run_id": run.id, "updated_at": now},
        )
    )
