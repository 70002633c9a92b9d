"""The set-based batch path (``gateway.sync.bulk``) leaves exactly the state the per-record path
leaves: same ONE ID decisions (attach, new member, oldest weak owner, merges via the fallback),
same profile provenance, orders, lines, events, ledger lines and balances, same outcomes, and the
same idempotency (replaying the earning finds the original credits).

Two tenants of one database start from the same pre-state (people already known from POS, a CRM
import that forces merges, a weak receiver phone, an order already synced); one applies a World's
orders record by record (``bulk=False``), the other in batches; then both apply a second pass
(re-sent orders, newly paid ones, new ones). The states are compared in a canonical form (ids
differ, everything else must not).
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from connectors.testing import World, WorldOrder
from gateway import identifiers, members
from gateway.commerce.model import LINE, ORD
from gateway.errors import InvalidInput
from gateway.events import E
from gateway.identifiers import IdentifierKind, register_kind
from gateway.identity.model import MR, A, I, M
from gateway.ledger.store import B, T
from gateway.rules.earning import apply_event
from gateway.rules.hookspecs import EventView
from gateway.rules.manager import load_rules
from gateway.storage.db import Database
from gateway.sync import bulk
from gateway.sync.apply import apply_records
from gateway.sync.records import Identifier, OrderLineRecord, OrderRecord, Profile
from tests.conftest import TEST_SECRET, new_tenant

register_kind(IdentifierKind("bulk_test_customer", True, False, "", "test shop customer id"))
SHOP = "shop-9"
START = datetime(2026, 10, 1, tzinfo=UTC)
NOW1 = START + timedelta(days=6)
NOW2 = NOW1 + timedelta(hours=1)
RULES = load_rules()


def _record(o: WorldOrder) -> OrderRecord:
    p = o.person
    buyer: list[Any] = []
    if p.index % 11 != 3:
        buyer.append(Identifier("bulk_test_customer", SHOP, f"c{p.index}"))
        if p.index % 5:
            buyer.append(Identifier("phone", None, p.phone))
    elif p.index % 2:  # a few buyers are only known by a weak openid
        buyer.append(Identifier("wechat_openid", "app-1", f"o{p.index}"))
    # (the rest only by a receiver phone: a guest order, no member)
    buyer.append(Identifier("receiver_phone", SHOP, o.receiver_phone))
    if p.index % 17 == 5:
        buyer = []  # guest checkout: no member
    return OrderRecord(
        external_id=o.external_id,
        status=o.status,
        placed_at=o.created,
        paid_at=o.paid_at,
        updated_at=o.modified,
        total_fen=o.total_fen,
        paid_fen=o.paid_fen,
        lines=tuple(
            OrderLineRecord(li.sku, li.name, li.quantity, li.unit_fen, li.amount_fen, li.category)
            for li in o.lines
        ),
        buyer=tuple(buyer),
        profile=Profile(name=p.name, city=p.city if p.index % 3 else None) if p.index % 4 else None,
    )


async def _prestate(db: Database, tenant_id: uuid.UUID, key: bytes, world: World) -> None:
    """Identical pre-state for a tenant: POS members, CRM duplicates, a weak owner, one order."""
    past = START - timedelta(days=30)
    async with db.tenant_tx(tenant_id) as tx:
        for p in world.people:
            if "pos" in p.channels:
                await members.ingest(
                    tx,
                    channel="pos",
                    identifiers=[
                        Identifier("phone", None, p.phone),
                        Identifier("pos_card", "brand", p.pos_card),
                    ],
                    profile=Profile(name=f"{p.name}POS", observed_at=past),
                    key=key,
                    now=past,
                )
            if p.index % 6 == 1:  # CRM import: a second member holding only the customer id
                await members.ingest(
                    tx,
                    channel="crm",
                    identifiers=[Identifier("bulk_test_customer", SHOP, f"c{p.index}")],
                    key=key,
                    now=past + timedelta(seconds=p.index),
                )
            if p.index % 11 == 3:  # someone already owns this buyer's openid (weak) and phone
                await members.ingest(
                    tx,
                    channel="crm",
                    identifiers=[
                        Identifier("email", None, f"p{p.index}@example.com"),
                        Identifier("wechat_openid", "app-1", f"o{p.index}"),
                        Identifier("receiver_phone", SHOP, p.phone),
                    ],
                    key=key,
                    now=past,
                )
        first = world.orders["example"][0]
        await apply_records(tx, [_record(first)], channel="example", key=key, rules=RULES, now=past)


async def _apply(
    db: Database,
    tenant_id: uuid.UUID,
    key: bytes,
    recs: list[OrderRecord],
    now: datetime,
    *,
    use_bulk: bool,
) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(recs), 60):
        async with db.tenant_tx(tenant_id) as tx:
            out += await apply_records(
                tx,
                recs[i : i + 60],
                channel="example",
                key=key,
                rules=RULES,
                now=now,
                bulk=use_bulk,
            )
    return out


async def _state(db: Database, tenant_id: uuid.UUID) -> dict[str, Any]:
    """The tenant's data with ids replaced by stable keys (identity sets, external ids)."""
    async with db.tenant_tx(tenant_id, write=False) as tx:

        async def rows(table: Any) -> list[Any]:
            return list(
                (await tx.conn.execute(select(table).where(table.c.tenant_id == tenant_id))).all()
            )

        idents = await rows(I)
        mems = await rows(M)
        by_member: dict[uuid.UUID, list[tuple[str, str, str]]] = {}
        for r in idents:
            by_member.setdefault(r.member_id, []).append((r.kind, r.scope, r.value))
        key: dict[uuid.UUID, Any] = {m: tuple(sorted(v)) for m, v in by_member.items()}
        for m in mems:
            if m.status == "merged":
                key[m.id] = ("merged into", key.get(m.merged_into))
        ords = await rows(ORD)
        ext = {o.id: o.external_id for o in ords}
        mk = key.get
        return {
            "members": Counter(
                (
                    mk(m.id),
                    m.status,
                    m.name,
                    m.gender,
                    m.birthday,
                    m.city,
                    m.created_at,
                    m.updated_at,
                )
                for m in mems
            ),
            "identities": sorted(
                (r.kind, r.scope, r.value, mk(r.member_id), r.display, r.channel, r.created_at)
                for r in idents
            ),
            "attributes": sorted(
                (mk(r.member_id), r.field, r.value, r.channel, r.verified, r.observed_at)
                for r in await rows(A)
            ),
            "orders": sorted(
                (
                    o.external_id,
                    mk(o.member_id),
                    o.status,
                    o.total_fen,
                    o.paid_fen,
                    o.refunded_fen,
                    o.store_code,
                    o.guide_code,
                    o.placed_at,
                    o.paid_at,
                    o.created_at,
                    o.updated_at,
                )
                for o in ords
            ),
            "lines": sorted(
                (
                    ext[r.order_id],
                    r.line_no,
                    r.sku,
                    r.name,
                    r.category,
                    r.quantity,
                    r.unit_price_fen,
                    r.amount_fen,
                )
                for r in await rows(LINE)
            ),
            # a merged member's key is ("merged into", …): events order by repr, not by value
            "events": sorted(
                [
                    (
                        # member.joined (every new member) has no order; order.paid names its order
                        ext[uuid.UUID(r.payload["order_id"])] if "order_id" in r.payload else (),
                        r.type,
                        mk(r.member_id),
                        # points.changed names its transfer and member.merged its merge (fresh
                        # uuid7s on either path); the member merged in is compared by its key
                        str(
                            sorted(
                                (k, str(mk(uuid.UUID(v)) if k == "merged_id" else v))
                                for k, v in r.payload.items()
                                if k not in ("order_id", "transfer_id", "merge_id")
                            )
                        ),
                        r.occurred_at,
                    )
                    for r in await rows(E)
                ],
                key=repr,
            ),
            "transfers": sorted(
                (
                    mk(r.member_id),
                    r.account,
                    r.kind,
                    r.amount,
                    r.counterparty,
                    r.reason,
                    r.source,
                    ext.get(uuid.UUID(r.source_ref)) if r.source_ref else None,
                    r.remaining,
                    r.expires_at,
                    r.shortfall,
                    r.created_at,
                )
                for r in await rows(T)
            ),
            "balances": sorted(
                (mk(r.member_id), r.account, r.available, r.held, r.updated_at)
                for r in await rows(B)
            ),
            "merges": sorted((mk(r.survivor_id), r.reason, r.status) for r in await rows(MR)),
        }


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Equal states; on failure, name the table and show what differs (not 500 lines of rows)."""
    problems = []
    for name in a:
        if a[name] != b[name]:
            ca, cb = Counter(map(repr, a[name])), Counter(map(repr, b[name]))
            only_a, only_b = list((ca - cb).elements())[:2], list((cb - ca).elements())[:2]
            problems.append(f"{name} differ:\nper-record {only_a}\nbulk {only_b}")
    assert not problems, "\n".join(problems)


def _outcomes(outs: list[Any], state_key: dict[uuid.UUID, Any]) -> list[Any]:
    return [
        (o.record_type, o.key, o.action, state_key.get(o.member_id, o.member_id is None))
        for o in outs
    ]


async def _member_keys(db: Database, tenant_id: uuid.UUID) -> dict[uuid.UUID, Any]:
    async with db.tenant_tx(tenant_id, write=False) as tx:
        idents = (await tx.conn.execute(select(I).where(I.c.tenant_id == tenant_id))).all()
    out: dict[uuid.UUID, list[Any]] = {}
    for r in idents:
        out.setdefault(r.member_id, []).append((r.kind, r.scope, r.value))
    return {m: tuple(sorted(v)) for m, v in out.items()}


async def test_bulk_matches_per_record(db: Database) -> None:
    world = World.generate(
        seed=5, people=60, orders=700, channels=("example", "pos"), start=START, days=5
    )
    a = await new_tenant(db, "per")
    b = await new_tenant(db, "bulk")
    key = identifiers.tenant_key(TEST_SECRET, a.id)  # the same hashes in both tenants
    for t in (a, b):
        await _prestate(db, t.id, key, world)
    recs = [_record(o) for o in world.orders["example"]]
    assert len(recs) >= 300

    out_a = await _apply(db, a.id, key, recs, NOW1, use_bulk=False)
    out_b = await _apply(db, b.id, key, recs, NOW1, use_bulk=True)
    state_a, state_b = await _state(db, a.id), await _state(db, b.id)
    _assert_same(state_a, state_b)
    # The world really exercised every path.
    assert len(state_a["merges"]) >= 3
    assert sum(1 for m in state_a["members"] if m[1] == "active") > 20
    assert any(o[1] is None for o in state_a["orders"])  # guest orders
    assert len(state_a["transfers"]) > 300
    keys_a, keys_b = await _member_keys(db, a.id), await _member_keys(db, b.id)
    assert _outcomes(out_a, keys_a) == _outcomes(out_b, keys_b)

    # Second pass: everything re-sent (unchanged), some unpaid orders paid, new orders.
    world.touch(START + timedelta(days=5, hours=1), new=40, pay=10)
    recs2 = [_record(o) for o in world.orders["example"]]
    out_a = await _apply(db, a.id, key, recs2, NOW2, use_bulk=False)
    out_b = await _apply(db, b.id, key, recs2, NOW2, use_bulk=True)
    _assert_same(await _state(db, a.id), await _state(db, b.id))
    keys_a, keys_b = await _member_keys(db, a.id), await _member_keys(db, b.id)
    assert _outcomes(out_a, keys_a) == _outcomes(out_b, keys_b)
    assert {o.action for o in out_b} >= {"created", "updated", "unchanged"}

    # Same idempotency: re-running the earning of every paid event replays the bulk's credits
    # (same keys and request fingerprints as ledger.credit would have written).
    async with db.tenant_tx(b.id) as tx:
        events = (await tx.conn.execute(select(E).where(E.c.tenant_id == b.id))).all()
        results = []
        for e in events:
            view = EventView(e.id, e.type, e.member_id, e.occurred_at, e.payload)
            results += await apply_event(tx, view, RULES, now=NOW1)
    assert results and all(r.replayed for r in results)


async def test_bulk_raises_like_per_record(db: Database) -> None:
    """A refused record fails a non-isolated batch the same way (the runner then isolates)."""
    world = World.generate(seed=9, people=10, orders=40, channels=("example",), start=START)
    t = await new_tenant(db, "bad")
    key = identifiers.tenant_key(TEST_SECRET, t.id)
    recs = [_record(o) for o in world.orders["example"]][:20]
    bad = OrderRecord(
        external_id="BAD-1",
        status="paid",
        placed_at=START,
        updated_at=START,
        total_fen=100,
        paid_fen=100,
        lines=(),
        buyer=(Identifier("phone", None, "12345"),),
    )
    recs.insert(7, bad)
    assert len(recs) >= bulk.MIN_BATCH
    for use_bulk in (False, True):
        with pytest.raises(InvalidInput) as info:
            async with db.tenant_tx(t.id) as tx:
                await apply_records(
                    tx, recs, channel="example", key=key, rules=RULES, now=NOW1, bulk=use_bulk
                )
        assert info.value.field == "value"
    async with db.tenant_tx(t.id) as tx:
        out = await apply_records(
            tx, recs, channel="example", key=key, rules=RULES, now=NOW1, isolate=True
        )
    assert [o.action for o in out].count("rejected") == 1
