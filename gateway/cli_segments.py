"""``memberhub tags …`` and ``memberhub segments …``: tag members, derive behaviour tags, and
create, refresh and inspect segments from the shell (cron runs ``tags derive`` and
``segments refresh --all`` every few minutes; both are idempotent).

Members are given by id (UUID); the actor recorded on manual tags and new segments is
``cli:<$USER>``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import uuid
from typing import Any


def _cli() -> Any:
    from gateway import cli

    return cli


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except Exception:  # no user database entry (containers)
        return "cli"


def _member_ids(raw: list[str]) -> list[uuid.UUID]:
    try:
        return [uuid.UUID(r) for r in raw]
    except ValueError as exc:
        raise _cli().UsageError(f"members are given by id (UUID): {exc}") from exc


def _tags(raw: str) -> list[str]:
    return [t for t in raw.split(",") if t.strip()]


def cmd_tags_add(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.tags import add_tags, remove_tags

    async def go(db: Any) -> int:
        t = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(t.id) as tx:
            if args.tags_command == "add":
                n = await add_tags(
                    tx, _member_ids(args.member), _tags(args.tags), created_by=_actor()
                )
                print(f"{t.slug}\ttagged\t{n} new")
            else:
                n = await remove_tags(tx, _member_ids(args.member), _tags(args.tags))
                print(f"{t.slug}\tuntagged\t{n} removed")
        return 0

    return cli._run(lambda: cli._with_db(go))


def cmd_tags_derive(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.tags import derive_tags

    now = cli._parse_now(args.now)

    async def go(db: Any) -> int:
        for t in await cli._tenants(db, args.tenant):
            rep = await derive_tags(db, t.id, now=now, full=args.full)
            upto = rep.upto.isoformat() if rep.upto else "-"
            print(f"{t.slug}\tbehaviour tags\t{rep.added} new\torders up to {upto}")
        return 0

    return cli._run(lambda: cli._with_db(go))


def cmd_tags_list(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.tags import tag_counts, tags_for

    async def go(db: Any) -> int:
        t = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(t.id, write=False) as tx:
            if args.member:
                (mid,) = _member_ids([args.member])
                for row in (await tags_for(tx, [mid]))[mid]:
                    print(f"{row.tag}\t{row.source}\t{row.created_by or '-'}")
            else:
                for tag, n in await tag_counts(tx, prefix=args.prefix, limit=args.limit):
                    print(f"{tag}\t{n}")
        return 0

    return cli._run(lambda: cli._with_db(go))


def _filter(raw: str) -> Any:
    cli = _cli()
    text = raw
    if raw.startswith("@"):
        try:
            with open(raw[1:], encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise cli.UsageError(f"cannot read the filter file: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise cli.UsageError(f"--filter must be JSON (or @file.json): {exc}") from exc


def _show(seg: Any) -> str:
    kind = "dynamic" if seg.dynamic else "static"
    at = seg.refreshed_at.isoformat() if seg.refreshed_at else "-"
    state = "" if seg.active else "\tinactive"
    return f"{seg.code}\t{kind}\t{seg.member_count} members\trefreshed {at}\t{seg.title}{state}"


def cmd_segments_create(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.segments import create_segment

    doc = _filter(args.filter)
    now = cli._parse_now(args.now)

    async def go(db: Any) -> int:
        t = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(t.id) as tx:
            ch = await create_segment(
                tx,
                code=args.code,
                title=args.title or args.code,
                filter=doc,
                dynamic=args.dynamic,
                created_by=_actor(),
                now=now,
            )
        print(_show(ch.segment))
        return 0

    return cli._run(lambda: cli._with_db(go))


def cmd_segments_refresh(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.segments import dynamic_segments, refresh_segment

    if bool(args.code) == bool(args.all):
        raise cli.UsageError("give a segment code or --all")
    now = cli._parse_now(args.now)

    async def go(db: Any) -> int:
        for t in await cli._tenants(db, args.tenant):
            if args.all:
                async with db.tenant_tx(t.id, write=False) as tx:
                    codes = [s.code for s in await dynamic_segments(tx)]
            else:
                codes = [args.code]
            for code in codes:
                ch = await refresh_segment(db, t.id, code, now=now)
                print(f"{t.slug}\t{code}\t+{ch.entered}\t-{ch.left}\t{ch.segment.member_count}")
        return 0

    if args.code and not args.tenant:
        raise cli.UsageError("refreshing one segment needs --tenant")
    return cli._run(lambda: cli._with_db(go))


def cmd_segments_show(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.segments import get_segment, preview

    async def go(db: Any) -> int:
        t = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(t.id, write=False) as tx:
            if args.segments_command == "list":
                from sqlalchemy import select

                from gateway.segments.model import S, segment_from_row

                rows = await tx.conn.execute(
                    select(S).where(S.c.tenant_id == t.id).order_by(S.c.code)
                )
                for r in rows:
                    print(_show(segment_from_row(r)))
                return 0
            if args.segments_command == "preview":
                print(await preview(tx, _filter(args.filter)))
                return 0
            seg = await get_segment(tx, args.code)
            print(_show(seg))
            print(json.dumps(seg.filter, ensure_ascii=False, sort_keys=True))
        return 0

    return cli._run(lambda: cli._with_db(go))


def cmd_segments_members(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.segments import get_segment, member_ids_after

    async def go(db: Any) -> int:
        t = await cli._tenant(db, args.tenant)
        after = None
        left = args.limit
        async with db.tenant_tx(t.id, write=False) as tx:
            seg = await get_segment(tx, args.code)
            while left is None or left > 0:
                page = await member_ids_after(tx, seg.id, after, min(1000, left or 1000))
                for m in page:
                    print(m)
                if not page:
                    break
                after = page[-1]
                left = None if left is None else left - len(page)
        return 0

    return cli._run(lambda: cli._with_db(go))


def add_commands(sub: Any) -> None:
    """Register the ``tags`` and ``segments`` command groups on the main parser."""
    tags = sub.add_parser("tags", help="member tags: add, remove, derive from orders, list")
    tsub = tags.add_subparsers(dest="tags_command", required=True, metavar="command")
    for name, text in (("add", "tag members"), ("remove", "untag members")):
        p = tsub.add_parser(name, help=text)
        p.add_argument("--tenant", required=True, help="tenant slug or id")
        p.add_argument("--member", action="append", required=True, help="member id (repeatable)")
        p.add_argument("--tags", required=True, help="comma-separated tags, e.g. vip,sample")
        p.set_defaults(fn=cmd_tags_add)
    d = tsub.add_parser("derive", help="derive category:/channel: tags from new orders")
    d.add_argument("--tenant", help="one tenant (default: all)")
    d.add_argument("--full", action="store_true", help="rescan every order, not just new ones")
    d.add_argument("--now", help="as of (ISO-8601 with offset; default now)")
    d.set_defaults(fn=cmd_tags_derive)
    ls = tsub.add_parser("list", help="tag counts, or one member's tags")
    ls.add_argument("--tenant", required=True)
    ls.add_argument("--member", help="this member's tags (with source and author)")
    ls.add_argument("--prefix", help="only tags starting with this, e.g. category:")
    ls.add_argument("--limit", type=int, default=200)
    ls.set_defaults(fn=cmd_tags_list)

    segs = sub.add_parser("segments", help="member segments: create, refresh, inspect")
    ssub = segs.add_subparsers(dest="segments_command", required=True, metavar="command")
    c = ssub.add_parser("create", help="create a segment and take its first snapshot")
    c.add_argument("--tenant", required=True)
    c.add_argument("--code", required=True)
    c.add_argument("--title")
    c.add_argument("--filter", required=True, help="filter JSON, or @file.json")
    c.add_argument("--dynamic", action="store_true", help="re-evaluated by `segments refresh`")
    c.add_argument("--now", help="as of (ISO-8601 with offset; default now)")
    c.set_defaults(fn=cmd_segments_create)
    r = ssub.add_parser("refresh", help="re-evaluate dynamic segments (entered/left events)")
    r.add_argument("code", nargs="?", help="one segment (needs --tenant)")
    r.add_argument("--all", action="store_true", help="every active dynamic segment")
    r.add_argument("--tenant", help="one tenant (default with --all: every tenant)")
    r.add_argument("--now", help="as of (ISO-8601 with offset; default now)")
    r.set_defaults(fn=cmd_segments_refresh)
    s = ssub.add_parser("show", help="a segment's state and filter")
    s.add_argument("code")
    s.add_argument("--tenant", required=True)
    s.set_defaults(fn=cmd_segments_show)
    ls2 = ssub.add_parser("list", help="every segment of a tenant")
    ls2.add_argument("--tenant", required=True)
    ls2.set_defaults(fn=cmd_segments_show)
    pv = ssub.add_parser("preview", help="count the members a filter matches now")
    pv.add_argument("--tenant", required=True)
    pv.add_argument("--filter", required=True, help="filter JSON, or @file.json")
    pv.set_defaults(fn=cmd_segments_show)
    m = ssub.add_parser("members", help="member ids of a segment, in id order")
    m.add_argument("code")
    m.add_argument("--tenant", required=True)
    m.add_argument("--limit", type=int, help="at most this many")
    m.set_defaults(fn=cmd_segments_members)
