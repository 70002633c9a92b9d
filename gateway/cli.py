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


def cmd_export_schema(args: argparse.Namespace) -> int:
    from schema import sdl

    text = sdl()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


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

    ex = sub.add_parser("export-schema", help="print (or write) the GraphQL SDL")
    ex.add_argument("--output", help="write to this file instead of stdout")
    ex.set_defaults(fn=cmd_export_schema)

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
