"""Care triggers configured per tenant (``triggers:``): points about to expire, dormant members,
purchases slowing down, direct actions (coupons, points) and event-driven ``on_event`` entries —
each firing once per member per occurrence, on the tenant's local dates."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from gateway import coupons, ledger, members, orders
from gateway.errors import ConfigInvalid
from gateway.ids import derived_id
from gateway.members import ProfileInput
from gateway.orders import OrderInput, OrderLineInput
from gateway.rules import config as rule_config
from gateway.rules.engine import record_and_process
from gateway.rules.manager import RuleRegistry, load_rules
from gateway.storage.db import Database
from gateway.storage.tables import LedgerTransfer, MemberEvent
from gateway.tenants import TenantInfo, create_tenant
from gateway.triggers import TriggerOptions, TriggerReport, run_triggers
from tests.support import cli_database, pos_member, seed_tenant

ME: Any = MemberEvent.__table__  # type: ignore[attr-defined]
LT: Any = LedgerTransfer.__table__  # type: ignore[attr-defined]
SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def registry() -> RuleRegistry:
    return load_rules()


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def sh(*a: int) -> datetime:
    return datetime(*a, tzinfo=SH)


async def _save(db: Database, t: TenantInfo, doc: dict[str, Any], registry: RuleRegistry) -> None:
    async with db.tenant_tx(t.id) as tx:
        await rule_config.save(tx, doc, registry, actor="test")


async def _template(db: Database, t: TenantInfo, code: str, **kw: Any) -> None:
    async with db.tenant_tx(t.id) as tx:
        await coupons.create_template(
            tx,
            code=code,
            title=code.title(),
            kind="amount_off",
            off_fen=500,
            validity="relative",
            valid_days=30,
            now=utc(2026, 1, 1),
            **kw,
        )


async def _member(
    db: Database,
    t: TenantInfo,
    ref: str,
    registry: RuleRegistry,
    *,
    birthday: date | None = None,
    joined: datetime = utc(2026, 1, 1),
    channel: str = "pos",
) -> uuid.UUID:
    return await pos_member(
        db,
        t,
        ref,
        channel=channel,
        profile=ProfileInput(birthday=birthday),
        now=joined,
        rules=registry,
    )


async def _order(
    db: Database,
    t: TenantInfo,
    member: uuid.UUID,
    at: datetime,
    registry: RuleRegistry,
    fen: int = 1000,
) -> uuid.UUID:
    line = OrderLineInput("SKU", "Bread", None, 1, fen, fen)
    inp = OrderInput(
        channel="pos",
        external_id=uuid.uuid4().hex[:20],
        member_id=member,
        status="paid",
        lines=[line],
        total_fen=fen,
        paid_fen=fen,
        placed_at=at,
        paid_at=at,
    )
    async with db.tenant_tx(t.id) as tx:
        res = await orders.record_order(tx, inp, now=at, registry=registry)
    return res.order_id


async def _events(db: Database, t: TenantInfo, etype: str) -> dict[tuple[uuid.UUID, Any], Any]:
    async with db.tenant_tx(t.id, write=False) as tx:
        rows = (
            await tx.conn.execute(
                select(ME.c.id, ME.c.member_id, ME.c.payload).where(
                    ME.c.tenant_id == t.id, ME.c.type == etype
                )
            )
        ).all()
    return {r.id: r for r in rows}


async def _coupons(db: Database, t: TenantInfo, member: uuid.UUID) -> list[str]:
    async with db.tenant_tx(t.id, write=False) as tx:
        return sorted(c.source for c in await coupons.coupons_for(tx, member))


async def _bonus(db: Database, t: TenantInfo, source: str) -> dict[uuid.UUID, int]:
    async with db.tenant_tx(t.id, write=False) as tx:
        rows = await tx.conn.execute(
            select(LT.c.member_id, func.sum(LT.c.amount))
            .where(LT.c.tenant_id == t.id, LT.c.source == source)
            .group_by(LT.c.member_id)
        )
        return {m: int(a) for m, a in rows}


def _counts(reports: list[TriggerReport]) -> dict[str, tuple[int, int]]:
    return {r.trigger: (r.fired, r.already) for r in reports if not r.skipped}


def _eid(t: TenantInfo, name: str, member: uuid.UUID, key: str) -> uuid.UUID:
    return derived_id(t.id, "trigger", name, member, key)


# ---- configuration ---------------------------------------------------------------------------


def test_config_validation_names_every_problem_by_path(registry: RuleRegistry) -> None:
    doc = {
        "earning": ["points_per_yuan"],
        "triggers": {
            "birthday": {"actions": {"coupon": "", "points": -5}},
            "member_day": {"day": 31},
            "points_expiring": {"days_ahead": 0, "accounts": ["growth"]},
            "dormant": {"days": "ninety", "colour": "red"},
            "purchase_slowing": {"factor": 1, "min_orders": 1},
            "weekly": {},
            "on_event": [
                {"event": "tier.changd", "actions": {"points": 10}},
                {"event": "segment.entered", "where": {"segment_cod": "VIP"}, "actions": {}},
                {"event": "points.changed", "actions": {"points": 1, "account": "growth"}},
                {"event": "tier.changed"},
            ],
        },
    }
    with pytest.raises(ConfigInvalid) as err:
        rule_config.validate(doc, registry)
    paths = [p for p, _ in err.value.problems]
    assert paths == [
        "triggers.birthday.actions.coupon",
        "triggers.birthday.actions.points",
        "triggers.member_day.day",
        "triggers.points_expiring.days_ahead",
        "triggers.points_expiring.accounts[0]",
        "triggers.dormant.colour",
        "triggers.dormant.days",
        "triggers.purchase_slowing.factor",
        "triggers.purchase_slowing.min_orders",
        "triggers.weekly",
        "triggers.on_event[0].event",
        "triggers.on_event[1].where.segment_cod",
        "triggers.on_event[1].actions",
        "triggers.on_event[2].event",
        "triggers.on_event[2].actions.account",
        "triggers.on_event[3].actions",
    ]
    ok = rule_config.validate(
        {
            "triggers": {
                "birthday": None,
                "member_day": False,
                "dormant": {"days": 60, "actions": {"coupon": ["A", "B"], "points": 5}},
                "on_event": [
                    {
                        "event": "tier.changed",
                        "where": {"to": ["gold", "platinum"]},
                        "actions": {"points": 1},
                    }
                ],
            }
        },
        registry,
    )
    t = ok.triggers
    assert set(t.scheduled) == {"birthday", "dormant"} and t.disabled == {"member_day"}
    assert t.scheduled["dormant"].options == {"days": 60, "never_ordered": True}
    assert t.scheduled["dormant"].actions.coupons == ("A", "B")
    assert t.on_event[0].matches("tier.changed", {"to": "gold"})
    assert not t.on_event[0].matches("tier.changed", {"to": "silver"})
    assert not ok.bulk_safe  # on_event entries need the engine for every event


async def test_saving_refuses_unknown_coupon_templates(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo, registry: RuleRegistry
) -> None:
    await _template(db, other_tenant, "BDAY")  # another tenant's template does not count
    doc = {"triggers": {"birthday": {"actions": {"coupon": "BDAY"}}}}
    with pytest.raises(ConfigInvalid) as err:
        await _save(db, tenant, doc, registry)
    assert err.value.problems == [("triggers.birthday.actions.coupon", "no coupon template 'BDAY'")]
    await _template(db, tenant, "BDAY")
    await _save(db, tenant, doc, registry)


# ---- scheduled triggers with actions ------------------------------------------------------------


async def test_actions_give_exactly_once_per_occurrence_without_rule_sets(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo, registry: RuleRegistry
) -> None:
    await _template(db, tenant, "BDAY", per_member_limit=1)
    await _save(
        db,
        tenant,
        {
            "triggers": {
                "birthday": {
                    "actions": {"coupon": "BDAY", "points": 20, "reason": "Happy birthday"}
                },
                "member_day": {"day": 18, "actions": {"points": 5}},
            }
        },
        registry,
    )
    a = await _member(db, tenant, "A", registry, birthday=date(1990, 11, 18))
    b = await _member(db, tenant, "B", registry, birthday=date(1991, 11, 18))
    c = await _member(db, tenant, "C", registry)
    theirs = await _member(db, other_tenant, "A", registry, birthday=date(1990, 11, 18))
    # B already holds the one BDAY coupon a member may have: the birthday still fires and pays.
    async with db.tenant_tx(tenant.id) as tx:
        await coupons.issue(tx, "BDAY", b, source="crm", idem_key="crm-b", now=utc(2026, 2, 1))

    def run(now: datetime, **kw: Any) -> Any:
        return run_triggers(db, tenant.id, now=now, registry=registry, batch=2, **kw)

    # 17 Nov 23:59 in Shanghai: nothing due; 18 Nov 00:01 there (16:01 UTC on the 17th): both.
    assert _counts(await run(utc(2026, 11, 17, 15, 59))) == {
        "birthday": (0, 0),
        "member_day": (0, 0),
    }
    runs = await asyncio.gather(*(run(utc(2026, 11, 17, 16, m)) for m in (1, 2, 3)))
    assert sum(r[0].fired for r in runs) == 2 and sum(r[1].fired for r in runs) == 3
    assert _counts(await run(utc(2026, 11, 18, 15))) == {"birthday": (0, 2), "member_day": (0, 3)}
    assert await _coupons(db, tenant, a) == ["trigger:birthday"]
    assert await _coupons(db, tenant, b) == ["crm"]  # refused (MEMBER_LIMIT), logged
    assert await _bonus(db, tenant, "trigger:birthday") == {a: 20, b: 20}
    assert await _bonus(db, tenant, "trigger:member_day") == {a: 5, b: 5, c: 5}
    # The CLI flag overrides the configured day; the month has fired already either way.
    late = await run(utc(2026, 11, 20, 2), options=TriggerOptions(member_day=20))
    assert _counts(late)["member_day"] == (0, 3)
    # The other tenant configured nothing: skipped, its member untouched.
    others = await run_triggers(db, other_tenant.id, now=utc(2026, 11, 18, 2), registry=registry)
    assert all(r.skipped == "not configured" for r in others)
    assert await _coupons(db, other_tenant, theirs) == []


async def test_points_expiring_once_per_member_per_local_expiry_date(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo, registry: RuleRegistry
) -> None:
    for t in (tenant, other_tenant):
        await _save(db, t, {"triggers": {"points_expiring": {"days_ahead": 14}}}, registry)
    a = await _member(db, tenant, "A", registry)
    b = await _member(db, tenant, "B", registry)
    x = await _member(db, other_tenant, "X", registry)

    async def lot(
        t: TenantInfo, m: uuid.UUID, amount: int, expires: datetime, acct: str = "points"
    ) -> None:
        async with db.tenant_tx(t.id) as tx:
            await ledger.credit(
                tx,
                member_id=m,
                account=acct,
                amount=amount,
                reason="test",
                source="test",
                idem_key=uuid.uuid4().hex,
                expires_at=expires,
                now=utc(2026, 1, 1),
            )

    await lot(tenant, a, 100, sh(2026, 11, 20, 23, 59, 59))  # the 20th, local
    await lot(tenant, a, 30, sh(2026, 11, 20, 10))  # the 20th too: one event, 130
    await lot(tenant, a, 50, sh(2026, 11, 21, 0, 0))  # the 21st
    await lot(tenant, a, 70, sh(2026, 11, 23, 0, 0))  # beyond 8 + 14 days: next day's run
    await lot(tenant, b, 40, sh(2026, 11, 10))
    await lot(tenant, b, 10, sh(2026, 11, 7, 12))  # expired already (not swept): never
    await lot(tenant, x, 99, sh(2026, 11, 10))
    async with db.tenant_tx(tenant.id) as tx:  # b spends both lots (soonest expiring first)
        await ledger.debit(
            tx,
            member_id=b,
            account="points",
            amount=50,
            reason="spend",
            source="test",
            idem_key="spend-b",
            now=utc(2026, 11, 1),
        )
    # 00:30 on 8 Nov in Shanghai.
    now = utc(2026, 11, 7, 16, 30)
    reports = await run_triggers(db, tenant.id, now=now, registry=registry, batch=1)
    assert _counts(reports) == {"points_expiring": (2, 0)}
    got = {
        (r.member_id, r.id): dict(r.payload)
        for r in (await _events(db, tenant, "points.expiring")).values()
    }
    assert got == {
        (a, _eid(tenant, "points_expiring", a, "points:2026-11-20")): {
            "account": "points",
            "amount": 130,
            "expires_at": sh(2026, 11, 20, 10).astimezone(UTC).isoformat(),
            "days_left": 12,
        },
        (a, _eid(tenant, "points_expiring", a, "points:2026-11-21")): {
            "account": "points",
            "amount": 50,
            "expires_at": sh(2026, 11, 21).astimezone(UTC).isoformat(),
            "days_left": 13,
        },
    }
    # Repeated and concurrent runs later that day: nothing new.
    again = await asyncio.gather(
        *(
            run_triggers(db, tenant.id, now=now + timedelta(hours=h), registry=registry)
            for h in (1, 2)
        )
    )
    assert [_counts(r) for r in again] == [{"points_expiring": (0, 2)}] * 2
    # The next local day brings the 23rd into the window.
    nxt = await run_triggers(db, tenant.id, now=utc(2026, 11, 8, 16, 30), registry=registry)
    assert _counts(nxt) == {"points_expiring": (1, 2)}
    assert len(await _events(db, other_tenant, "points.expiring")) == 0


# ---- dormant and purchase slowing against an independent computation -------------------------


async def _history(
    db: Database, t: TenantInfo, registry: RuleRegistry, seed: int
) -> tuple[dict[uuid.UUID, list[tuple[datetime, uuid.UUID]]], dict[uuid.UUID, datetime]]:
    """Random members with random paid orders (some refunded, some members merged): returns
    each active member's purchases (time, order id) and join time."""
    rnd = random.Random(seed)
    start = utc(2026, 1, 1)
    joined: dict[uuid.UUID, datetime] = {}
    bought: dict[uuid.UUID, list[tuple[datetime, uuid.UUID]]] = {}
    for i in range(24):
        at = start + timedelta(days=rnd.randint(0, 60), seconds=rnd.randint(0, 86399))
        m = await _member(db, t, f"R{seed}-{i}", registry, joined=at)
        joined[m] = at
        bought[m] = []
        when = at
        rhythm = rnd.choice([0.2, 3, 7, 14, 30])
        for _ in range(rnd.choice([0, 1, 2, 3, 4, 6, 8])):
            when += timedelta(
                seconds=int(rnd.uniform(0.3, 1.8) * rhythm * 86400) + rnd.randint(1, 999)
            )
            if when > utc(2026, 6, 30):
                break
            oid = await _order(db, t, m, when, registry)
            if rnd.random() < 0.15:  # wholly refunded: not a purchase
                async with db.tenant_tx(t.id) as tx:
                    await orders.refund_order(
                        tx,
                        order_id=oid,
                        refund_id=f"r-{oid.hex[:8]}",
                        amount_fen=1000,
                        now=when + timedelta(hours=1),
                        registry=registry,
                    )
                continue
            if rnd.random() < 0.1:  # partly refunded: still a purchase
                async with db.tenant_tx(t.id) as tx:
                    await orders.refund_order(
                        tx,
                        order_id=oid,
                        refund_id=f"p-{oid.hex[:8]}",
                        amount_fen=300,
                        now=when + timedelta(hours=1),
                        registry=registry,
                    )
            bought[m].append((when, oid))
    ids = list(bought)
    for survivor, loser in ((ids[0], ids[1]), (ids[2], ids[3])):
        if joined[loser] < joined[survivor]:
            survivor, loser = loser, survivor
        async with db.tenant_tx(t.id) as tx:
            await members.merge(tx, survivor_id=survivor, loser_id=loser, reason="same person")
        bought[survivor] += bought.pop(loser)
        joined.pop(loser)
    return bought, joined


