"""``memberhub triggers run``: the scheduled care triggers (birthday, member day).

Run it from cron or a Kubernetes CronJob at least once a day — hourly is better, so every
tenant's day is caught soon after its local midnight whatever its timezone. It is idempotent:
each member gets one event per occurrence however often, late or concurrently it runs.
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any


def _cli() -> Any:
    from gateway import cli

    return cli


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

    async def go(db: Any) -> int:
        for t in await cli._tenants(db, args.tenant):
            reports = await run_triggers(
                db, t.id, now=now, only=args.only, options=options, since=since, label=t.slug
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


def add_commands(sub: Any) -> None:
    """Register the ``triggers`` command group on the main parser."""
    triggers = sub.add_parser("triggers", help="scheduled care triggers: birthday, member day")
    tsub = triggers.add_subparsers(dest="triggers_command", required=True, metavar="command")
    tr = tsub.add_parser("run", help="fire today's (tenant-local) birthdays and member day")
    tr.add_argument("--tenant", help="one tenant (default: all)")
    tr.add_argument("--now", help="run as of (ISO-8601 with offset; default now)")
    tr.add_argument(
        "--only", action="append", choices=("birthday", "member_day"), help="only this trigger"
    )
    tr.add_argument(
        "--member-day", type=int, default=8, help="member day: day of month 1-28 (default 8)"
    )
    tr.add_argument("--since", help="also fire missed days from this local date (YYYY-MM-DD)")
    tr.set_defaults(fn=cmd_triggers_run)
