"""The connector contract (ARCHITECTURE §7): what a partner implements.

A **connector** is a class registered through the ``register_connectors`` hook. The gateway makes
one instance per configured channel connection::

    connector = MyConnector(config, context)
    await connector.check()          # never raises: CheckResult(ok, message)
    for stream in connector.streams():
        for name in stream.partitions():
            async for item in stream.read(Partition(name, until=sync_start), state):
                ...                  # records, and Checkpoint(state) after each safe point

- ``config_schema`` is a JSON Schema (draft 2020-12) for the connection's configuration. Fields
  marked ``"writeOnly": true`` are secrets: stored encrypted, never returned or logged, and may be
  given as a reference (``"env:TMALL_APP_SECRET"``) resolved when the connector is built.
- A **stream** yields canonical records (:mod:`gateway.sync.records`) of one type, and
  :class:`Checkpoint` objects. The runner commits the records read so far *and* the checkpoint's
  state in one transaction, so a crash resumes from the last checkpoint with nothing lost; records
  replayed after a crash are applied idempotently (same primary key, same effect).
- ``state`` is the connector's own JSON object. By convention ``state["cursor"]`` is the
  bookmark (an ISO-8601 instant on the replication key); the runner never stores a cursor later
  than the sync's start (``Partition.until``), so changes made while a sync runs are read again by
  the next one.
- All HTTP goes through ``context.http`` (:class:`~gateway.sync.http.PlatformHttp`): rate limits,
  retries and token refresh are the runner's, not the connector's.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from gateway.identifiers import IdentifierKind
from gateway.sync.http import PlatformHttp
from gateway.sync.records import Record


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class Checkpoint:
    """A safe point in a stream: everything yielded before it may be committed with ``state``.

    ``done`` / ``total`` (any unit: windows, pages) drive the progress bar; give them when known.
    """

    state: Mapping[str, Any]
    done: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class Partition:
    """One independently bookmarked slice of a stream (a shop, a store, or ``"default"``).

    ``until`` is the sync's start: read nothing modified after it. ``since`` is where a first
    sync starts (the connection's backfill horizon) when there is no state yet.
    """

    name: str
    until: datetime
    since: datetime


@dataclass
class ConnectorContext:
    """What the gateway hands a connector instance."""

    channel: str
    http: PlatformHttp
    save_secrets: Callable[[Mapping[str, str]], Awaitable[None]]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


class Connector(abc.ABC):
    """Base class for channel connectors. Subclasses set the class attributes and implement
    :meth:`check` and :meth:`streams` (and :meth:`refresh_token` when tokens expire)."""

    name: ClassVar[str]
    """Connector type name, unique among installed connectors (``tmall``, ``pos``)."""
    title: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    config_schema: ClassVar[Mapping[str, Any]] = {"type": "object"}
    rate_limit: ClassVar[float] = 10.0
    """Requests per second the platform tolerates for one app (a connection may lower it)."""
    identifier_kinds: ClassVar[Sequence[IdentifierKind]] = ()
    """Identifier kinds this connector's records use that the core does not define."""

    def __init__(self, config: Mapping[str, Any], context: ConnectorContext) -> None:
        self.config = dict(config)
        self.context = context

    @property
    def http(self) -> PlatformHttp:
        return self.context.http

    def now(self) -> datetime:
        return self.context.clock()

    @abc.abstractmethod
    async def check(self) -> CheckResult:
        """Can we reach the platform with these credentials? Must not raise."""

    @abc.abstractmethod
    def streams(self) -> Sequence[Stream]:
        """The streams to sync, in the order they should run (members before orders before
        refunds, so a refund finds its order)."""

    async def refresh_token(self) -> None:
        """Obtain a new access token and persist it with ``context.save_secrets``. The default
        cannot refresh, so a :class:`~gateway.sync.errors.TokenExpired` ends the run."""
        from gateway.sync.errors import AuthFailed

        raise AuthFailed(f"{self.name} cannot refresh its access token; reconfigure the channel")

    async def close(self) -> None:
        await self.http.close()


class Stream(abc.ABC):
    """One kind of record from one platform API."""

    name: ClassVar[str]
    record_type: ClassVar[type[Record]]
    """The stream's main record type (its primary key is the stream's)."""
    record_types: ClassVar[tuple[type[Record], ...]] = ()
    """Every record type the stream yields when it interleaves several (POS receipts: sales and
    returns); empty means just ``record_type``. Within one safe point a stream yields records a
    later one depends on after it (an order before its refund)."""
    replication_key: ClassVar[str | None] = "updated_at"
    """The record field the bookmark follows; ``None`` for full-refresh streams."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    @property
    def primary_key(self) -> str:
        return self.record_type.primary_key

    @property
    def yields(self) -> tuple[type[Record], ...]:
        return self.record_types or (self.record_type,)

    def partitions(self) -> Sequence[str]:
        return ("default",)

    @abc.abstractmethod
    def read(
        self, partition: Partition, state: Mapping[str, Any] | None
    ) -> AsyncIterator[Record | Checkpoint]:
        """Yield records changed since ``state`` (or ``partition.since``) up to
        ``partition.until``, with a :class:`Checkpoint` after each window or page."""


def parse_cursor(state: Mapping[str, Any] | None, default: datetime) -> datetime:
    """The bookmark in ``state["cursor"]``, or ``default`` when there is none."""
    if not state or not state.get("cursor"):
        return default
    value = datetime.fromisoformat(str(state["cursor"]))
    if value.tzinfo is None:
        raise ValueError("state cursor must be timezone-aware")
    return value


def windows(start: datetime, end: datetime, size: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """Consecutive ``[a, b)`` windows of at most ``size`` covering ``[start, end)``."""
    a = start
    while a < end:
        b = min(end, a + size)
        yield a, b
        a = b


def window_count(start: datetime, end: datetime, size: timedelta) -> int:
    if end <= start:
        return 0
    return -(-(end - start) // size)


def secret_fields(schema: Mapping[str, Any]) -> frozenset[str]:
    """Top-level properties marked ``writeOnly`` (secrets) in a config schema."""
    props = schema.get("properties") or {}
    return frozenset(k for k, v in props.items() if isinstance(v, Mapping) and v.get("writeOnly"))
