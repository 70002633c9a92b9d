"""Look-ahead for list fields: batch-load the relations a query asks for before items resolve.

``members(first: 100) { edges { node { balances latestOrders identities } } }`` would otherwise
resolve each relation per item through an awaitable; priming the loaders here turns those into
synchronous cache hits (see ``schema.loaders.peek``) and keeps the statement count constant:
one statement per requested relation, whatever the page size.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from strawberry.types import Info
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from schema.context import RequestContext
from schema.coupons import prefetch as prefetch_coupons
from schema.loaders import batch_of, prime
from schema.relay import Connection, build_connection, encode_cursor
from schema.rules import prefetch as prefetch_rules
from schema.types import MAX_EXPIRY_WINDOW_DAYS, MAX_LATEST_ORDERS, Member


def flatten(selections: Iterable[Selection]) -> list[SelectedField]:
    """Selected fields with fragments and inline fragments expanded."""
    out: list[SelectedField] = []
    for s in selections:
        if isinstance(s, SelectedField):
            out.append(s)
        elif isinstance(s, FragmentSpread | InlineFragment):
            out.extend(flatten(s.selections))
    return out


def children(fields: Iterable[SelectedField], name: str) -> list[SelectedField]:
    """The sub-fields of every selection of ``name`` among ``fields``."""
    out: list[SelectedField] = []
    for f in fields:
        if f.name == name:
            out.extend(flatten(f.selections))
    return out


def connection_nodes(fields: Sequence[SelectedField]) -> list[SelectedField]:
    """Fields selected on the nodes of a connection (via ``edges.node`` or ``nodes``)."""
    return children(children(fields, "edges"), "node") + children(fields, "nodes")


def _arg(f: SelectedField, name: str, default: Any) -> Any:
    value = f.arguments.get(name, default) if f.arguments else default
    return default if value is None else value


async def prefetch_members(
    ctx: RequestContext, member_ids: Sequence[uuid.UUID], fields: Sequence[SelectedField]
) -> None:
    """Prime the loaders for every relation selected on a list of members."""
    if not member_ids or not fields:
        return
    ids = list(member_ids)
    loaders = ctx.loaders
    for f in fields:
        if f.name == "identities":
            await prime(loaders.identities, ids, batch_of(loaders.identities))
        elif f.name == "merges":
            await prime(loaders.merges, ids, batch_of(loaders.merges))
        elif f.name == "profile" and any(s.name == "sources" for s in flatten(f.selections)):
            await prime(loaders.attributes, ids, batch_of(loaders.attributes))
        elif f.name in ("points", "growth", "balances"):
            days = 30 if f.name != "balances" else _arg(f, "expiringWithinDays", 30)
            if isinstance(days, int) and 0 <= days <= MAX_EXPIRY_WINDOW_DAYS:
                loader = loaders.balances(days)
                await prime(loader, ids, batch_of(loader))
        elif f.name in ("tier", "tasks", "grants"):
            await prefetch_rules(ctx, ids, f.name, f.arguments)
        elif f.name == "coupons":
            await prefetch_coupons(ctx, ids, f.arguments)
        elif f.name == "latestOrders":
            limit = _arg(f, "limit", 5)
            if isinstance(limit, int) and 0 < limit <= MAX_LATEST_ORDERS:
                loader = loaders.latest_orders(limit)
                await prime(loader, ids, batch_of(loader))
                await prefetch_orders(
                    ctx,
                    [
                        o.id
                        for rows in (loader.cache_map.get(i).result() for i in ids)  # type: ignore[union-attr]
                        for o in rows
                    ],
                    flatten(f.selections),
                )


async def member_connection(
    info: Info, ctx: RequestContext, rows: Sequence[Any], first: int, after: str | None
) -> Connection[Member]:
    """A page of members (``rows``: member rows in id order, ``first + 1`` of them, the extra
    one flagging a next page) as a connection, its loaders primed for what the query selects on
    the nodes — shared by ``Query.members`` and ``Segment.members`` so both page alike."""
    page = rows[:first]
    ctx.loaders.member.prime_many({r.id: r for r in page})
    node_fields = connection_nodes(flatten(info.selected_fields[0].selections))
    await prefetch_members(ctx, [r.id for r in page], node_fields)
    return build_connection(
        rows,
        first,
        wrap=lambda r: Member.from_row(r, ctx),  # type: ignore[arg-type]
        cursor_of=lambda r: encode_cursor("member", str(r.id)),  # type: ignore[attr-defined]
        has_previous=after is not None,
    )


async def prefetch_orders(
    ctx: RequestContext, order_ids: Sequence[uuid.UUID], fields: Sequence[SelectedField]
) -> None:
    """Prime the loaders for relations selected on a list of orders."""
    if not order_ids:
        return
    for f in fields:
        if f.name == "lines":
            loader = ctx.loaders.lines
            await prime(loader, list(order_ids), batch_of(loader))
