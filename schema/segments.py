"""GraphQL for member tags and segments (issue #5 scope 3).

Wiring (the mixin pattern of :mod:`schema.rules`): ``Member`` gets :data:`MEMBER_TAGS` and
:data:`MEMBER_SEGMENTS` (batched per request through ``Loaders.named``); ``Query`` mixes in
:class:`SegmentQueries`, ``Mutation`` :class:`SegmentMutations`.

Scopes: reading tags and segments needs ``read``; tagging, and creating, editing or refreshing
segments, ``admin`` (they change what campaigns and coupons reach). Filters travel as JSON in the
language of ``gateway/README.md`` "Tags and segments"; an invalid one is a
``SegmentFilterInvalidError`` listing every problem path.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway import segments, tags
from gateway.errors import DomainError, InvalidInput
from gateway.storage.retry import transaction_retrying
from gateway.storage.types import utcnow
from gateway.tenancy import Scope
from schema.context import RequestContext, ctx_of
from schema.errors import (
    Error,
    InvalidInputError,
    NotEligibleError,
    NotFoundError,
    PermissionDeniedError,
    allowed_error,
)
from schema.loaders import peek
from schema.relay import (
    Connection,
    check_first,
    decode_id,
    decode_uuid_cursor,
    global_id,
)
from schema.rules import result_union

if TYPE_CHECKING:
    from schema.types import Member

MemberRef = Annotated["Member", strawberry.lazy("schema.types")]


# ---- types -----------------------------------------------------------------------------------


@strawberry.type(description="A tag on a member.")
class MemberTag:
    tag: str = strawberry.field(
        description="The tag, normalised (trimmed, ASCII lower-case), e.g. `vip`, "
        "`scene:store_qr`, `store:s001`, `category:coffee`."
    )
    source: str = strawberry.field(
        description="Where it came from: scene (how the member joined), behaviour (derived "
        "from orders), manual (staff) or rule."
    )
    created_by: str | None = strawberry.field(description="Who added it (manual tags).")
    created_at: datetime = strawberry.field(description="When it was added.")


@strawberry.type(description="A tag and how many active members have it.")
class TagCount:
    tag: str = strawberry.field(description="The tag.")
    members: int = strawberry.field(description="Active members with it (merges read through).")


@strawberry.type(description="A named member filter (人群). See the filter language in the docs.")
class Segment:
    row: strawberry.Private[segments.Segment]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="Global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(global_id("Segment", self.row.id))

    @strawberry.field(description="The brand's code for the segment (unique per brand).")
    def code(self) -> str:
        return self.row.code

    @strawberry.field(description="Display title.")
    def title(self) -> str:
        return self.row.title

    @strawberry.field(description="The filter document (JSON).")
    def filter(self) -> JSON:
        return self.row.filter

    @strawberry.field(
        description="True: re-evaluated on refresh (members enter and leave); false: a "
        "snapshot taken at creation, edited by hand."
    )
    def dynamic(self) -> bool:
        return self.row.dynamic

    @strawberry.field(description="False: deactivated (not refreshed).")
    def active(self) -> bool:
        return self.row.active

    @strawberry.field(description="Active members in it as of the last build, refresh or edit.")
    def member_count(self) -> int:
        return self.row.member_count

    @strawberry.field(description="When it was last evaluated (null: never).")
    def refreshed_at(self) -> datetime | None:
        return self.row.refreshed_at

    @strawberry.field(description="Who created it.")
    def created_by(self) -> str:
        return self.row.created_by

    @strawberry.field(
        description="Its active members in id order (keyset-paginated, ≤ 100 a page), as of "
        "the last build, refresh or edit. Scope: read."
    )
    async def members(
        self,
        info: Info,
        first: Annotated[int, strawberry.argument(description="Page size, 0-100.")] = 20,
        after: Annotated[
            str | None, strawberry.argument(description="endCursor of the previous page.")
        ] = None,
    ) -> Connection[MemberRef]:
        from schema.lookahead import member_connection

        ctx = self.ctx
        # Reachable from any payload that returns a Member (a connector's upsertMember too):
        # listing other members is a read.
        ctx.require(Scope.READ)
        check_first(first)
        after_id = decode_uuid_cursor("member", after)
        rows = await ctx.read(segments.members_page, self.row.id, first=first, after=after_id)
        return await member_connection(info, ctx, rows, first, after)


@strawberry.type(description="One problem found in a segment filter.")
class FilterProblem:
    path: str = strawberry.field(
        description="Where in the filter, e.g. `filter.tags.any[2]`, `filter.spend.min_fen`."
    )
    message: str = strawberry.field(description="What is wrong there (English).")


@strawberry.type(description="The segment filter is invalid; nothing was written.")
class SegmentFilterInvalidError(Error):
    problems: list[FilterProblem] = strawberry.field(description="Every problem found.")


@strawberry.type(description="How many active members a filter matches now.")
class SegmentPreview:
    count: int = strawberry.field(description="Matching active members.")


@strawberry.type(description="What tagging or untagging did.")
class TagMembersPayload:
    changed: int = strawberry.field(
        description="(member, tag) pairs added or removed; 0 when everything already was so."
    )


@strawberry.type(description="A segment after a build, refresh or manual edit.")
class SegmentChangePayload:
    segment: Segment = strawberry.field(description="The segment now.")
    entered: int = strawberry.field(description="Members that entered (segment.entered each).")
    left: int = strawberry.field(description="Members that left (segment.left each).")


@strawberry.type(description="The updated segment.")
class UpdateSegmentPayload:
    segment: Segment = strawberry.field(description="The segment now.")


SEGMENT_ERRORS: tuple[type[Error], ...] = (
    SegmentFilterInvalidError,
    NotFoundError,
    InvalidInputError,
    NotEligibleError,
    PermissionDeniedError,
)
TAG_ERRORS: tuple[type[Error], ...] = (NotFoundError, InvalidInputError, PermissionDeniedError)
TagMembersResult = result_union(
    "TagMembersResult", TagMembersPayload, TAG_ERRORS, "tagMembers / untagMembers result."
)
SegmentChangeResult = result_union(
    "SegmentChangeResult",
    SegmentChangePayload,
    SEGMENT_ERRORS,
    "createSegment / refreshSegment / addSegmentMembers / removeSegmentMembers result "
    "(NotEligibleError.reason: STATIC_SEGMENT, DYNAMIC_SEGMENT, INACTIVE).",
)
UpdateSegmentResult = result_union(
    "UpdateSegmentResult", UpdateSegmentPayload, SEGMENT_ERRORS, "updateSegment result."
)
PreviewSegmentResult = result_union(
    "PreviewSegmentResult", SegmentPreview, SEGMENT_ERRORS, "previewSegment result."
)


def _error(exc: DomainError, allowed: tuple[type[Error], ...] = SEGMENT_ERRORS) -> Any:
    """The typed error for ``allowed`` (a filter's problems listed where the union has
    ``SegmentFilterInvalidError``; tagging's does not)."""
    err = None
    if isinstance(exc, segments.FilterInvalid):
        err = SegmentFilterInvalidError(
            message=exc.message,
            code=exc.code,
            problems=[FilterProblem(path=p, message=m) for p, m in exc.problems],
        )
    return allowed_error(exc, allowed, err)


def _actor(ctx: RequestContext) -> str:
    key = ctx.principal.api_key_id
    return f"api-key:{key}" if key is not None else "api"


def _member_ids(raw: list[strawberry.ID]) -> list[uuid.UUID]:
    out = []
    for i, r in enumerate(raw):
        mid = decode_id(r, "Member")
        if mid is None:
            raise InvalidInput("not a Member id", field=f"member_ids[{i}]")
        out.append(mid)
    return out


# ---- Member fields -------------------------------------------------------------------------


def _tags_loader(ctx: RequestContext) -> DataLoader[uuid.UUID, list[tags.TagRow]]:
    async def load(keys: list[uuid.UUID]) -> list[list[tags.TagRow]]:
        found = await ctx.read(tags.tags_for, keys)
        return [found.get(k, []) for k in keys]

    return DataLoader(load)


def _segments_loader(ctx: RequestContext) -> DataLoader[uuid.UUID, list[segments.Segment]]:
    async def load(keys: list[uuid.UUID]) -> list[list[segments.Segment]]:
        found = await ctx.read(segments.segments_for, keys)
        return [found.get(k, []) for k in keys]

    return DataLoader(load)


def _then(value: Any, fn: Any) -> Any:
    if isinstance(value, list):
        return fn(value)

    async def later() -> Any:
        return fn(await value)

    return later()


def _member_tags(root: Any) -> list[MemberTag]:
    loader = root.ctx.loaders.named("member_tags", _tags_loader)
    return _then(  # type: ignore[no-any-return]
        peek(loader, root.id),
        lambda rows: [
            MemberTag(tag=r.tag, source=r.source, created_by=r.created_by, created_at=r.created_at)
            for r in rows
        ],
    )


def _member_segments(root: Any) -> list[Segment]:
    ctx = root.ctx
    loader = ctx.loaders.named("member_segments", _segments_loader)
    return _then(  # type: ignore[no-any-return]
        peek(loader, root.id), lambda rows: [Segment(row=s, ctx=ctx) for s in rows]
    )


MEMBER_TAGS: Any = strawberry.field(
    resolver=_member_tags,
    description="The member's tags, by tag (including those of members merged into it). "
    "Batched across members.",
)
MEMBER_SEGMENTS: Any = strawberry.field(
    resolver=_member_segments,
    description="The segments the member is in (as of their last build, refresh or edit), by "
    "code. Batched across members.",
)


# ---- queries -------------------------------------------------------------------------------


@strawberry.type
class SegmentQueries:
    @strawberry.field(description="Tags with their member counts, most used first. Scope: read.")
    async def tags(
        self,
        info: Info,
        prefix: Annotated[
            str | None, strawberry.argument(description="Only tags starting with this.")
        ] = None,
        first: Annotated[int, strawberry.argument(description="How many, 1-1000.")] = 200,
    ) -> list[TagCount]:
        ctx = ctx_of(info)
        ctx.require(Scope.READ)
        rows = await ctx.read(tags.tag_counts, prefix=prefix, limit=first)
        return [TagCount(tag=t, members=n) for t, n in rows]

    @strawberry.field(description="Every segment of the brand, by code. Scope: read.")
    async def segments(self, info: Info) -> list[Segment]:
        ctx = ctx_of(info)
        ctx.require(Scope.READ)
        return [Segment(row=s, ctx=ctx) for s in await ctx.read(segments.list_segments)]

    @strawberry.field(description="A segment by code (null if none). Scope: read.")
    async def segment(
        self,
        info: Info,
        code: Annotated[str, strawberry.argument(description="The segment's code.")],
    ) -> Segment | None:
        ctx = ctx_of(info)
        ctx.require(Scope.READ)
        try:
            return Segment(row=await ctx.read(segments.get_segment, code), ctx=ctx)
        except DomainError:
            return None

    @strawberry.field(
        description="How many active members a filter matches now (live counts while an "
        "operator edits a segment); nothing is written. Scope: read."
    )
    async def preview_segment(
        self,
        info: Info,
        filter: Annotated[JSON, strawberry.argument(description="The filter document.")],
    ) -> PreviewSegmentResult:
        ctx = ctx_of(info)
        try:
            ctx.require(Scope.READ)
            n = await ctx.read(segments.preview, filter, now=utcnow())
        except DomainError as exc:
            return _error(exc)
        return SegmentPreview(count=n)


# ---- mutations -----------------------------------------------------------------------------


@strawberry.input(description="Members and tags to add or remove.")
class TagMembersInput:
    member_ids: list[strawberry.ID] = strawberry.field(
        description="Member ids, 1-1000 (merged ids stand for their survivor)."
    )
    tags: list[str] = strawberry.field(
        description="Tags, 1-100; normalised (trimmed, ASCII lower-case), ≤ 64 characters."
    )


@strawberry.input(description="A new segment.")
class CreateSegmentInput:
    code: str = strawberry.field(description="Unique per brand: 1-64 letters, digits, _ . : -")
    title: str = strawberry.field(description="Display title, 1-200 characters.")
    filter: JSON = strawberry.field(description="The filter document (see the docs).")
    dynamic: bool = strawberry.field(
        default=False, description="Re-evaluated on refresh (true) or a snapshot (false)."
    )


@strawberry.input(description="Changes to a segment; null fields stay as they are.")
class UpdateSegmentInput:
    code: str = strawberry.field(description="The segment's code.")
    title: str | None = strawberry.field(default=None, description="New title.")
    filter: JSON | None = strawberry.field(
        default=None, description="New filter (dynamic segments; applies at the next refresh)."
    )
    active: bool | None = strawberry.field(
        default=None, description="False deactivates it (no refreshes)."
    )


@strawberry.input(description="Members to add to or remove from a static segment.")
class SegmentMembersInput:
    code: str = strawberry.field(description="The segment's code.")
    member_ids: list[strawberry.ID] = strawberry.field(description="Member ids, 1-1000.")


@strawberry.type
class SegmentMutations:
    @strawberry.mutation(
        description="Tag members (idempotent; the API key is recorded as the author). Scope: admin."
    )
    async def tag_members(self, info: Info, input: TagMembersInput) -> TagMembersResult:
        return await _tagging(info, input, add=True)

    @strawberry.mutation(description="Remove tags from members (idempotent). Scope: admin.")
    async def untag_members(self, info: Info, input: TagMembersInput) -> TagMembersResult:
        return await _tagging(info, input, add=False)

    @strawberry.mutation(
        description="Create a segment and take its first snapshot (every matching member "
        "enters). Scope: admin."
    )
    async def create_segment(self, info: Info, input: CreateSegmentInput) -> SegmentChangeResult:
        async def run(tx: Any, ctx: RequestContext) -> segments.Change:
            return await segments.create_segment(
                tx,
                code=input.code,
                title=input.title,
                filter=input.filter,
                dynamic=input.dynamic,
                created_by=_actor(ctx),
                now=utcnow(),
                registry=ctx.hub.rules,
            )

        return await _change(info, run)

    @strawberry.mutation(
        description="Re-evaluate a dynamic segment now: members that match enter, the others "
        "leave (one event each). Scope: admin."
    )
    async def refresh_segment(
        self,
        info: Info,
        code: Annotated[str, strawberry.argument(description="The segment's code.")],
    ) -> SegmentChangeResult:
        async def run(tx: Any, ctx: RequestContext) -> segments.Change:
            return await segments.refresh_in(tx, code, now=utcnow(), registry=ctx.hub.rules)

        return await _change(info, run)

    @strawberry.mutation(description="Add members to a static segment by hand. Scope: admin.")
    async def add_segment_members(
        self, info: Info, input: SegmentMembersInput
    ) -> SegmentChangeResult:
        return await _by_hand(info, input, segments.add_members)

    @strawberry.mutation(description="Remove members from a static segment. Scope: admin.")
    async def remove_segment_members(
        self, info: Info, input: SegmentMembersInput
    ) -> SegmentChangeResult:
        return await _by_hand(info, input, segments.remove_members)

    @strawberry.mutation(
        description="Change a segment's title, filter (dynamic only) or active flag. Scope: admin."
    )
    async def update_segment(self, info: Info, input: UpdateSegmentInput) -> UpdateSegmentResult:
        ctx = ctx_of(info)
        try:
            ctx.require()
            async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
                seg = await segments.update_segment(
                    tx, input.code, title=input.title, filter=input.filter, active=input.active
                )
        except DomainError as exc:
            return _error(exc)
        await ctx.after_write()
        return UpdateSegmentPayload(segment=Segment(row=seg, ctx=ctx))


async def _tagging(info: Info, input: TagMembersInput, *, add: bool) -> Any:
    ctx = ctx_of(info)
    try:
        ctx.require()
        ids = _member_ids(input.member_ids)
        async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
            if add:
                n = await tags.add_tags(tx, ids, input.tags, created_by=_actor(ctx))
            else:
                n = await tags.remove_tags(tx, ids, input.tags)
    except DomainError as exc:
        return _error(exc, TAG_ERRORS)
    await ctx.after_write()
    return TagMembersPayload(changed=n)


async def _by_hand(info: Info, input: SegmentMembersInput, edit: Any) -> Any:
    """``add_segment_members`` / ``remove_segment_members``: ``edit`` is
    :func:`gateway.segments.add_members` or :func:`~gateway.segments.remove_members`."""

    async def run(tx: Any, ctx: RequestContext) -> segments.Change:
        ids = _member_ids(input.member_ids)
        return await edit(tx, input.code, ids, now=utcnow(), registry=ctx.hub.rules)  # type: ignore[no-any-return]

    return await _change(info, run)


async def _change(info: Info, run: Any) -> Any:
    ctx = ctx_of(info)
    try:
        ctx.require()
        # A build or refresh runs the rules per member when the tenant's config reacts to
        # segment events: a deadlock with another member write aborts it whole; run it again.
        async for attempt in transaction_retrying():
            with attempt:
                async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
                    ch = await run(tx, ctx)
    except DomainError as exc:
        return _error(exc)
    await ctx.after_write()
    return SegmentChangePayload(
        segment=Segment(row=ch.segment, ctx=ctx), entered=ch.entered, left=ch.left
    )


__all__ = ["MEMBER_SEGMENTS", "MEMBER_TAGS", "SegmentMutations", "SegmentQueries"]
