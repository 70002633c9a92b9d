"""``memberhub coupons …``: bulk issuance to a segment, job progress, statistics, expiry.

- ``issue-bulk`` creates (idempotently) and runs a job to its end, printing progress; re-running
  the same command resumes the same job (the default key is derived from template + segment).
- ``job`` shows a job; ``--run`` resumes it (also a failed one), ``--cancel`` stops it.
- ``run-jobs`` resumes every pending or running job (a job whose process died, or one started
  over GraphQL on a gateway that restarted). Safe next to a live runner: they take turns.
- ``stats`` prints a template's figures (``--json`` for machines).
- ``expire`` is the sweeper: expire what ended, notify what ends within ``--notify-days``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import uuid
from typing import Any


def _cli() -> Any:
    from gateway import cli

    return cli


def _progress(job: Any) -> str:
    reasons = ", ".join(f"{k} {n}" for k, n in sorted(job.skip_reasons.items()))
    line = (
        f"{job.id}\t{job.status}\t{job.processed}/{job.total}\tissued {job.issued}\t"
        f"skipped {job.skipped}"
    )
    if reasons:
        line += f" ({reasons})"
    if job.error:
        line += f"\terror: {job.error}"
    return line


def _job_id(cli: Any, raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise cli.UsageError(f"job id must be a UUID, got {raw!r}") from exc


def cmd_issue_bulk(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway import coupons

    key = args.key or f"cli:{args.template}:{args.segment}"

    async def go(db: Any) -> int:
        t = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(t.id) as tx:
            job = await coupons.start_job(
                tx, args.template, args.segment, idem_key=key, actor="cli"
            )
        print(("resuming " if job.replayed else "started ") + _progress(job))
        if args.no_run:
            return 0
        job = await coupons.run_job(
            db,
            t.id,
            job.id,
            batch=args.batch,
            on_batch=None if args.quiet else lambda j: print(_progress(j), flush=True),
        )
        print(_progress(job))
        return 0 if job.status == "done" else 1

    return cli._run(lambda: cli._with_db(go))


def cmd_job(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway import coupons

    job_id = _job_id(cli, args.id)

    async def go(db: Any) -> int:
        t = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(t.id) as tx:
            job = (
                await coupons.cancel_job(tx, job_id)
                if args.cancel
                else await coupons.get_job(tx, job_id)
            )
        if args.run and job.status in coupons.bulk.RUNNABLE:
            job = await coupons.run_job(db, t.id, job_id, batch=args.batch)
        print(_progress(job))
        return 0

    return cli._run(lambda: cli._with_db(go))


def cmd_run_jobs(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway import coupons

    async def go(db: Any) -> int:
        failed = 0
        for t in await cli._tenants(db, args.tenant):
            async with db.tenant_tx(t.id, write=False) as tx:
                jobs = await coupons.list_jobs(tx, statuses=("pending", "running"), limit=1000)
            for job in reversed(jobs):  # oldest first
                try:
                    job = await coupons.run_job(db, t.id, job.id, batch=args.batch)
                except Exception as exc:  # recorded on the job; go on with the others
                    failed += 1
                    print(f"{t.slug}\t{job.id}\tfailed: {exc}")
                    continue
                print(f"{t.slug}\t{_progress(job)}")
        return 1 if failed else 0

    return cli._run(lambda: cli._with_db(go))


def cmd_stats(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway import coupons

    since, until = cli._parse_now(args.since), cli._parse_now(args.until)

    async def go(db: Any) -> int:
        t = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(t.id, write=False) as tx:
            st = await coupons.template_stats(tx, args.template, since=since, until=until)
        if args.json:
            print(json.dumps(dataclasses.asdict(st), default=str))
            return 0
        print(
            f"{st.template_code}\tissued {st.issued}\tredeemed {st.redeemed}\t"
            f"rate {st.redemption_rate:.4f}\texpired {st.expired}\torders {st.orders}\t"
            f"revenue_fen {st.revenue_fen}\tdiscount_fen {st.discount_fen}"
        )
        for label, slices in (("channel", st.by_channel), ("store", st.by_store)):
            for x in slices:
                print(
                    f"  {label} {x.key if x.key is not None else '-'}\tredeemed {x.redeemed}\t"
                    f"orders {x.orders}\trevenue_fen {x.revenue_fen}\t"
                    f"discount_fen {x.discount_fen}"
                )
        return 0

    return cli._run(lambda: cli._with_db(go))


def cmd_expire(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway import coupons

    now = cli._parse_now(args.now)

    async def go(db: Any) -> int:
        for t in await cli._tenants(db, args.tenant):
            r = await coupons.sweep(db, t.id, now=now, notify_days=args.notify_days)
            print(f"{t.slug}\texpired {r.expired}\texpiring notices {r.notified}")
        return 0

    return cli._run(lambda: cli._with_db(go))


def add_commands(sub: Any) -> None:
    """Register the ``coupons`` command group on the main parser."""
    from gateway.coupons.bulk import DEFAULT_BATCH
    from gateway.coupons.expiry import DEFAULT_NOTIFY_DAYS

    coupons = sub.add_parser("coupons", help="coupons: bulk issuance, jobs, statistics, expiry")
    csub = coupons.add_subparsers(dest="coupons_command", required=True, metavar="command")

    ib = csub.add_parser("issue-bulk", help="issue a template to a segment (resumable)")
    ib.add_argument("--tenant", required=True, help="tenant slug or id")
    ib.add_argument("--template", required=True, help="coupon template code")
    ib.add_argument("--segment", required=True, help="segment code or id")
    ib.add_argument("--key", help="idempotency key (default: cli:<template>:<segment>)")
    ib.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="members per transaction")
    ib.add_argument("--no-run", action="store_true", help="only create the job")
    ib.add_argument("--quiet", action="store_true", help="no per-batch progress lines")
    ib.set_defaults(fn=cmd_issue_bulk)

    jb = csub.add_parser("job", help="show a bulk issue job; --run resumes, --cancel stops")
    jb.add_argument("id", help="job id (UUID)")
    jb.add_argument("--tenant", required=True)
    jb.add_argument("--run", action="store_true", help="resume it (also a failed one)")
    jb.add_argument("--cancel", action="store_true", help="stop it between batches")
    jb.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    jb.set_defaults(fn=cmd_job)

    rj = csub.add_parser("run-jobs", help="resume every pending or running bulk issue job")
    rj.add_argument("--tenant", help="one tenant (default: all)")
    rj.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    rj.set_defaults(fn=cmd_run_jobs)

    st = csub.add_parser("stats", help="a template's statistics")
    st.add_argument("--tenant", required=True)
    st.add_argument("--template", required=True, help="coupon template code")
    st.add_argument("--from", dest="since", help="window start (ISO-8601 with offset)")
    st.add_argument("--to", dest="until", help="window end, exclusive (ISO-8601 with offset)")
    st.add_argument("--json", action="store_true", help="one JSON object")
    st.set_defaults(fn=cmd_stats)

    ex = csub.add_parser("expire", help="expire ended coupons, notify those ending soon")
    ex.add_argument("--tenant", help="one tenant (default: all)")
    ex.add_argument(
        "--notify-days",
        type=int,
        default=DEFAULT_NOTIFY_DAYS,
        help=f"coupon.expiring this many days ahead (default {DEFAULT_NOTIFY_DAYS}; 0: off)",
    )
    ex.add_argument("--now", help="run as of (ISO-8601 with offset; default now)")
    ex.set_defaults(fn=cmd_expire)
