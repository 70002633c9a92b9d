"""``memberhub triggers run``: the scheduled care triggers.

Birthday, member day, points about to expire, dormant members and purchases slowing down — each
tenant's ``triggers:`` config section says which fire and what they give. Run it from cron or a
Kubernetes CronJob hourly, so every tenant's day is caught soon after its local midnight whatever
its timezone. It is idempotent: each member gets one event per occurrence however often, late or
concurrently it runs.
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

NAMES = ("birthday", "member_day", "points_expiring", "dormant", "purchase_slowing")


def _only(values: list[str] | None) -> list[str] | None:
    """``--only a,b --only c`` → ``[a, b, c]`` (None: all)."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return list(dict.fromkeys(names))


def cmd_triggers_run(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.errors import InvalidInput
    from gateway.triggers import TriggerOptions, run_triggers

    now = cli._parse_now(args.now)
    try:
        since = date.fromisoformat(args.since) if args.since else None
    except ValueError as exc:
        raise cli.UsageError(f"--since must be a date (YYYY-MM-DD), got {args.since!r}") from exc
    try:
        options = TriggerOptions(member_day=args.member_day)
    except InvalidInput as exc:
        raise cli.UsageError(f"--member-day: {exc}") from exc
    only = _only(args.only)
    unknown = [n for n in only or () if n not in NAMES]
    if unknown:
        raise cli.UsageError(
            f"--only: unknown trigger(s) {', '.join(unknown)} ({', '.join(NAMES)})"
        )

    async def go(db: Any) -> int:
        for t in await cli._tenants(db, args.tenant):
            reports = await run_triggers(
                db, t.id, now=now, only=only, options=options, since=since, label=t.slug
            )
            for r in reports:
                if r.skipped:
                    print(f"{t.slug}\t{r.trigger}\tskipped: {r.skipped}")
                elif not r.days:
                    print(f"{t.slug}\t{r.trigger}\tnot due")
                else:
                    days = ",".join(d.isoformat() for d in r.days)
                    print(f"{t.slug}\t{r.trigger}\t{days}\tfired {r.fired}\talready {r.already}")
        return 0

    return cli._run(lambda: cli._with_db(go))


def _cli() -> Any:
    from gateway import cli

    return cli


def add_commands(sub: Any) -> None:
    """Register the ``triggers`` command group on the main parser."""
    triggers = sub.add_parser(
        "triggers", help="scheduled care triggers: birthday, member day, expiring points, dormant"
    )
    tsub = triggers.add_subparsers(dest="triggers_command", required=True, metavar="command")
    tr = tsub.add_parser("run", help="fire the care triggers due now (tenant-local dates)")
    tr.add_argument("--tenant", help="one tenant (default: all)")
    tr.add_argument("--now", help="run as of (ISO-8601 with offset; default now)")
    tr.add_argument(
        "--only",
        action="append",
        metavar="NAME[,NAME]",
        help=f"only these triggers ({', '.join(NAMES)}); repeatable",
    )
    tr.add_argument(
        "--member-day",
        type=int,
        default=None,
        help="member day, 1-28 (default: the tenant's triggers.member_day.day, else 8)",
    )
    tr.add_argument(
        "--since", help="also fire missed birthdays/member days from this local date (YYYY-MM-DD)"
    )
    tr.set_defaults(fn=cmd_triggers_run)
