"""GraphQL for channel sync: installed connectors, a tenant's channels, sync runs, and the
``configureChannel`` / ``startSync`` mutations (admin keys).

Secrets are write-only here as everywhere: ``configureChannel`` accepts them, and ``Channel``
only says which are set (or which ``env:`` reference supplies them).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Union

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.errors import DomainError, InvalidInput
from gateway.sync import connections, runs
from gateway.sync.contract import secret_fields
from gateway.tenancy import Scope
from schema.context import RequestContext, ctx_of
from schema.errors import (
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
    allowed_error,
)
from schema.relay import (
    Connection,
    build_connection,
    check_first,
    decode_id,
    decode_uuid_cursor,
    encode_cursor,
    global_id,
)


@strawberry.enum(
    description="Where a sync run is: RUNNING, then SUCCEEDED / FAILED; ABANDONED "
    "when its process died (the next run resumes from its bookmarks)."
)
class SyncRunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABANDONED = "abandoned"


@strawberry.type(
    description="A connector installed on this gateway (entry point `memberhub.connectors`)."
)
class ConnectorInfo:
    name: str = strawberry.field(description="The name a channel is configured with.")
    title: str = strawberry.field(description="Human-readable name.")
    version: str = strawberry.field(description="The connector's version.")
    config_schema: JSON = strawberry.field(
        description="JSON Schema of the configuration; `writeOnly` properties are secrets."
    )
    secret_fields: list[str] = strawberry.field(description="Configuration keys that are secrets.")
    webhooks: list[str] = strawberry.field(
        description="Push endpoints: /channels/{tenant}/{channel}/hooks/{name}."
    )


@strawberry.type(description="A channel connection of this tenant.")
class Channel:
    channel: str = strawberry.field(description="The tenant's name for it (e.g. `tmall`).")
    connector: str = strawberry.field(description="The connector it uses.")
    config: JSON = strawberry.field(description="Non-secret configuration.")
    secrets: JSON = strawberry.field(
        description='Secret fields that are set: `"set"`, or the `env:` reference used.'
    )
    enabled: bool = strawberry.field(
        description="Disabled channels neither sync nor accept pushes."
    )
    updated_at: datetime = strawberry.field(description="Last configuration change.")


@strawberry.type(description="Counters of one stream in a run.")
class SyncStreamStats:
    stream: str = strawberry.field(description="Stream name.")
    read: int = strawberry.field(description="Records read from the platform.")
    created: int = strawberry.field(description="Records that created an order/member/refund.")
    updated: int = strawberry.field(description="Records that changed something existing.")
    unchanged: int = strawberry.field(description="Re-read records that changed nothing.")
    rejected: int = strawberry.field(description="Records refused (see `errors`).")
    done: int | None = strawberry.field(description="Units (windows, pages) committed.")
    total: int | None = strawberry.field(description="Units expected, when known.")
    finished: bool = strawberry.field(description="The stream completed in this run.")
    progress: float | None = strawberry.field(description="done / total, 0-1, when known.")


@strawberry.type(description="HTTP counters of a run (the platform's side).")
class SyncHttpStats:
    requests: int = strawberry.field(description="HTTP requests sent.")
    retries: int = strawberry.field(
        description="Requests retried (rate limits and transient faults)."
    )
    rate_limited: int = strawberry.field(description="Retries after the platform rate-limited us.")
    transient: int = strawberry.field(description="Retries after 5xx, timeouts or broken bodies.")
    token_refreshes: int = strawberry.field(description="Access tokens refreshed.")


@strawberry.type(description="A record refused or a failure in a run.")
class SyncError:
    stream: str = strawberry.field(description="Stream (or `*` for the run itself).")
    key: str | None = strawberry.field(description="The record's primary key, if any.")
    message: str = strawberry.field(description="What went wrong.")
    at: datetime = strawberry.field(description="When.")


@strawberry.type(description="One sync of one channel.")
class SyncRun:
    row: strawberry.Private[runs.RunRow]

    @strawberry.field(description="Global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(global_id("SyncRun", self.row.id))

    @strawberry.field(description="The channel synced.")
    def channel(self) -> str:
        return self.row.channel

    @strawberry.field(description="The connector used.")
    def connector(self) -> str:
        return self.row.connector

    @strawberry.field(description="Where the run is.")
    def status(self) -> SyncRunStatus:
        return SyncRunStatus(self.row.status)

    @strawberry.field(description="cli, api or schedule.")
    def trigger(self) -> str:
        return self.row.trigger

    @strawberry.field(description="When it started.")
    def started_at(self) -> datetime:
        return self.row.started_at

    @strawberry.field(description="No bookmark of this run passes this instant (its start).")
    def until(self) -> datetime:
        return self.row.until

    @strawberry.field(description="Last sign of life of the process running it.")
    def heartbeat_at(self) -> datetime:
        return self.row.heartbeat_at

    @strawberry.field(description="When it ended (null while running).")
    def finished_at(self) -> datetime | None:
        return self.row.finished_at

    @strawberry.field(description="Per-stream counters, in sync order.")
    def streams(self) -> list[SyncStreamStats]:
        out = []
        for name, s in (self.row.stats.get("streams") or {}).items():
            total, done = s.get("total"), s.get("done")
            progress = (
                1.0 if s.get("finished") else (min(1.0, (done or 0) / total) if total else None)
            )
            out.append(
                SyncStreamStats(
                    stream=name,
                    read=s.get("read", 0),
                    created=s.get("created", 0),
                    updated=s.get("updated", 0),
                    unchanged=s.get("unchanged", 0),
                    rejected=s.get("rejected", 0),
                    done=done,
                    total=total,
                    finished=bool(s.get("finished")),
                    progress=progress,
                )
            )
        return out

    @strawberry.field(description="HTTP counters.")
    def http(self) -> SyncHttpStats:
        h = self.row.stats.get("http") or {}
        return SyncHttpStats(
            requests=h.get("requests", 0),
            retries=h.get("retries", 0),
            rate_limited=h.get("rate_limited", 0),
            transient=h.get("transient", 0),
            token_refreshes=h.get("token_refreshes", 0),
        )

    @strawberry.field(
        description="How many errors the run recorded (`errors` keeps the first 200)."
    )
    def error_count(self) -> int:
        return int(self.row.stats.get("error_count") or len(self.row.errors))

    @strawberry.field(description="Refused records and failures, oldest first.")
    def errors(self, first: int = 20) -> list[SyncError]:
        check_first(first, maximum=200)
        return [
            SyncError(
                stream=e.get("stream", ""),
                key=e.get("key"),
                message=e.get("error", ""),
                at=datetime.fromisoformat(e["at"]),
            )
            for e in self.row.errors[:first]
        ]


def _read_ctx(info: Info) -> RequestContext:
    ctx = ctx_of(info)
    ctx.require(Scope.READ)
    return ctx


@strawberry.type
class SyncQueries:
    @strawberry.field(description="Connectors installed on this gateway.")
    def connectors(self, info: Info) -> list[ConnectorInfo]:
        ctx = _read_ctx(info)
        registry = ctx.hub.sync.registry
        out = []
        for name in registry.names():
            cls = registry.get(name)
            assert cls is not None
            out.append(
                ConnectorInfo(
                    name=name,
                    title=cls.title or name,
                    version=cls.version,
                    config_schema=dict(cls.config_schema),
                    secret_fields=sorted(secret_fields(cls.config_schema)),
                    webhooks=[h.name for h in registry.webhooks(name)],
                )
            )
        return out

    @strawberry.field(description="This tenant's channel connections.")
    async def channels(self, info: Info) -> list[Channel]:
        ctx = _read_ctx(info)
        rows = await ctx.read(connections.list_connections, ctx.hub.settings.secret_key)
        return [
            Channel(
                channel=c.channel,
                connector=c.connector,
                config=c.config,
                secrets=c.secrets,
                enabled=c.enabled,
                updated_at=c.updated_at,
            )
            for c in rows
        ]

    @strawberry.field(description="Sync runs, newest first.")
    async def sync_runs(
        self,
        info: Info,
        channel: str | None = None,
        status: SyncRunStatus | None = None,
        first: Annotated[int, strawberry.argument(description="Page size, 0-100.")] = 20,
        after: str | None = None,
    ) -> Connection[SyncRun]:
        ctx = _read_ctx(info)
        check_first(first)
        after_id = decode_uuid_cursor("syncrun", after)
        rows = await ctx.read(
            runs.list_runs,
            first=first,
            after=after_id,
            channel=channel,
            status=status.value if status is not None else None,
        )
        return build_connection(
            rows,
            first,
            wrap=lambda r: SyncRun(row=r),  # type: ignore[arg-type]
            cursor_of=lambda r: encode_cursor("syncrun", str(r.id)),  # type: ignore[attr-defined]
            has_previous=after is not None,
        )

    @strawberry.field(description="A sync run by id.")
    async def sync_run(self, info: Info, id: strawberry.ID) -> SyncRun | None:
        ctx = _read_ctx(info)
        run_id = decode_id(id, "SyncRun")
        if run_id is None:
            return None
        row = await ctx.read(runs.get_run, run_id)
        return None if row is None else SyncRun(row=row)


@strawberry.input(description="Create or update a channel connection.")
class ConfigureChannelInput:
    channel: str = strawberry.field(description="The tenant's name for it (letters, digits, _.:-).")
    connector: str = strawberry.field(description="An installed connector (see `connectors`).")
    config: JSON = strawberry.field(
        description="Configuration per the connector's schema. Secret fields left out keep "
        "their stored values; a secret may be given as an `env:NAME` reference."
    )
    enabled: bool = strawberry.field(default=True, description="Store it enabled (default).")


@strawberry.input(description="Start a sync of a channel in the background.")
class StartSyncInput:
    channel: str = strawberry.field(description="A configured channel.")
    streams: list[str] | None = strawberry.field(
        default=None, description="Only these streams (default: all, in order)."
    )


@strawberry.type(description="The channel as stored.")
class ConfigureChannelPayload:
    channel: Channel = strawberry.field(description="The stored channel (secrets masked).")


@strawberry.type(description="The run that was started; poll `syncRun` for progress.")
class StartSyncPayload:
    run: SyncRun = strawberry.field(description="The run, status RUNNING.")


SYNC_ERRORS = (NotFoundError, InvalidInputError, InvalidTransitionError, PermissionDeniedError)
ConfigureChannelResult = Annotated[
    Union[ConfigureChannelPayload, *SYNC_ERRORS],  # type: ignore[valid-type]
    strawberry.union("ConfigureChannelResult", description="configureChannel result."),
]
StartSyncResult = Annotated[
    Union[StartSyncPayload, *SYNC_ERRORS],  # type: ignore[valid-type]
    strawberry.union(
        "StartSyncResult",
        description="startSync result (InvalidTransitionError: a sync of it is running).",
    ),
]


def _error(exc: DomainError) -> Any:
    return allowed_error(exc, SYNC_ERRORS)


@strawberry.type
class SyncMutations:
    @strawberry.mutation(description="Create or update a channel connection. Scope: admin.")
    async def configure_channel(
        self, info: Info, input: ConfigureChannelInput
    ) -> ConfigureChannelResult:
        ctx = ctx_of(info)
        try:
            ctx.require()
            if not isinstance(input.config, dict):
                raise InvalidInput("config must be an object", field="config")
            async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
                c = await connections.configure(
                    tx,
                    channel=input.channel,
                    connector=input.connector,
                    config=input.config,
                    registry=ctx.hub.sync.registry,
                    master=ctx.hub.settings.secret_key,
                    enabled=input.enabled,
                )
        except DomainError as exc:
            return _error(exc)
        return ConfigureChannelPayload(
            channel=Channel(
                channel=c.channel,
                connector=c.connector,
                config=c.config,
                secrets=c.secrets,
                enabled=c.enabled,
                updated_at=c.updated_at,
            )
        )

    @strawberry.mutation(
        description="Start pulling a channel now; returns at once with the run. Scope: admin."
    )
    async def start_sync(self, info: Info, input: StartSyncInput) -> StartSyncResult:
        ctx = ctx_of(info)
        try:
            ctx.require()
            run_id, task = await ctx.hub.sync.start(
                ctx.tenant_id, input.channel, trigger="api", streams=input.streams
            )
        except DomainError as exc:
            return _error(exc)
        ctx.hub.keep(task)
        async with ctx.hub.db.tenant_tx(ctx.tenant_id, write=False) as tx:
            row = await runs.get_run(tx, run_id)
        assert row is not None
        return StartSyncPayload(run=SyncRun(row=row))
