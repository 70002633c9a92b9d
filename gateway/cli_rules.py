"""``memberhub rules …`` and ``memberhub tiers …``: tenant rule configs and the tier job.

Operators keep a brand's rule config in a YAML file under version control and apply it with
``memberhub rules apply --tenant T config.yaml``: it is validated as a whole (every problem
printed with its path, nothing saved on error), stored as a new version with who applied it, and
re-applying an unchanged file is a no-op — so the command is safe in a deploy pipeline.
``memberhub tiers evaluate`` is the scheduled keep-level / override-expiry review (run it daily
from cron or a Kubernetes CronJob; it is idempotent).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from gateway.errors import ConfigInvalid


def _cli() -> Any:
    from gateway import cli  # the shared helpers (database, tenant lookup, --now parsing)

    return cli


def _actor(args: argparse.Namespace) -> str:
    return args.actor or f"cli:{getpass.getuser()}"


def _print_problems(exc: ConfigInvalid) -> int:
    print(
        f"error: the config has {len(exc.problems)} problem(s); nothing was saved", file=sys.stderr
    )
    for path, message in exc.problems:
        print(f"  {path}: {message}", file=sys.stderr)
    return 2


def _read(path: str) -> dict[str, Any]:
    from gateway.rules.config import parse_text

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise _cli().UsageError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_text(text)


def cmd_rules_apply(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.rules import config as rule_config
    from gateway.rules.manager import default_registry

    try:
        document = _read(args.file)
    except ConfigInvalid as exc:
        return _print_problems(exc)

    async def go(db: Any) -> int:
        tenant = await cli._tenant(db, args.tenant)
        registry = default_registry()
        try:
            if args.dry_run:
                rule_config.validate(rule_config._jsonable(document), registry)
                print(f"{tenant.slug}\tvalid (dry run: nothing saved)")
                return 0
            async with db.tenant_tx(tenant.id) as tx:
                version, created = await rule_config.save(
                    tx, document, registry, actor=_actor(args), comment=args.comment or ""
                )
        except ConfigInvalid as exc:
            return _print_problems(exc)
        what = "saved" if created else "unchanged, active"
        print(f"{tenant.slug}\t{what} version {version.version}\tdigest {version.digest[:12]}")
        return 0

    return cli._run(lambda: cli._with_db(go))


def cmd_rules_show(args: argparse.Namespace) -> int:
    cli = _cli()
    import yaml

    from gateway.rules import config as rule_config

    async def go(db: Any) -> int:
        tenant = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(tenant.id, write=False) as tx:
            if args.version is None:
                versions = await rule_config.history(tx, limit=1)
                if not versions:
                    print(
                        f"# {tenant.slug}: no rule config saved; legacy rules "
                        f"{', '.join(tenant.enabled_rules) or 'none'}"
                    )
                    return 0
                v = versions[0]
            else:
                v = await rule_config.get_version(tx, args.version)
        print(
            f"# {tenant.slug} rule config version {v.version}, saved {v.created_at.isoformat()} "
            f"by {v.created_by}{' — ' + v.comment if v.comment else ''}"
        )
        print(yaml.safe_dump(dict(v.document), sort_keys=False, allow_unicode=True), end="")
        return 0

    return cli._run(lambda: cli._with_db(go))


def cmd_rules_history(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.rules import config as rule_config

    async def go(db: Any) -> int:
        tenant = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(tenant.id, write=False) as tx:
            versions = await rule_config.history(tx, limit=args.limit)
        for v in versions:
            print(
                f"{v.version}\t{v.created_at.isoformat()}\t{v.created_by}\t{v.digest[:12]}"
                f"\t{v.comment}"
            )
        return 0

    return cli._run(lambda: cli._with_db(go))


def cmd_rules_fulfil_retry(args: argparse.Namespace) -> int:
    """Deliver ``unfulfilled`` grants again (after a template's limit was raised or a missing
    template created); prints one line per grant and exits 1 while any is still refused."""
    cli = _cli()
    from gateway.rules import fulfil
    from gateway.storage.types import utcnow

    grant_ids = [uuid.UUID(g) for g in args.grant] if args.grant else None

    async def go(db: Any) -> int:
        tenant = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(tenant.id) as tx:
            done = await fulfil.retry(tx, grant_ids=grant_ids, now=utcnow(), limit=args.limit)
        for f in done:
            detail = ",".join(c.code for c in f.coupons) if f.coupons else (f.reason or "")
            print(f"{f.grant_id}\t{f.kind}:{f.code}\t{f.status}\t{detail}")
        print(f"{len(done)} grant(s) retried", file=sys.stderr)
        return 1 if any(f.status == fulfil.UNFULFILLED for f in done) else 0

    return cli._run(lambda: cli._with_db(go))


def cmd_rules_list(_args: argparse.Namespace) -> int:
    from gateway.rules.manager import default_registry

    registry = default_registry()
    for rs in sorted(registry, key=lambda r: (r.slot, r.name)):
        desc = getattr(rs, "description", "") or ""
        print(f"{rs.slot}\t{rs.name}\t{rs.version}\t{desc}")
    return 0


def cmd_rules_dry_run(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.rules import config as rule_config
    from gateway.rules.engine import dump, process_event
    from gateway.rules.hookspecs import EventView
    from gateway.rules.manager import default_registry
    from gateway.storage.types import utcnow

    try:
        member_id = uuid.UUID(args.member)
    except ValueError as exc:
        raise cli.UsageError(f"--member must be a member id, got {args.member!r}") from exc
    try:
        payload = json.loads(args.payload) if args.payload else {}
    except json.JSONDecodeError as exc:
        raise cli.UsageError(f"--payload must be a JSON object: {exc}") from exc
    if not isinstance(payload, dict):
        raise cli.UsageError("--payload must be a JSON object")
    at = cli._parse_now(args.at) or utcnow()

    async def go(db: Any) -> int:
        tenant = await cli._tenant(db, args.tenant)
        registry = default_registry()
        candidate = None
        if args.config:
            try:
                candidate = rule_config.validate(
                    rule_config._jsonable(_read(args.config)), registry
                )
            except ConfigInvalid as exc:
                return _print_problems(exc)
        event = EventView(uuid.uuid4(), args.event, member_id, at, payload)
        async with db.tenant_tx(tenant.id) as tx:
            out = await process_event(tx, event, registry, now=at, config=candidate, dry_run=True)
        print(json.dumps(dump(out), ensure_ascii=False, indent=2))
        return 0

    return cli._run(lambda: cli._with_db(go))


def cmd_tiers_evaluate(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.rules.tier_jobs import evaluate_due

    now = cli._parse_now(args.now)

    async def go(db: Any) -> int:
        for t in await cli._tenants(db, args.tenant):
            report = await evaluate_due(db, t.id, now=now)
            changes = " ".join(f"{k}={v}" for k, v in sorted(report.changes.items())) or "none"
            print(f"{t.slug}\tmembers reviewed {report.members}\tchanges {changes}")
        return 0

    return cli._run(lambda: cli._with_db(go))


def cmd_tiers_override(args: argparse.Namespace) -> int:
    cli = _cli()
    from gateway.rules.tier_jobs import override_tier

    try:
        member_id = uuid.UUID(args.member)
    except ValueError as exc:
        raise cli.UsageError(f"--member must be a member id, got {args.member!r}") from exc
    until = cli._parse_now(args.until)

    async def go(db: Any) -> int:
        tenant = await cli._tenant(db, args.tenant)
        async with db.tenant_tx(tenant.id) as tx:
            changes = await override_tier(
                tx,
                member_id,
                tier=None if args.clear else args.tier,
                until=until,
                reason=args.reason,
                actor=_actor(args),
            )
        for c in changes:
            print(f"{c.at.isoformat()}\t{c.change}\t{c.from_tier or '-'} → {c.to_tier}\t{c.reason}")
        return 0

    return cli._run(lambda: cli._with_db(go))


def add_commands(sub: Any) -> None:
    """Register the ``rules`` and ``tiers`` command groups on the main parser."""
    rules = sub.add_parser("rules", help="tenant rule configs (tiers, tasks, mall, …)")
    rsub = rules.add_subparsers(dest="rules_command", required=True, metavar="command")
    ra = rsub.add_parser("apply", help="validate a YAML config and save it as a new version")
    ra.add_argument("--tenant", required=True)
    ra.add_argument("file", help="config file (YAML or JSON; see plugins/README.md)")
    ra.add_argument("--comment", help="why (stored in the audit)")
    ra.add_argument("--actor", help="who (default cli:<user>)")
    ra.add_argument("--dry-run", action="store_true", help="validate only, save nothing")
    ra.set_defaults(fn=cmd_rules_apply)
    rs = rsub.add_parser("show", help="print the active (or --version N) config as YAML")
    rs.add_argument("--tenant", required=True)
    rs.add_argument("--version", type=int)
    rs.set_defaults(fn=cmd_rules_show)
    rh = rsub.add_parser("history", help="config versions: who saved what, when")
    rh.add_argument("--tenant", required=True)
    rh.add_argument("--limit", type=int, default=50)
    rh.set_defaults(fn=cmd_rules_history)
    rsub.add_parser("list", help="installed rule sets by slot").set_defaults(fn=cmd_rules_list)
    rf = rsub.add_parser(
        "fulfil-retry", help="deliver unfulfilled coupon/points grants again (oldest first)"
    )
    rf.add_argument("--tenant", required=True)
    rf.add_argument("--grant", action="append", help="only this grant id (repeatable)")
    rf.add_argument("--limit", type=int, default=100)
    rf.set_defaults(fn=cmd_rules_fulfil_retry)
    rd = rsub.add_parser("dry-run", help="what would this event do to a member? (writes nothing)")
    rd.add_argument("--tenant", required=True)
    rd.add_argument("--member", required=True)
    rd.add_argument("--event", required=True, help="event type, e.g. order.paid, task.checkin")
    rd.add_argument("--payload", help="JSON payload, e.g. '{\"paid_fen\": 38800}'")
    rd.add_argument("--at", help="when it happens (ISO-8601 with offset; default now)")
    rd.add_argument("--config", help="run under this candidate config file instead")
    rd.set_defaults(fn=cmd_rules_dry_run)

    tiers = sub.add_parser("tiers", help="member tiers: scheduled review and overrides")
    tsub = tiers.add_subparsers(dest="tiers_command", required=True, metavar="command")
    te = tsub.add_parser("evaluate", help="keep-level reviews and override expiry due by now")
    te.add_argument("--tenant", help="one tenant (default: all)")
    te.add_argument("--now", help="evaluate as of (ISO-8601 with offset)")
    te.set_defaults(fn=cmd_tiers_evaluate)
    to = tsub.add_parser("override", help="set (or --clear) a manual tier override")
    to.add_argument("--tenant", required=True)
    to.add_argument("--member", required=True)
    to.add_argument("--tier")
    to.add_argument("--until", help="end of the override (ISO-8601 with offset)")
    to.add_argument("--reason", required=True)
    to.add_argument("--actor")
    to.add_argument("--clear", action="store_true", help="remove the active override")
    to.set_defaults(fn=cmd_tiers_override)
