"""The ``memberhub`` command (argparse): serve, migrate, tenants, API keys, ledger checks, SDL
export and the demo.

Expected failures (bad input, unknown tenant, invalid timestamps) print one ``error: …`` line and
exit with status 2 — no traceback; ``ledger verify`` exits 1 when it finds violations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.errors import DomainError
from gateway.settings import DEFAULT_DATABASE_URL, Settings


class UsageError(Exception):
    """An expected, user-facing failure: printed as one line, exit status 2."""


def _database_url() -> str:
    return os.environ.get("MEMBERHUB_DATABASE_URL") or DEFAULT_DATABASE_URL


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except (RuntimeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc


def _run(coro_fn: Callable[[], Coroutine[Any, Any, int]]) -> int:
    return asyncio.run(coro_fn())


async def _with_db(fn: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    from gateway.storage.db import Database

    db = Database.from_url(_database_url())
    try:
        return await fn(db)
    finally:
        await db.dispose()


async def _tenant(db: Any, ref: str) -> Any:
    from gateway.tenants import get_tenant

    tenant = await get_tenant(db, ref)
    if tenant is None:
        raise UsageError(f"no tenant {ref!r} (use a slug or id from `memberhub tenant list`)")
    return tenant


async def _tenants(db: Any, ref: str | None) -> list[Any]:
    from gateway.tenants import list_tenants

    return [await _tenant(db, ref)] if ref else await list_tenants(db)


# ---- commands ----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    _settings()  # fail early with a clear message (e.g. missing secret key on PostgreSQL)
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
    )
    return 0


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    from gateway.storage.migrate import upgrade_sync

    upgrade_sync(_database_url())
    print("database is at the latest migration")
    return 0


def cmd_tenant_create(args: argparse.Namespace) -> int:
    from gateway.tenants import create_tenant

    async def go(db: Any) -> int:
        t = await create_tenant(
            db, name=args.name, slug=args.slug, timezone=args.timezone, currency=args.currency
        )
        print(f"created tenant {t.slug} ({t.id}) {t.name} {t.timezone} {t.currency}")
        return 0

    return _run(lambda: _with_db(go))


def cmd_tenant_list(_args: argparse.Namespace) -> int:
    async def go(db: Any) -> int:
        for t in await _tenants(db, None):
            print(f"{t.slug}\t{t.id}\t{t.name}\t{t.timezone}\t{t.currency}")
        return 0

    return _run(lambda: _with_db(go))


def cmd_apikey_create(args: argparse.Namespace) -> int:
    from gateway.auth import create_api_key

    async def go(db: Any) -> int:
        tenant = await _tenant(db, args.tenant)
        key = await create_api_key(db, tenant.id, name=args.name, scopes=args.scopes)
        scopes = ",".join(sorted(s.value for s in key.scopes))
        print(
            f"API key for {tenant.slug} (scopes {scopes}); shown once, store it now:",
            file=sys.stderr,
        )
        print(key.plaintext)
        return 0

    return _run(lambda: _with_db(go))


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from gateway import ledger

    async def go(db: Any) -> int:
        bad = 0
        for t in await _tenants(db, args.tenant):
            async with db.tenant_tx(t.id, write=False) as tx:
                violations = await ledger.verify(tx)
            for v in violations:
                print(f"{t.slug}\t{v.code}\t{v.member_id or '-'}\t{v.detail}")
            bad += len(violations)
            if not violations:
                print(f"{t.slug}\tok")
        if bad:
            print(f"{bad} ledger violation(s) found", file=sys.stderr)
            return 1
        return 0

    return _run(lambda: _with_db(go))


def _parse_now(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        now = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise UsageError(f"--now must be an ISO-8601 timestamp, got {raw!r}") from exc
    if now.tzinfo is None:
        raise UsageError("--now needs a timezone offset, e.g. 2025-01-01T00:00:00+08:00")
    return now


def cmd_ledger_expire(args: argparse.Namespace) -> int:
    from gateway import ledger

    now = _parse_now(args.now)

    async def go(db: Any) -> int:
        for t in await _tenants(db, args.tenant):
            async with db.tenant_tx(t.id) as tx:
                r = await ledger.expire_due(tx, now=now)
            print(
                f"{t.slug}\tlots expired {r.lots_expired}\tamount {r.amount_expired}"
                f"\tholds expired {r.holds_expired}"
            )
        return 0

    return _run(lambda: _with_db(go))


def cmd_mall_expire(args: argparse.Namespace) -> int:
    """Expire points-mall redemptions whose payment window passed (stock and points back)."""
    from gateway.mall import service as mall

    now = _parse_now(args.now)

    async def go(db: Any) -> int:
        for t in await _tenants(db, args.tenant):
            async with db.tenant_tx(t.id) as tx:
                n = await mall.expire_due(tx, now=now)
            print(f"{t.slug}\tredemptions expired {n}")
        return 0

    return _run(lambda: _with_db(go))


def cmd_mall_payment_key(args: argparse.Namespace) -> int:
    """Print the tenant's payment-callback key (hex) for the brand's payment service."""
    from gateway.mall.payments import payment_key

    settings = _settings()

    async def go(db: Any) -> int:
        tenant = await _tenant(db, args.tenant)
        print(
            f"payment callback key for {tenant.slug}: sign POST /mall/{tenant.slug}/payments "
            "with X-Memberhub-Signature (see gateway/README.md, 'The points mall')",
            file=sys.stderr,
        )
        print(payment_key(settings.secret_key, tenant.id).hex())
        return 0

    return _run(lambda: _with_db(go))


def cmd_export_schema(args: argparse.Namespace) -> int:
    from schema import sdl

    text = sdl()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _load_config(args: argparse.Namespace) -> dict[str, Any]:
    import json

    config: dict[str, Any] = {}
    if args.config:
        try:
            text = sys.stdin.read() if args.config == "-" else Path(args.config).read_text()
            loaded = json.loads(text)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read --config {args.config}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise UsageError("--config must hold a JSON object")
        config.update(loaded)
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {item!r}")
        config[key] = value
    return config


def cmd_channel_configure(args: argparse.Namespace) -> int:
    settings = _settings()
    config = _load_config(args)

    async def go(db: Any) -> int:
        from gateway.sync import connections
        from gateway.sync.registry import default_registry

        tenant = await _tenant(db, args.tenant)
        async with db.tenant_tx(tenant.id) as tx:
            conn = await connections.configure(
                tx,
                channel=args.channel,
                connector=args.connector,
                config=config,
                registry=default_registry(),
                master=settings.secret_key,
                enabled=not args.disabled,
            )
        secrets = ", ".join(f"{k}={v}" for k, v in sorted(conn.secrets.items())) or "none"
        print(f"configured {conn.channel} ({conn.connector}); secrets: {secrets}")
        return 0

    return _run(lambda: _with_db(go))


def cmd_channel_list(args: argparse.Namespace) -> int:
    settings = _settings()

    async def go(db: Any) -> int:
        from gateway.sync import connections

        tenant = await _tenant(db, args.tenant)
        async with db.tenant_tx(tenant.id, write=False) as tx:
            rows = await connections.list_connections(tx, settings.secret_key)
        for c in rows:
            state = "enabled" if c.enabled else "disabled"
            print(f"{c.channel}\t{c.connector}\t{state}\tupdated {c.updated_at.isoformat()}")
        return 0

    return _run(lambda: _with_db(go))


def cmd_channel_check(args: argparse.Namespace) -> int:
    settings = _settings()

    async def go() -> int:
        from gateway.hub import Hub
        from gateway.sync.runner import SyncRunner

        hub = Hub(settings)
        try:
            tenant = await _tenant(hub.db, args.tenant)
            connector = await SyncRunner(hub).build(tenant.id, args.channel)
            try:
                result = await connector.check()
            finally:
                await connector.close()
        finally:
            await hub.close()
        print(("ok: " if result.ok else "failed: ") + (result.message or ""))
        return 0 if result.ok else 1

    return _run(go)


def cmd_sync(args: argparse.Namespace) -> int:
    """Pull a channel; exit 0 when the run succeeded, 1 when it failed (bookmarks are kept)."""
    settings = _settings()

    async def go() -> int:
        from gateway.hub import Hub
        from gateway.sync.progress import ProgressBar
        from gateway.sync.runner import SyncRunner

        hub = Hub(settings)
        try:
            tenant = await _tenant(hub.db, args.tenant)
            runner = SyncRunner(hub, batch_size=args.batch_size)
            report = await runner.run(
                tenant.id,
                args.channel,
                trigger="cli",
                streams=args.stream or None,
                progress=None if args.no_progress else ProgressBar(),
            )
        finally:
            await hub.close()
        totals = {"read": 0, "created": 0, "updated": 0, "unchanged": 0, "rejected": 0}
        for st in report.streams.values():
            for k in totals:
                totals[k] += getattr(st, k)
        summary = ", ".join(f"{v} {k}" for k, v in totals.items())
        print(f"sync {report.run_id} {report.status}: {summary}")
        for e in report.errors[:20]:
            print(f"  {e['stream']} {e['key'] or ''}: {e['error']}", file=sys.stderr)
        if report.error_count > 20:
            print(f"  … {report.error_count - 20} more (see syncRuns)", file=sys.stderr)
        if report.message:
            print(f"error: {report.message}", file=sys.stderr)
        return 0 if report.status == "succeeded" else 1

    return _run(go)


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    if not 1 <= args.members <= 200_000:
        raise UsageError("--members must be between 1 and 200000")
    return run_demo(members=args.members, serve=not args.no_serve, host=args.host, port=args.port)


# ---- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="memberhub", description="memberhub — brand member hub")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")

    s = sub.add_parser("serve", help="run the GraphQL gateway (uvicorn)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(fn=cmd_serve)

    db = sub.add_parser("db", help="database migrations").add_subparsers(
        dest="db_command", required=True, metavar="action"
    )
    db.add_parser("upgrade", help="apply migrations up to head").set_defaults(fn=cmd_db_upgrade)

    tenant = sub.add_parser("tenant", help="brands (tenants)").add_subparsers(
        dest="tenant_command", required=True, metavar="action"
    )
    tc = tenant.add_parser("create", help="register a brand")
    tc.add_argument("--name", required=True)
    tc.add_argument("--slug", required=True)
    tc.add_argument("--timezone", default="Asia/Shanghai")
    tc.add_argument("--currency", default="CNY")
    tc.set_defaults(fn=cmd_tenant_create)
    tenant.add_parser("list", help="list brands").set_defaults(fn=cmd_tenant_list)

    apikey = sub.add_parser("apikey", help="API keys").add_subparsers(
        dest="apikey_command", required=True, metavar="action"
    )
    ac = apikey.add_parser("create", help="issue a key (printed once)")
    ac.add_argument("--tenant", required=True, help="tenant slug or id")
    ac.add_argument("--name", required=True)
    ac.add_argument("--scopes", required=True, help="comma-separated: admin,read,pos,connector")
    ac.set_defaults(fn=cmd_apikey_create)

    ledger = sub.add_parser("ledger", help="ledger maintenance").add_subparsers(
        dest="ledger_command", required=True, metavar="action"
    )
    lv = ledger.add_parser("verify", help="check ledger invariants (exit 1 on violations)")
    lv.add_argument("--tenant", help="one tenant (default: all)")
    lv.set_defaults(fn=cmd_ledger_verify)
    le = ledger.add_parser("expire", help="expire due lots and release holds past their TTL")
    le.add_argument("--tenant", help="one tenant (default: all)")
    le.add_argument("--now", help="ISO-8601 instant with offset (default: now)")
    le.set_defaults(fn=cmd_ledger_expire)

    mall = sub.add_parser("mall", help="points mall maintenance").add_subparsers(
        dest="mall_command", required=True, metavar="action"
    )
    me = mall.add_parser("expire", help="expire redemptions whose payment window passed")
    me.add_argument("--tenant", help="one tenant (default: all)")
    me.add_argument("--now", help="ISO-8601 instant with offset (default: now)")
    me.set_defaults(fn=cmd_mall_expire)
    mk = mall.add_parser("payment-key", help="print a tenant's payment-callback key (hex)")
    mk.add_argument("--tenant", required=True, help="tenant slug or id")
    mk.set_defaults(fn=cmd_mall_payment_key)

    ex = sub.add_parser("export-schema", help="print (or write) the GraphQL SDL")
    ex.add_argument("--output", help="write to this file instead of stdout")
    ex.set_defaults(fn=cmd_export_schema)

    channel = sub.add_parser("channel", help="channel connections").add_subparsers(
        dest="channel_command", required=True, metavar="action"
    )
    cc = channel.add_parser("configure", help="create or update a channel connection")
    cc.add_argument("--tenant", required=True, help="tenant slug or id")
    cc.add_argument("--channel", required=True, help="the tenant's name for it, e.g. tmall")
    cc.add_argument("--connector", required=True, help="installed connector, e.g. tmall")
    cc.add_argument("--config", help="JSON file with the configuration ('-' reads stdin)")
    cc.add_argument("--set", action="append", metavar="KEY=VALUE", help="one config value")
    cc.add_argument("--disabled", action="store_true", help="store it disabled")
    cc.set_defaults(fn=cmd_channel_configure)
    cl = channel.add_parser("list", help="list a tenant's channels (secrets never shown)")
    cl.add_argument("--tenant", required=True)
    cl.set_defaults(fn=cmd_channel_list)
    ck = channel.add_parser("check", help="test a channel's credentials against the platform")
    ck.add_argument("--tenant", required=True)
    ck.add_argument("--channel", required=True)
    ck.set_defaults(fn=cmd_channel_check)

    sy = sub.add_parser("sync", help="pull a channel's members and orders (resumable)")
    sy.add_argument("--tenant", required=True, help="tenant slug or id")
    sy.add_argument("--channel", required=True)
    sy.add_argument("--stream", action="append", help="only this stream (repeatable)")
    sy.add_argument("--batch-size", type=int, default=500)
    sy.add_argument("--no-progress", action="store_true", help="no progress bar")
    sy.set_defaults(fn=cmd_sync)

    from gateway.cli_rules import add_commands as add_rules_commands

    add_rules_commands(sub)

    from gateway.cli_webhooks import add_commands as add_webhooks_commands

    add_webhooks_commands(sub)

    from gateway.cli_triggers import add_commands as add_triggers_commands

    add_triggers_commands(sub)

    from gateway.cli_coupons import add_commands as add_coupons_commands

    add_coupons_commands(sub)

    from gateway.cli_segments import add_commands as add_segments_commands

    add_segments_commands(sub)

    demo = sub.add_parser("demo", help="seed a demo brand on SQLite, print a key, serve")
    demo.add_argument("--members", type=int, default=2000)
    demo.add_argument("--no-serve", action="store_true", help="seed and print, do not serve")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(fn=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage and the error
        return int(exc.code or 0)
    try:
        return int(args.fn(args))
    except (UsageError, DomainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
