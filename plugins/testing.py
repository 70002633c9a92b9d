"""``plugins.testing``: test a rule plugin from its own test suite, no gateway set-up needed.

Two levels, both used by the built-in plugins' tests:

- **pure** — rule sets are pure functions, so most tests are one call: build a
  :func:`snapshot` and an event (:func:`order_paid`, :func:`activity`), then
  :func:`evaluate` (checks the output exactly like the engine does) or :func:`check_config`
  (the validation a tenant's config goes through when it is saved);
- **lab** — :class:`RuleLab` runs the *real* engine, ledger, tier policy, task engine and points
  mall on a throwaway SQLite database for one tenant with your config: join members, send a year
  of orders and activity with explicit timestamps, run the scheduled tier review, and assert on
  balances, tier history, task completions and grants::

      async with RuleLab.open(config, plugins=[my_plugin]) as lab:
          ann = await lab.join("ann", at=JAN_1)
          await lab.order(ann, 38_800, at=MAR_3)
          assert await lab.tier(ann) == "silver"

Nothing here needs PostgreSQL or a running gateway; plugins register through their entry point
(``entry_points=True``, the default) and/or ``plugins=[module_or_object]``.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from gateway import ledger, members, orders
from gateway.errors import ConfigInvalid
from gateway.ids import derived_id
from gateway.rules import config as rule_config
from gateway.rules import engine
from gateway.rules.hookspecs import EventView, Grant, Intent, MemberSnapshot, TierView
from gateway.rules.manager import RuleRegistry, load_rules
from gateway.rules.tier_jobs import TierJobReport, evaluate_due, override_tier
from gateway.storage.db import Database, create_engine
from gateway.storage.migrate import upgrade
from gateway.storage.tables import MemberGrant, TaskCompletion, TierHistory

_SECRET = b"plugins.testing-secret-key-32byt"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

# ---- pure helpers ----------------------------------------------------------------------------


def snapshot(
    *,
    member_id: uuid.UUID | None = None,
    created_at: datetime = EPOCH,
    balances: Mapping[str, int] | None = None,
    timezone: str = "Asia/Shanghai",
    tier: TierView | None = None,
    profile: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> MemberSnapshot:
    """A member snapshot with sensible defaults (a fresh member, no balances, no tier)."""
    return MemberSnapshot(
        member_id or uuid.uuid4(),
        created_at,
        dict(balances or {}),
        timezone,
        tier,
        dict(profile or {}),
        at,
    )


def order_paid(
    paid_fen: int,
    *,
    at: datetime = EPOCH,
    channel: str = "tmall",
    lines: Sequence[Mapping[str, Any]] = (),
    member_id: uuid.UUID | None = None,
    order_id: uuid.UUID | None = None,
    store_code: str | None = None,
    external_id: str | None = None,
) -> EventView:
    """An ``order.paid`` event shaped like the one the orders module records."""
    oid = order_id or uuid.uuid4()
    payload = {
        "order_id": str(oid),
        "channel": channel,
        "external_id": external_id or str(oid)[:8],
        "paid_fen": paid_fen,
        "total_fen": paid_fen,
        "store_code": store_code,
        "guide_code": None,
        "lines": [dict(line) for line in lines],
    }
    return EventView(uuid.uuid4(), "order.paid", member_id or uuid.uuid4(), at, payload)


def activity(
    type: str, *, at: datetime = EPOCH, member_id: uuid.UUID | None = None, **payload: Any
) -> EventView:
    """Any other member event (``task.checkin``, ``community.posted``, ``referral.joined``…)."""
    return EventView(uuid.uuid4(), type, member_id or uuid.uuid4(), at, payload)


def registry(plugins: Iterable[object] = (), *, entry_points: bool = True) -> RuleRegistry:
    """The registry the gateway would build (entry points) plus ``plugins``; it validates every
    rule set the way the gateway does at start-up."""
    return load_rules(plugins, entry_points=entry_points)


def evaluate(
    rule_set: Any,
    snap: MemberSnapshot,
    event: EventView,
    config: Mapping[str, Any] | None = None,
) -> list[Intent | Grant]:
    """Call an earning/benefits rule set and check its output exactly like the engine does."""
    got = rule_set.evaluate(snap, event, dict(config or {}))
    return [p.outcome for p in engine._checked(rule_set.name, rule_set.slot, got, None)]


def check_config(
    document: Mapping[str, Any], plugins: Iterable[object] = (), *, entry_points: bool = True
) -> list[tuple[str, str]]:
    """The problems a tenant config would be rejected with (``[]`` when it would be saved)."""
    try:
        rule_config.validate(
            rule_config._jsonable(dict(document)), registry(plugins, entry_points=entry_points)
        )
    except ConfigInvalid as exc:
        return list(exc.problems)
    return []


# ---- the lab: the real engine on a throwaway database --------------------------------------------


@dataclass(frozen=True)
class HistoryLine:
    at: datetime
    change: str
    from_tier: str | None
    to_tier: str
    reason: str


class RuleLab:
    """One tenant on a temporary SQLite database, configured with ``document``."""

    def __init__(self, db: Database, tenant_id: uuid.UUID, reg: RuleRegistry, path: str) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self.registry = reg
        self._path = path
        self._names: dict[str, uuid.UUID] = {}
        self._seq = 0

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        document: Mapping[str, Any],
        *,
        plugins: Iterable[object] = (),
        entry_points: bool = True,
        timezone: str = "Asia/Shanghai",
    ) -> AsyncIterator[RuleLab]:
        from gateway import tenants

        fd, path = tempfile.mkstemp(prefix="rulelab-", suffix=".db")
        os.close(fd)
        url = f"sqlite+aiosqlite:///{path}"
        await upgrade(url)
        db = Database(create_engine(url))
        try:
            reg = registry(plugins, entry_points=entry_points)
            tenant = await tenants.create_tenant(
                db, name="Rule lab", slug=f"lab-{uuid.uuid4().hex[:8]}", timezone=timezone
            )
            lab = cls(db, tenant.id, reg, path)
            async with db.tenant_tx(tenant.id) as tx:
                await rule_config.save(tx, document, reg, actor="plugins.testing")
            yield lab
        finally:
            await db.dispose()
            os.unlink(path)

    def _key(self) -> bytes:
        from gateway.identifiers import tenant_key

        return tenant_key(_SECRET, self.tenant_id)

    def member(self, name: str) -> uuid.UUID:
        return self._names[name]

    async def join(
        self,
        name: str,
        *,
        at: datetime,
        channel: str = "pos",
        profile: Mapping[str, Any] | None = None,
    ) -> uuid.UUID:
        """A new member (a POS card named ``name``), with its ``member.joined`` event."""
        async with self.db.tenant_tx(self.tenant_id) as tx:
            prof = members.ProfileInput(**dict(profile)) if profile else None
            res = await members.ingest(
                tx,
                channel=channel,
                identifiers=[members.IdentifierInput("pos_card", "brand", name)],
                profile=prof,
                key=self._key(),
                now=at,
                rules=self.registry,
            )
        self._names[name] = res.member_id
        return res.member_id

    async def order(
        self,
        member: uuid.UUID,
        paid_fen: int,
        *,
        at: datetime,
        lines: Sequence[Mapping[str, Any]] = (),
        channel: str = "tmall",
        external_id: str | None = None,
        store_code: str | None = None,
    ) -> uuid.UUID:
        """A paid order through ``orders.record_order`` (so the order, its event and its
        earning are exactly what a channel sync would produce); returns the order id."""
        self._seq += 1
        ext = external_id or f"LAB-{self._seq:06d}"
        line_inputs = [
            orders.OrderLineInput(
                sku=str(line.get("sku", f"SKU-{i}")),
                name=str(line.get("name", line.get("sku", f"item {i}"))),
                category=line.get("category"),
                quantity=int(line.get("quantity", 1)),
                unit_price_fen=int(line.get("amount_fen", 0))
                // max(int(line.get("quantity", 1)), 1),
                amount_fen=int(line.get("amount_fen", 0)),
            )
            for i, line in enumerate(lines)
        ]
        inp = orders.OrderInput(
            channel,
            ext,
            member,
            "paid",
            line_inputs,
            paid_fen,
            paid_fen,
            placed_at=at,
            paid_at=at,
            store_code=store_code,
        )
        async with self.db.tenant_tx(self.tenant_id) as tx:
            res = await orders.record_order(tx, inp, registry=self.registry, now=at)
        return res.order_id

    async def refund(self, order_id: uuid.UUID, amount_fen: int, *, at: datetime) -> Any:
        self._seq += 1
        async with self.db.tenant_tx(self.tenant_id) as tx:
            return await orders.refund_order(
                tx,
                order_id=order_id,
                refund_id=f"R{self._seq}",
                amount_fen=amount_fen,
                now=at,
                registry=self.registry,
            )

    async def activity(
        self,
        member: uuid.UUID,
        type: str,
        *,
        at: datetime,
        key: str | None = None,
        **payload: Any,
    ) -> engine.Outcome | None:
        """Record an activity event and run the rules; the same ``key`` is the same event
        (``None`` comes back for a replay)."""
        self._seq += 1
        event_id = derived_id(self.tenant_id, "lab", key or f"{self._seq}")
        async with self.db.tenant_tx(self.tenant_id) as tx:
            return await engine.record_and_process(
                tx,
                event_id=event_id,
                member_id=member,
                type=type,
                payload=dict(payload),
                occurred_at=at,
                registry=self.registry,
                now=at,
            )

    async def dry_run(self, event: EventView) -> engine.Outcome:
        async with self.db.tenant_tx(self.tenant_id) as tx:
            return await engine.process_event(
                tx, event, self.registry, now=event.occurred_at, dry_run=True
            )

    async def review(self, *, at: datetime) -> TierJobReport:
        """Run the scheduled tier review (``memberhub tiers evaluate``) as of ``at``."""
        return await evaluate_due(self.db, self.tenant_id, now=at, registry=self.registry)

    async def override(
        self,
        member: uuid.UUID,
        tier: str | None,
        *,
        until: datetime | None,
        reason: str,
        at: datetime,
    ) -> None:
        async with self.db.tenant_tx(self.tenant_id) as tx:
            await override_tier(
                tx,
                member,
                tier=tier,
                until=until,
                reason=reason,
                actor="plugins.testing",
                now=at,
                registry=self.registry,
            )

    async def balances(self, member: uuid.UUID, *, at: datetime | None = None) -> dict[str, int]:
        async with self.db.tenant_tx(self.tenant_id) as tx:
            views = await ledger.balances_for(tx, [member], now=at)
        return {a: v.available for (m, a), v in views.items() if m == member}

    async def tier(self, member: uuid.UUID, *, at: datetime | None = None) -> str | None:
        """The effective tier as stored (after the last event or review)."""
        async with self.db.tenant_tx(self.tenant_id) as tx:
            state = await engine.load_tier_state(tx, member)
        return state.effective(at or datetime.now(UTC))

    async def history(self, member: uuid.UUID) -> list[HistoryLine]:
        th: Any = TierHistory.__table__  # type: ignore[attr-defined]
        async with self.db.tenant_tx(self.tenant_id) as tx:
            rows = await tx.conn.execute(
                select(th)
                .where(th.c.tenant_id == self.tenant_id, th.c.member_id == member)
                .order_by(th.c.at, th.c.created_at)
            )
            return [HistoryLine(r.at, r.change, r.from_tier, r.to_tier, r.reason) for r in rows]

    async def grants(self, member: uuid.UUID) -> list[tuple[str, str, str]]:
        """``(kind, code, rule)`` of every grant, oldest first."""
        g: Any = MemberGrant.__table__  # type: ignore[attr-defined]
        async with self.db.tenant_tx(self.tenant_id) as tx:
            rows = await tx.conn.execute(
                select(g.c.kind, g.c.code, g.c.rule)
                .where(g.c.tenant_id == self.tenant_id, g.c.member_id == member)
                .order_by(g.c.created_at, g.c.id)
            )
            return [(r.kind, r.code, r.rule) for r in rows]

    async def coupon_template(self, code: str, **fields: Any) -> None:
        """Create a coupon template (defaults: ¥10 off, valid 30 days; any field of
        ``gateway.coupons.create_template`` may be given), so ``coupon:<code>`` grants really
        become coupons in the lab."""
        from gateway import coupons

        spec: dict[str, Any] = {"kind": "amount_off", "off_fen": 1000, "validity": "relative"}
        spec.update(valid_days=30, title=code, **fields)
        async with self.db.tenant_tx(self.tenant_id) as tx:
            await coupons.create_template(
                tx, code=code, now=datetime(2000, 1, 1, tzinfo=UTC), **spec
            )

    async def coupons(self, member: uuid.UUID) -> list[tuple[str, str]]:
        """``(template code, source)`` of every coupon the member holds, oldest first (a grant's
        coupons have the source ``rule:<rule>`` or ``mall``)."""
        from gateway.coupons.model import C, T

        async with self.db.tenant_tx(self.tenant_id) as tx:
            rows = await tx.conn.execute(
                select(T.c.code, C.c.source)
                .join(T, (T.c.tenant_id == C.c.tenant_id) & (T.c.id == C.c.template_id))
                .where(C.c.tenant_id == self.tenant_id, C.c.member_id == member)
                .order_by(C.c.issued_at, C.c.idem_key)
            )
            return [(r.code, r.source) for r in rows]

    async def offers(
        self, member: uuid.UUID, *, at: datetime, reward: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """The points mall as the member sees it at ``at``: ``{reward code: {mode: option}}``
        (each option with ``points``, ``cash_fen``, ``eligible``, ``reason``, ``rule``)."""
        from gateway.mall import service as mall

        async with self.db.tenant_tx(self.tenant_id) as tx:
            found = await mall.offers(tx, member, registry=self.registry, now=at, reward=reward)
        return {o.reward.code: {opt.mode: opt for opt in o.options} for o in found}

    async def redeem(
        self, member: uuid.UUID, reward: str, mode: str, *, key: str, at: datetime
    ) -> Any:
        """Exchange ``reward`` in ``mode`` (``points``, ``points_cash``, ``cash``) through the real
        mall; refusals raise as they would over the API (``NotEligible`` with its reason)."""
        from gateway.mall import service as mall

        async with self.db.tenant_tx(self.tenant_id) as tx:
            return await mall.redeem(
                tx,
                member_id=member,
                reward=reward,
                mode=mode,
                idem_key=key,
                registry=self.registry,
                now=at,
            )

    async def completions(self, member: uuid.UUID) -> list[tuple[str, int, int]]:
        """``(task, points, growth)`` of every paid task completion, in time order."""
        tc: Any = TaskCompletion.__table__  # type: ignore[attr-defined]
        async with self.db.tenant_tx(self.tenant_id) as tx:
            rows = await tx.conn.execute(
                select(tc.c.task, tc.c.points, tc.c.growth)
                .where(tc.c.tenant_id == self.tenant_id, tc.c.member_id == member)
                .order_by(tc.c.at, tc.c.id)
            )
            return [(r.task, int(r.points), int(r.growth)) for r in rows]

    async def violations(self) -> list[Any]:
        """``ledger verify`` for the lab tenant: must be empty after any scenario."""
        async with self.db.tenant_tx(self.tenant_id) as tx:
            return await ledger.verify(tx)