def _local(at: datetime) -> date:
    return at.astimezone(SH).date()


@pytest.mark.parametrize("seed", [7, 2026])
async def test_dormant_and_slowing_match_an_independent_computation(
    db: Database, tenant: TenantInfo, registry: RuleRegistry, seed: int
) -> None:
    cfg = {
        "triggers": {
            "dormant": {"days": 30},
            "purchase_slowing": {"factor": 2.0, "min_orders": 3},
        }
    }
    await _save(db, tenant, cfg, registry)
    bought, joined = await _history(db, tenant, registry, seed)
    now = utc(2026, 7, 1, 3)
    today = _local(now)

    expected_dormant: dict[uuid.UUID, str] = {}
    expected_slowing: dict[uuid.UUID, dict[str, Any]] = {}
    for m, buys in bought.items():
        buys = sorted(buys)
        if buys:
            last_at, last_id = buys[-1]
            if (today - _local(last_at)).days >= 30:
                expected_dormant[m] = str(last_id)
            gaps = [round((b[0] - a[0]).total_seconds()) for a, b in itertools.pairwise(buys)]
            big = [g for g in gaps if g >= 86400]
            if big and len(big) + 1 >= 3:
                median = statistics.median(big)
                since = (now - last_at).total_seconds()
                if since > 2.0 * median:
                    expected_slowing[m] = {
                        "usual_interval_days": round(median / 86400, 2),
                        "days_since_last": int(since // 86400),
                        "last_order_at": last_at.isoformat(),
                        "key": str(last_id),
                    }
        elif (today - _local(joined[m])).days >= 30:
            expected_dormant[m] = "joined"
    assert expected_dormant and expected_slowing  # the seeds exercise both

    # Two machines at once (real parallel connections on PostgreSQL): each event once.
    both = await asyncio.gather(
        *(run_triggers(db, tenant.id, now=now, registry=registry, batch=b) for b in (5, 7))
    )
    for name, want in (("dormant", expected_dormant), ("purchase_slowing", expected_slowing)):
        counts = [_counts(r)[name] for r in both]
        assert sum(f for f, _ in counts) == len(want) and sum(a for _, a in counts) == len(want)
    dormant = await _events(db, tenant, "member.dormant")
    assert set(dormant) == {_eid(tenant, "dormant", m, k) for m, k in expected_dormant.items()}
    slowing = await _events(db, tenant, "member.purchase_slowing")
    want = {
        _eid(tenant, "purchase_slowing", m, e.pop("key")): (m, e)
        for m, e in expected_slowing.items()
    }
    assert {i: (r.member_id, dict(r.payload)) for i, r in slowing.items()} == want
    # Once per spell: a re-run fires nothing; a new order starts a new spell.
    assert _counts(
        await run_triggers(db, tenant.id, now=now + timedelta(hours=5), registry=registry)
    ) == {
        "dormant": (0, len(expected_dormant)),
        "purchase_slowing": (0, len(expected_slowing)),
    }
    m = next(iter(expected_dormant))
    new = await _order(db, tenant, m, utc(2026, 7, 2), registry)
    later = utc(2026, 8, 1, 17)  # 2 August in Shanghai: 31 local days after the new order
    await run_triggers(db, tenant.id, now=later, registry=registry, only=["dormant"])
    assert _eid(tenant, "dormant", m, str(new)) in await _events(db, tenant, "member.dormant")


async def test_dormant_counts_local_days(db: Database, registry: RuleRegistry) -> None:
    berlin = await create_tenant(
        db, name="Berlin", slug=f"be-{uuid.uuid4().hex[:8]}", timezone="Europe/Berlin"
    )
    await _save(
        db, berlin, {"triggers": {"dormant": {"days": 10, "never_ordered": False}}}, registry
    )
    m = await _member(db, berlin, "A", registry)
    never = await _member(db, berlin, "N", registry)
    # 23:30 on 1 March in Berlin (22:30 UTC): the 1st there.
    oid = await _order(db, berlin, m, utc(2026, 3, 1, 22, 30), registry)

    def run(now: datetime) -> Any:
        return run_triggers(db, berlin.id, now=now, registry=registry)

    # 23:59 on the 10th in Berlin: 9 local days; 00:01 on the 11th: 10.
    assert _counts(await run(utc(2026, 3, 10, 22, 59))) == {"dormant": (0, 0)}
    assert _counts(await run(utc(2026, 3, 10, 23, 1))) == {"dormant": (1, 0)}
    ev = await _events(db, berlin, "member.dormant")
    assert list(ev) == [_eid(berlin, "dormant", m, str(oid))]
    assert dict(next(iter(ev.values())).payload) == {
        "days": 10,
        "last_order_at": utc(2026, 3, 1, 22, 30).isoformat(),
    }
    assert never not in {r.member_id for r in ev.values()}


# ---- event-driven triggers ----------------------------------------------------------------------


async def test_on_event_actions_run_once_when_the_engine_processes_the_event(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo, registry: RuleRegistry
) -> None:
    await _template(db, tenant, "WELCOME")
    await _save(
        db,
        tenant,
        {
            "earning": ["points_per_yuan"],  # earning only: joins would not even be processed
            "triggers": {
                "on_event": [
                    {
                        "name": "pos_welcome",
                        "event": "member.joined",
                        "where": {"channel": "pos"},
                        "actions": {"coupon": "WELCOME"},
                    },
                    {
                        "event": "task.checkin",
                        "where": {"channel": ["app", "mini"]},
                        "actions": {"points": 3},
                    },
                ]
            },
        },
        registry,
    )
    await _save(db, other_tenant, {"earning": ["points_per_yuan"]}, registry)
    pos = await _member(db, tenant, "P", registry, channel="pos")
    app = await _member(db, tenant, "Q", registry, channel="app")
    theirs = await _member(db, other_tenant, "P", registry, channel="pos")
    assert await _member(db, tenant, "P", registry, channel="pos") == pos  # no second join
    assert await _coupons(db, tenant, pos) == ["trigger:pos_welcome"]
    assert await _coupons(db, tenant, app) == []
    assert await _coupons(db, other_tenant, theirs) == []

    async def checkin(m: uuid.UUID, key: str, channel: str) -> Any:
        async with db.tenant_tx(tenant.id) as tx:
            return await record_and_process(
                tx,
                event_id=derived_id(tenant.id, "test", key),
                member_id=m,
                type="task.checkin",
                payload={"channel": channel},
                occurred_at=utc(2026, 3, 1),
                registry=registry,
            )

    assert await checkin(pos, "c1", "app") is not None
    assert await checkin(pos, "c1", "app") is None  # the same event again: nothing
    await checkin(pos, "c2", "pos")  # does not match
    await checkin(app, "c3", "mini")
    assert await _bonus(db, tenant, "trigger:on_event_1") == {pos: 3, app: 3}


async def test_on_event_tier_upgrade_gives_points(
    db: Database, tenant: TenantInfo, registry: RuleRegistry
) -> None:
    await _save(
        db,
        tenant,
        {
            "tiers": {"rule": "classic_tiers"},
            "earning": ["classic_earning"],
            "triggers": {
                "on_event": [
                    {
                        "name": "silver_welcome",
                        "event": "tier.changed",
                        "where": {"change": "upgrade", "to": "silver"},
                        "actions": {"points": 100, "reason": "Welcome to Silver"},
                    }
                ]
            },
        },
        registry,
    )
    m = await _member(db, tenant, "T", registry)
    await _order(db, tenant, m, utc(2026, 3, 1), registry, fen=100_000)  # 1000 yuan: member
    assert await _bonus(db, tenant, "trigger:silver_welcome") == {}
    await _order(db, tenant, m, utc(2026, 3, 2), registry, fen=150_000)  # 2500 yuan: silver
    assert await _bonus(db, tenant, "trigger:silver_welcome") == {m: 100}
    async with db.tenant_tx(tenant.id, write=False) as tx:
        [line] = (
            await tx.conn.execute(
                select(LT.c.reason, LT.c.kind).where(
                    LT.c.tenant_id == tenant.id, LT.c.source == "trigger:silver_welcome"
                )
            )
        ).all()
    assert tuple(line) == ("Welcome to Silver", "bonus")


# ---- CLI ----------------------------------------------------------------------------------------


def test_cli_runs_configured_triggers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    url = cli_database(tmp_path, monkeypatch, ("Brand", "brand"))
    cfg = tmp_path / "rules.yaml"
    cfg.write_text("triggers:\n  member_day: {day: 9}\n  dormant: {days: 30}\n", encoding="utf-8")
    assert main(["rules", "apply", "--tenant", "brand", str(cfg)]) == 0
    seed_tenant(url, "brand", lambda db, t: pos_member(db, t, "A", now=utc(2026, 1, 1)))
    capsys.readouterr()
    run = ["triggers", "run", "--tenant", "brand", "--now", "2026-11-09T00:30:00+08:00"]
    assert main([*run, "--only", "member_day,dormant", "--only", "birthday"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "brand\tmember_day\t2026-11-09\tfired 1\talready 0",
        "brand\tdormant\t2026-11-09\tfired 1\talready 0",
        "brand\tbirthday\tskipped: not configured",
    ]
    assert main([*run, "--member-day", "8"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        "brand\tmember_day\tnot due" in out
        and "brand\tdormant\t2026-11-09\tfired 0\talready 1" in out
    )
    assert main([*run, "--only", "weekly"]) == 2
    assert "weekly" in capsys.readouterr().err


def test_on_event_refuses_unprocessed_events_and_scheduled_names() -> None:
    """An entry that could never fire (its event is only recorded) or whose name would share
    the action keys of a scheduled trigger is refused at save time, with its path."""
    doc = {
        "triggers": {
            "on_event": [
                {"event": "coupon.expired", "actions": {"points": 10}},
                {"name": "birthday", "event": "member.birthday", "actions": {"points": 5}},
                {"event": "member.merged", "actions": {"points": 1}},
            ]
        }
    }
    with pytest.raises(ConfigInvalid) as err:
        rule_config.validate(doc, load_rules())
    paths = {p for p, _ in err.value.problems}
    assert {
        "triggers.on_event[0].event",
        "triggers.on_event[1].name",
        "triggers.on_event[2].event",
    } <= paths, err.value.problems
