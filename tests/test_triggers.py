"""Scheduled care triggers: birthday and member day fire once per member per occurrence, on the
tenant's local date (the server runs in UTC), through the tenant's benefits rule sets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway import ledger, members
from gateway.errors import InvalidInput
from gateway.ids import derived_id
from gateway.members import ProfileInput
from gateway.rules import config as rule_config
from gateway.rules.hookspecs import EventView, Grant, Intent, MemberSnapshot, hookimpl
from gateway.rules.manager import RuleRegistry, load_rules
from gateway.storage.db import Database
from gateway.storage.tables import MemberEvent, MemberGrant
from gateway.tenants import TenantInfo, create_tenant
from gateway.triggers import TriggerOptions, TriggerReport, run_triggers
from tests.support import cli_database, pos_member, seed_tenant

ME: Any = MemberEvent.__table__  # type: ignore[attr-defined]
MG: Any = MemberGrant.__table__  # type: ignore[attr-defined]


class Care:
    """A small benefits rule set: a coupon on the birthday, 50 points on the member day."""

    name, slot, version = "t_care", "benefits", "1"
    stacking = "stack"

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: Mapping[str, Any]
    ) -> list[Intent | Grant]:
        if event.type == "member.birthday":
            return [Grant("coupon:BDAY", f"birthday {event.payload['year']}", "t_care")]
        if event.type == "member.member_day":
            return [Intent("points", 50, f"member day {event.payload['month']}", "t_care")]
        return []


class CarePlugin:
    @hookimpl
    def register_rule_sets(self) -> list[Any]:
        return [Care()]


@pytest.fixture
def registry() -> RuleRegistry:
    return load_rules([CarePlugin()])


async def _configure(db: Database, tenant: TenantInfo, registry: RuleRegistry) -> None:
    async with db.tenant_tx(tenant.id) as tx:
        await rule_config.save(tx, {"benefits": [{"rule": "t_care"}]}, registry, actor="test")


async def _member(
    db: Database, tenant: TenantInfo, ref: str, birthday: date | None, registry: RuleRegistry
) -> uuid.UUID:
    return await pos_member(
        db,
        tenant,
        ref,
        profile=ProfileInput(birthday=birthday),
        now=datetime(2026, 1, 1, tzinfo=UTC),
        rules=registry,
    )


async def _events(db: Database, tenant: TenantInfo, etype: str) -> dict[uuid.UUID, list[Any]]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        rows = (
            await tx.conn.execute(
                select(ME.c.id, ME.c.member_id, ME.c.payload, ME.c.occurred_at).where(
                    ME.c.tenant_id == tenant.id, ME.c.type == etype
                )
            )
        ).all()
    out: dict[uuid.UUID, list[Any]] = {}
    for r in rows:
        out.setdefault(r.member_id, []).append(r)
    return out


async def _coupons(db: Database, tenant: TenantInfo) -> dict[uuid.UUID, int]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        rows = (
            await tx.conn.execute(
                select(MG.c.member_id).where(MG.c.tenant_id == tenant.id, MG.c.code == "BDAY")
            )
        ).scalars()
        out: dict[uuid.UUID, int] = {}
        for m in rows:
            out[m] = out.get(m, 0) + 1
    return out


def _counts(reports: list[TriggerReport]) -> dict[str, tuple[int, int]]:
    """(fired, already) of the triggers that ran (not those the tenant does not configure)."""
    return {r.trigger: (r.fired, r.already) for r in reports if not r.skipped}


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


async def test_birthday_fires_once_on_the_local_date(
    db: Database, tenant: TenantInfo, registry: RuleRegistry
) -> None:
    berlin = await create_tenant(
        db, name="Berlin", slug=f"be-{uuid.uuid4().hex[:8]}", timezone="Europe/Berlin"
    )
    for t in (tenant, berlin):
        await _configure(db, t, registry)
    a = await _member(db, tenant, "A", date(1990, 11, 8), registry)
    no_birthday = await _member(db, tenant, "B", None, registry)
    seventh = await _member(db, tenant, "C", date(1990, 11, 7), registry)
    loser = await _member(db, tenant, "D", date(1995, 11, 8), registry)
    survivor = await _member(db, tenant, "E", date(1985, 3, 3), registry)
    async with db.tenant_tx(tenant.id) as tx:
        await members.merge(tx, survivor_id=survivor, loser_id=loser, reason="same person")
    f = await _member(db, berlin, "F", date(1991, 11, 8), registry)

    def run(t: TenantInfo, now: datetime) -> Any:
        return run_triggers(db, t.id, now=now, only=["birthday"], registry=registry)

    # 15:59 UTC on the 7th is 23:59 on the 7th in Shanghai: only the 7th's birthday.
    assert _counts(await run(tenant, utc(2026, 11, 7, 15, 59))) == {"birthday": (1, 0)}
    assert set(await _events(db, tenant, "member.birthday")) == {seventh}
    # 16:01 UTC is 00:01 on the 8th there: A fires; the merged D never does.
    reports = await run(tenant, utc(2026, 11, 7, 16, 1))
    assert reports[0].days == [date(2026, 11, 8)]
    fired = await _events(db, tenant, "member.birthday")
    assert a in fired and loser not in fired and no_birthday not in fired
    # Berlin is still on the 7th at that instant (17:01), then on the 8th at 23:01 UTC.
    assert _counts(await run(berlin, utc(2026, 11, 7, 16, 1))) == {"birthday": (0, 0)}
    assert _counts(await run(berlin, utc(2026, 11, 7, 23, 1))) == {"birthday": (1, 0)}
    # Re-running, late the same day, or concurrently: a no-op.
    again = await asyncio.gather(
        run(tenant, utc(2026, 11, 8, 15, 0)), run(berlin, utc(2026, 11, 8, 9))
    )
    assert [r[0].fired for r in again] == [0, 0]
    assert again[1][0].already == 1
    ev = (await _events(db, tenant, "member.birthday"))[a]
    assert len(ev) == 1 and ev[0].id == derived_id(tenant.id, "trigger", "birthday", a, "2026")
    assert ev[0].payload == {"year": 2026, "age": 36}
    coupons = await _coupons(db, tenant)
    assert coupons[a] == 1 and coupons[seventh] == 1 and loser not in coupons
    assert no_birthday not in coupons
    assert (await _coupons(db, berlin)) == {f: 1}
    # Next year fires again, once.
    assert (await run(tenant, utc(2027, 11, 8, 2)))[0].fired >= 1
    assert (await _coupons(db, tenant))[a] == 2


async def test_29_february_birthdays(
    db: Database, tenant: TenantInfo, registry: RuleRegistry
) -> None:
    await _configure(db, tenant, registry)
    leap = await _member(db, tenant, "L", date(1992, 2, 29), registry)
    feb28 = await _member(db, tenant, "M", date(1990, 2, 28), registry)

    async def fired_on(now: datetime) -> set[uuid.UUID]:
        before = await _events(db, tenant, "member.birthday")
        await run_triggers(db, tenant.id, now=now, only=["birthday"], registry=registry)
        after = await _events(db, tenant, "member.birthday")
        return {m for m in after if len(after[m]) > len(before.get(m, []))}

    # 2027 is not a leap year: 29 February birthdays fire on the 28th, with the 28th's.
    assert await fired_on(utc(2027, 2, 28, 1)) == {leap, feb28}
    assert await fired_on(utc(2027, 3, 1, 1)) == set()
    # 2028 is: each on its own day.
    assert await fired_on(utc(2028, 2, 28, 1)) == {feb28}
    assert await fired_on(utc(2028, 2, 29, 1)) == {leap}
    assert await fired_on(utc(2028, 2, 29, 12)) == set()
    ages = sorted(e.payload["age"] for e in (await _events(db, tenant, "member.birthday"))[leap])
    assert ages == [35, 36]


async def test_member_day_once_a_month_for_active_members(
    db: Database, tenant: TenantInfo, registry: RuleRegistry
) -> None:
    await _configure(db, tenant, registry)
    ids = [await _member(db, tenant, f"P{i}", None, registry) for i in range(5)]
    async with db.tenant_tx(tenant.id) as tx:
        await members.merge(tx, survivor_id=ids[0], loser_id=ids[1], reason="same person")
    active = [ids[0], *ids[2:]]

    def run(now: datetime, **kw: Any) -> Any:
        return run_triggers(
            db, tenant.id, now=now, only=["member_day"], registry=registry, batch=2, **kw
        )

    # Shanghai: 23:59 on the 7th — not due; 00:01 on the 8th — due (default day 8).
    first = await run(utc(2026, 11, 7, 15, 59))
    assert first[0].days == [] and _counts(first) == {"member_day": (0, 0)}
    # Two machines at once: each member's event is recorded (and paid) once.
    both = await asyncio.gather(run(utc(2026, 11, 7, 16, 1)), run(utc(2026, 11, 7, 16, 2)))
    assert sum(r[0].fired for r in both) == 4 and sum(r[0].already for r in both) == 4
    assert _counts(await run(utc(2026, 11, 8, 15, 0))) == {"member_day": (0, 4)}
    # Another day later in the month (the day was changed): the month already fired.
    late = await run(utc(2026, 11, 20, 2), options=TriggerOptions(member_day=20))
    assert _counts(late) == {"member_day": (0, 4)}
    async with db.tenant_tx(tenant.id, write=False) as tx:
        views = await ledger.balances_for(tx, ids)
    points = {m: v.available for (m, acct), v in views.items() if acct == "points"}
    assert points == dict.fromkeys(active, 50)
    ev = await _events(db, tenant, "member.member_day")
    assert set(ev) == set(active)
    e = ev[ids[2]][0]
    assert e.payload == {"month": "2026-11", "day": 8}
    assert e.id == derived_id(tenant.id, "trigger", "member_day", ids[2], "2026-11")
    # Catch-up: the job was down on 8 December; on the 10th, --since the 1st fires it.
    assert _counts(await run(utc(2026, 12, 10, 2))) == {"member_day": (0, 0)}
    caught = await run(utc(2026, 12, 10, 2), since=date(2026, 12, 1))
    assert caught[0].days == [date(2026, 12, 8)] and _counts(caught) == {"member_day": (4, 0)}
    with pytest.raises(InvalidInput):
        await run(utc(2026, 12, 10, 2), since=date(2026, 12, 11))
    with pytest.raises(InvalidInput):
        TriggerOptions(member_day=31)


async def test_tenant_isolation_and_tenants_without_benefits(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo, registry: RuleRegistry
) -> None:
    await _configure(db, tenant, registry)
    mine = await _member(db, tenant, "X", date(1990, 11, 8), registry)
    theirs = await _member(db, other_tenant, "X", date(1990, 11, 8), registry)
    reports = await run_triggers(db, tenant.id, now=utc(2026, 11, 8, 2), registry=registry)
    assert _counts(reports) == {"birthday": (1, 0), "member_day": (1, 0)}
    assert set(await _events(db, tenant, "member.birthday")) == {mine}
    assert await _events(db, other_tenant, "member.birthday") == {}
    # The other tenant runs no rule set reacting to member events: skipped, nothing recorded.
    skipped = await run_triggers(db, other_tenant.id, now=utc(2026, 11, 8, 2), registry=registry)
    assert all(r.skipped for r in skipped)
    assert await _events(db, other_tenant, "member.member_day") == {}
    assert theirs != mine


def test_cli_triggers_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    url = cli_database(tmp_path, monkeypatch, ("Brand", "brand"), ("Plain", "plain"))
    cfg = tmp_path / "rules.yaml"
    cfg.write_text("benefits:\n  - rule: bakery_join_gift\n", encoding="utf-8")
    assert main(["rules", "apply", "--tenant", "brand", str(cfg)]) == 0

    async def seed(db: Database, t: TenantInfo) -> None:
        for ref, born in (("A", date(1990, 11, 8)), ("B", None)):
            await pos_member(db, t, ref, profile=ProfileInput(birthday=born))

    seed_tenant(url, "brand", seed)
    capsys.readouterr()
    now = "2026-11-08T00:30:00+08:00"
    assert main(["triggers", "run", "--now", now]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "brand\tbirthday\t2026-11-08\tfired 1\talready 0" in out
    assert "brand\tmember_day\t2026-11-08\tfired 2\talready 0" in out
    assert any(line.startswith("plain\tbirthday\tskipped") for line in out)
    assert main(["triggers", "run", "--tenant", "brand", "--now", now, "--only", "birthday"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "brand\tbirthday\t2026-11-08\tfired 0\talready 1"
    ]
    args = ["triggers", "run", "--tenant", "brand", "--now", now, "--member-day", "9"]
    assert main([*args, "--only", "member_day"]) == 0
    assert capsys.readouterr().out.splitlines() == ["brand\tmember_day\tnot due"]
    assert main([*args, "--member-day", "30"]) == 2
    assert "--member-day" in capsys.readouterr().err
    assert main([*args, "--since", "yesterday"]) == 2
