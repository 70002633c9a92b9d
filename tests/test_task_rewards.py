# ruff: noqa: F811  (the `api` fixture is imported from tests.graphql_client)
"""Task rewards beyond points: a task (or a check-in streak bonus) may grant ``coupon:…`` and
other rewards; each completion grants them once and the coupon is issued at once (both
databases). Unknown reward kinds are refused when the config is saved."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gateway import coupons, members
from gateway.coupons.model import C, T
from gateway.errors import ConfigInvalid
from gateway.identifiers import tenant_key
from gateway.members import IdentifierInput
from gateway.rules import config as rule_config
from gateway.rules import engine
from gateway.rules.manager import load_rules
from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from tests.conftest import TEST_SECRET
from tests.graphql_client import Api, api, new_member  # noqa: F401  (api: fixture)

REG = load_rules()
T0 = datetime(2026, 5, 1, 2, tzinfo=UTC)  # 10:00 in Shanghai
CONFIG: dict[str, Any] = {
    "tasks": [
        {
            "rule": "v8_tasks",
            "config": {
                "app_checkin": {
                    "points": 1,
                    "channels": ["app"],
                    "streak": [{"days": 3, "points": 5, "rewards": ["coupon:STREAK3"]}],
                },
                "follow_account": {"growth": 5, "rewards": ["coupon:FOLLOW", "gift:BADGE"]},
            },
        }
    ]
}


async def _member(db: Database, tenant: TenantInfo) -> uuid.UUID:
    async with db.tenant_tx(tenant.id) as tx:
        await rule_config.save(tx, CONFIG, REG, actor="test")
        for code in ("STREAK3", "FOLLOW"):
            await coupons.create_template(
                tx, code=code, title=code, kind="amount_off", off_fen=500,
                validity="relative", valid_days=30, now=T0,
            )  # fmt: skip
        res = await members.ingest(
            tx,
            channel="app",
            identifiers=[IdentifierInput("pos_card", "brand", "C-1")],
            key=tenant_key(TEST_SECRET, tenant.id),
            now=T0,
        )
        return res.member_id


async def _event(db: Database, tenant: TenantInfo, m: uuid.UUID, type: str, day: int) -> Any:
    at = T0 + timedelta(days=day)
    async with db.tenant_tx(tenant.id) as tx:
        return await engine.record_and_process(
            tx,
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant.id}/{type}/{day}"),
            member_id=m,
            type=type,
            payload={"channel": "app"},
            occurred_at=at,
            registry=REG,
            now=at,
        )


async def _coupons(db: Database, tenant: TenantInfo, m: uuid.UUID) -> list[tuple[str, str]]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        rows = await tx.conn.execute(
            select(T.c.code, C.c.source)
            .join(T, (T.c.tenant_id == C.c.tenant_id) & (T.c.id == C.c.template_id))
            .where(C.c.tenant_id == tenant.id, C.c.member_id == m)
        )
        return sorted((r.code, r.source) for r in rows)


async def test_a_streak_bonus_and_a_task_grant_coupons_once_per_completion(
    db: Database, tenant: TenantInfo
) -> None:
    m = await _member(db, tenant)
    for day in range(3):
        await _event(db, tenant, m, "task.checkin", day)
    assert await _coupons(db, tenant, m) == [("STREAK3", "rule:v8_tasks.app_checkin")]
    assert await _event(db, tenant, m, "task.checkin", 2) is None  # a replay grants nothing
    for day in (3, 4):  # the streak goes on, but the bonus is day 3 only (no repeat)
        await _event(db, tenant, m, "task.checkin", day)
    out = await _event(db, tenant, m, "wechat.followed", 5)
    assert [(f.code, f.status) for f in out.fulfilments] == [
        ("FOLLOW", "fulfilled"),
        ("BADGE", "issued"),  # a gift waits for the store system that owns it
    ]
    await _event(db, tenant, m, "wechat.followed", 6)  # `once`: no second completion
    assert await _coupons(db, tenant, m) == [
        ("FOLLOW", "rule:v8_tasks.follow_account"),
        ("STREAK3", "rule:v8_tasks.app_checkin"),
    ]


def test_an_unknown_reward_kind_is_refused_with_its_path() -> None:
    bad = {
        "tasks": [{"rule": "v8_tasks", "config": {"follow_account": {"rewards": ["voucher:X"]}}}]
    }
    with pytest.raises(ConfigInvalid) as err:
        rule_config.validate(bad, REG)
    [(path, message)] = err.value.problems
    assert path == "tasks[0].config" and "voucher:X" in message


async def test_a_members_task_list_shows_the_rewards(api: Api) -> None:
    async with api.hub.db.tenant_tx(api.a.id) as tx:
        await rule_config.save(tx, CONFIG, REG, actor="test")
    m = await new_member(api)
    body = await api.gql(
        "read",
        """query($id: ID!) { member(id: $id) { tasks {
          code rewards streakBonuses { days rewards } } } }""",
        {"id": m},
    )
    tasks = {t["code"]: t for t in body["data"]["member"]["tasks"]}
    assert tasks["follow_account"]["rewards"] == ["coupon:FOLLOW", "gift:BADGE"]
    assert tasks["app_checkin"]["streakBonuses"] == [{"days": 3, "rewards": ["coupon:STREAK3"]}]
