"""``memberhub webhooks …``: subscriptions, the delivery worker, replay.

``memberhub webhooks deliver`` is the worker: run one next to the gateway (several may run; they
never send a delivery twice at once). ``--once`` does a single pass, for cron or a Kubernetes job.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any


def _cli() -> Any:
    from gateway import cli  # the shared helpers (database, tenant lookup, --now parsing)

    return cli


def _uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise _cli().UsageError(f"{what} must be a UUID: {raw!r}") from exc


def cmd_webhooks_add(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.webhooks import subscriptions

    settings = cli._settings()

    async def go(db: Any) -> int:
        tenant = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(tenant.id) as tx:
            sub, secret = await subscriptions.create(
                tx,
                url=args.url,
                event_types=[p for p in args.events.split(",") if p.strip()],
                description=args.description or "",
                master=settings.secret_key,
            )
        print(f"subscription {sub.id}\t{sub.url}\t{','.join(sub.event_types)}")
        print(f"signing secret (shown once): {secret}")
        return 0

    return int(cli._run(lambda: cli._with_db(go)))


def cmd_webhooks_list(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.webhooks import dispatch, subscriptions

    async def go(db: Any) -> int:
        tenant = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(tenant.id, write=False) as tx:
            subs = await subscriptions.list_subscriptions(tx)
            for s in subs:
                c = await dispatch.counts(tx, s.id)
                state = "active" if s.active else "inactive"
                print(
                    f"{s.id}\t{state}\t{s.url}\t{','.join(s.event_types)}\t"
                    f"pending {c['pending']} delivered {c['delivered']} dead {c['dead']}"
                )
        if not subs:
            print(f"# {tenant.slug}: no webhook subscriptions")
        return 0

    return int(cli._run(lambda: cli._with_db(go)))


def cmd_webhooks_deactivate(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.webhooks import subscriptions

    async def go(db: Any) -> int:
        tenant = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(tenant.id) as tx:
            s = await subscriptions.deactivate(tx, _uuid(args.id, "--id"))
        print(f"{s.id}\tinactive")
        return 0

    return int(cli._run(lambda: cli._with_db(go)))


def cmd_webhooks_deliver(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.webhooks import DeliveryPolicy, Dispatcher

    settings = cli._settings()
    policy = DeliveryPolicy(
        max_attempts=args.max_attempts,
        backoff_base=args.backoff,
        backoff_cap=args.backoff_cap,
        timeout=args.timeout,
    )

    async def go(db: Any) -> int:
        tenant_ids = [t.id for t in await cli._tenants(db, args.tenant)] if args.tenant else None
        dispatcher = Dispatcher(db, settings.secret_key, policy)
        if args.once:
            s = await dispatcher.run_once(tenant_ids)
            print(
                f"fanned out {s.fanned_out}\tdelivered {s.delivered}\t"
                f"failed {s.failed}\tdead {s.dead}"
            )
            return 0
        await dispatcher.run(tenant_ids, poll_interval=args.interval)
        return 0  # pragma: no cover - run() only ends by cancellation

    try:
        return int(cli._run(lambda: cli._with_db(go)))
    except asyncio.CancelledError:  # pragma: no cover
        return 130


def cmd_webhooks_replay(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.webhooks import dispatch

    since = cli._parse_now(args.since) if args.since else None
    event_ids = [_uuid(e, "--event") for e in args.event] if args.event else None
    if since is None and event_ids is None:
        raise cli.UsageError("give --since, --event or both")

    async def go(db: Any) -> int:
        tenant = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(tenant.id) as tx:
            n = await dispatch.replay(
                tx, _uuid(args.subscription, "--subscription"), since=since, event_ids=event_ids
            )
        print(f"{n} deliveries back to pending")
        return 0

    return int(cli._run(lambda: cli._with_db(go)))


def add_commands(sub: Any) -> None:
    """Register the ``webhooks`` command group on the main parser."""
    wh = sub.add_parser("webhooks", help="signed member-event webhooks")
    wsub = wh.add_subparsers(dest="webhooks_command", required=True, metavar="command")
    wa = wsub.add_parser("add", help="subscribe a URL (prints the signing secret once)")
    wa.add_argument("--tenant", required=True, help="tenant slug or id")
    wa.add_argument("--url", required=True)
    wa.add_argument(
        "--events", required=True, help="comma-separated types or prefixes: 'tier.*,order.paid'"
    )
    wa.add_argument("--description")
    wa.set_defaults(fn=cmd_webhooks_add)
    wl = wsub.add_parser("list", help="a tenant's subscriptions with delivery counts")
    wl.add_argument("--tenant", required=True)
    wl.set_defaults(fn=cmd_webhooks_list)
    wx = wsub.add_parser("deactivate", help="stop a subscription (deliveries are kept)")
    wx.add_argument("--tenant", required=True)
    wx.add_argument("--id", required=True, help="subscription id")
    wx.set_defaults(fn=cmd_webhooks_deactivate)
    wd = wsub.add_parser("deliver", help="fan out and send due webhooks (a loop, or --once)")
    wd.add_argument("--tenant", help="one tenant (default: all)")
    wd.add_argument("--once", action="store_true", help="one pass, then exit")
    wd.add_argument("--interval", type=float, default=2.0, help="seconds between passes")
    wd.add_argument("--max-attempts", type=int, default=8, help="then the delivery is dead")
    wd.add_argument("--backoff", type=float, default=10.0, help="first retry delay (s), doubling")
    wd.add_argument("--backoff-cap", type=float, default=3600.0, help="longest retry delay (s)")
    wd.add_argument("--timeout", type=float, default=10.0, help="per request (s)")
    wd.set_defaults(fn=cmd_webhooks_deliver)
    wr = wsub.add_parser("replay", help="send delivered or dead deliveries again")
    wr.add_argument("--tenant", required=True)
    wr.add_argument("--subscription", required=True, help="subscription id")
    wr.add_argument("--since", help="events recorded at or after (ISO-8601 with offset)")
    wr.add_argument("--event", action="append", help="one event id (repeatable)")
    wr.set_defaults(fn=cmd_webhooks_replay)
