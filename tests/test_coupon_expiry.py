"""The expiry sweeper: ``coupon.expiring`` once per coupon N days ahead, unused coupons past
their end become ``expired`` with ``coupon.expired``, idempotently; and the ``memberhub coupons``
commands end to end (bulk issue, job, run-jobs, stats, expire) on a fresh SQLite database."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway import coupons
from gateway.cli import main
from gateway.coupons.expiry import days_left
from gateway.errors import InvalidInput
from gateway.storage.db import Database
from gateway.storage.tables import MemberEvent
from gateway.tenants import TenantInfo, get_tenant
from tests.support import cli_database, seed_tenant
from tests.test_coupon_bulk import seed_members, seed_segment
from tests.test_coupons import T0, issue, new_member, reason, template, use

E: Any = MemberEvent.__table__  # type: ignore[attr-defined]


async def events_of(db: Database, tenant: TenantInfo, type_: str) -> list[Any]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        rows = await tx.conn.execute(
            select(E.c.member_id, E.c.payload, E.c.occurred_at)
            .where(E.c.tenant_id == tenant.id, E.c.type == type_)
            .order_by(E.c.occurred_at)
        )
        return list(rows)


async def statuses(db: Database, tenant: TenantInfo, member: uuid.UUID) -> dict[str, str]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return {c.code: c.status for c in await coupons.coupons_for(tx, member)}


async def test_sweeper_notifies_once_then_expires_once(db: Database, tenant: TenantInfo) -> None:
    m = await new_member(db, tenant, "A")
    t = await template(db, tenant, valid_days=10, returnable_on_refund=True)
    kept, used, returned = [await issue(db, tenant, t, m) for _ in range(3)]
    await use(db, tenant, used.code, "O-1")
    await use(db, tenant, returned.code, "O-2")

    early = await coupons.sweep(db, tenant.id, now=T0 + timedelta(days=6))
    assert (early.expired, early.notified) == (0, 0)  # 4 days left: outside the 3-day notice
    soon = T0 + timedelta(days=8)
    first = await coupons.sweep(db, tenant.id, now=soon)
    assert (first.expired, first.notified) == (0, 1)
    assert (await coupons.sweep(db, tenant.id, now=soon + timedelta(hours=1))).notified == 0
    [notice] = await events_of(db, tenant, "coupon.expiring")
    assert notice.member_id == m
    # T0 is 12:00 in Shanghai; the coupon's last valid day is 10 days on: 2 calendar days left.
    assert notice.payload == {
        "coupon_id": str(kept.id),
        "template_code": t.code,
        "valid_until": kept.valid_until.isoformat(),
        "days_left": 2,
    }

    async with db.tenant_tx(tenant.id) as tx:  # refunded after its end: usable no more
        assert await coupons.return_on_refund(tx, returned.code, "O-2", now=T0 + timedelta(days=11))
    end = T0 + timedelta(days=12)
    assert await reason(use(db, tenant, kept.code, "O-3", now=end)) == "EXPIRED"
    swept = await coupons.sweep(db, tenant.id, now=end, batch=1)
    assert (swept.expired, swept.notified) == (2, 0)
    assert (await coupons.sweep(db, tenant.id, now=end)).expired == 0
    assert await statuses(db, tenant, m) == {
        kept.code: "expired",
        used.code: "redeemed",
        returned.code: "expired",
    }
    expired = await events_of(db, tenant, "coupon.expired")
    assert sorted(e.payload["coupon_id"] for e in expired) == sorted(
        [str(kept.id), str(returned.id)]
    )
    assert all(e.occurred_at == kept.valid_until for e in expired)
    assert await reason(use(db, tenant, kept.code, "O-4", now=T0)) == "EXPIRED"


async def test_sweeper_options(db: Database, tenant: TenantInfo) -> None:
    with pytest.raises(InvalidInput):
        await coupons.sweep(db, tenant.id, notify_days=-1)
    m = await new_member(db, tenant, "A")
    await issue(db, tenant, await template(db, tenant, valid_days=2), m)
    off = await coupons.sweep(db, tenant.id, now=T0 + timedelta(days=1), notify_days=0)
    assert off.notified == 0
    assert (await coupons.sweep(db, tenant.id, now=T0, notify_days=30)).notified == 1
    # Calendar days in the tenant's timezone; validUntil is exclusive.
    shanghai = (await get_tenant(db, tenant.id)).timezone  # type: ignore[union-attr]
    midnight = T0.replace(hour=16)  # 00:00 the next day in Shanghai
    assert days_left(midnight, T0, shanghai) == 0
    assert days_left(midnight + timedelta(seconds=1), T0, shanghai) == 1
    assert days_left(midnight, T0, "UTC") == 0


def test_coupon_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    url = cli_database(tmp_path, monkeypatch, ("Brand", "brand"))

    async def seed(db: Database, tenant: TenantInfo) -> None:
        await seed_segment(db, tenant, await seed_members(db, tenant, 12), "VIP")
        await template(db, tenant, code="SAVE6", valid_days=1)

    seed_tenant(url, "brand", seed)
    capsys.readouterr()
    args = ["coupons", "issue-bulk", "--tenant", "brand", "--template", "SAVE6"]
    assert main([*args, "--segment", "VIP", "--batch", "5", "--no-run"]) == 0
    started = capsys.readouterr().out
    assert started.startswith("started ") and "pending\t0/12" in started
    job_id = started.split()[1]
    assert main(["coupons", "run-jobs", "--batch", "5"]) == 0
    assert "done\t12/12\tissued 12\tskipped 0" in capsys.readouterr().out
    assert main([*args, "--segment", "VIP"]) == 0  # the same job again: nothing more
    assert "resuming " in capsys.readouterr().out
    assert main(["coupons", "job", job_id, "--tenant", "brand"]) == 0
    assert "issued 12" in capsys.readouterr().out
    assert main(["coupons", "job", job_id, "--tenant", "brand", "--cancel"]) == 2
    assert "finished" in capsys.readouterr().err

    assert main(["coupons", "stats", "--tenant", "brand", "--template", "SAVE6", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (st["issued"], st["redeemed"], st["by_channel"]) == (12, 0, [])
    later = "2100-01-01T00:00:00+08:00"
    assert main(["coupons", "expire", "--tenant", "brand", "--now", later]) == 0
    assert "expired 12" in capsys.readouterr().out
    assert main(["coupons", "stats", "--tenant", "brand", "--template", "SAVE6"]) == 0
    assert "expired 12" in capsys.readouterr().out
    assert main(["coupons", "job", "nope", "--tenant", "brand"]) == 2
