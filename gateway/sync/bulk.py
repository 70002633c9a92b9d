"""Set-based application of a batch of order records: the per-record path, a batch at a time.

``apply_records`` (non-isolated) hands a batch here. The outcome — members, identities, profile
provenance, orders, lines, ``order.paid`` events, earning credits and balances — is exactly what
applying the records one by one through :func:`gateway.sync.apply.apply_one` produces (the tests
in ``tests/test_sync_bulk.py`` compare the two on both backends); only the number of statements
changes: a constant handful per *segment* instead of about fifteen per record.

How:

1. Every record is prepared first (identifiers normalised, profile facts and order validated).
2. For the batch's identifiers: one advisory-lock statement (PostgreSQL, all keys sorted), one
   query for their owners (owning members locked ``FOR UPDATE`` and re-read until all are active,
   as :func:`gateway.identity.ingest._locked_owners` does for one record), one query for orders
   that already exist, one for the owners' profile provenance, one for their balances, and the
   tenant's enabled rules.
3. The records are then *simulated in order*, in memory, with the same decisions as
   ``members.ingest`` (no owner → new member, one strong owner → attach, only weak owners → the
   oldest that may resolve; a receiver's phone never picks anyone), the same profile provenance
   rule, ``record_order``'s insert path and the earning path (each rule set sees the member's
   balances including earlier credits of the batch).
4. The segment's writes go out as multi-row statements (orders, members, identities, attributes,
   member updates, lines, events — ``member.joined`` for new members and ``order.paid`` —,
   ledger transfers, balances), then one read of the balance rows just written and one insert
   of the credits' ``points.changed`` events (the same ids, payloads and balance after each
   credit as ``ledger.credit`` records them one by one).

Whatever the simulation does not model stops the segment and goes through the per-record path
on its own: a record whose identifiers belong to more than one member (a merge), an order that
already exists (the update path: forward-only status, money frozen once paid, member checks), an
order repeated within the batch, a record that is not an order, and any record whose preparation
or rule evaluation raises (the per-record path then raises exactly the same error). Then a new
segment starts from fresh reads. A concurrent writer that inserted one of the segment's orders
first (the only race the advisory locks do not cover) makes the segment's own inserts undo and
fall back to the per-record path too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, and_, bindparam, delete, select, text, update

from gateway import ledger
from gateway.commerce.model import LINE, ORD, PAID_STATUSES, OrderInput, validate_order
from gateway.commerce.record import paid_payload
from gateway.events import E
from gateway.identifiers import NormalisedIdentifier, normalise, resolves
from gateway.identity.ingest import MAX_IDENTIFIERS, _owners, lock_key
from gateway.identity.model import A, I, M, check_aware, check_channel
from gateway.identity.profile import Fact, column_value, load_facts, profile_facts, wins
from gateway.ids import derived_id, uuid7
from gateway.ledger import events as points
from gateway.ledger import validation as v
from gateway.ledger.store import B, T
from gateway.rules import config as rule_config
from gateway.rules.engine import _checked, joined_payload
from gateway.rules.hookspecs import EventView, Intent, MemberSnapshot
from gateway.rules.manager import RuleRegistry, default_registry
from gateway.sql import in_ids, unnest_insert_sql, upsert_insert
from gateway.storage.db import Tx
from gateway.storage.types import utcnow
from gateway.sync.push import ApplyOutcome
from gateway.sync.records import OrderRecord, Record

MIN_BATCH = 8
"""Smaller batches (a push, a retry) go record by record: the set-based reads would not pay."""

_LOCK = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")
IdentKey = tuple[str, str, str]


class _Unusual(Exception):
    """This record leaves the segment (handled by the per-record path)."""


@dataclass
class _Prep:
    rec: OrderRecord
    idents: list[NormalisedIdentifier]
    facts: list[Fact]
    inp: OrderInput


@dataclass
class _Segment:
    orders: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    members: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    identities: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[tuple[uuid.UUID, str], Fact] = field(default_factory=dict)
    touched: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    balances: dict[tuple[uuid.UUID, str], int] = field(default_factory=dict)
    outcomes: list[ApplyOutcome] = field(default_factory=list)


def _normalise_all(
    identifiers: Sequence[Any], key: bytes, cache: dict[tuple[Any, ...], NormalisedIdentifier]
) -> list[NormalisedIdentifier]:
    """``gateway.identity.ingest._normalise_all`` with a per-batch cache (phones repeat)."""
    if not identifiers:
        raise _Unusual  # ingest raises InvalidInput; let the per-record path say so
    if len(identifiers) > MAX_IDENTIFIERS:
        raise _Unusual
    out: dict[IdentKey, NormalisedIdentifier] = {}
    for raw in identifiers:
        ck = (raw.kind, raw.scope, raw.value)
        n = cache.get(ck)
        if n is None:
            n = cache[ck] = normalise(raw.kind, raw.scope, raw.value, key=key)
        out.setdefault((n.kind, n.scope, n.value), n)
    return list(out.values())


def _prepare(
    rec: Record, channel: str, key: bytes, now: datetime, cache: dict[tuple[Any, ...], Any]
) -> _Prep | None:
    """Everything the per-record path validates before writing; ``None`` if anything objects."""
    if not isinstance(rec, OrderRecord):
        return None
    try:
        idents: list[NormalisedIdentifier] = []
        facts: list[Fact] = []
        # As ``apply_order``: a buyer known only by a receiver's phone is no member.
        if any(resolves(i.kind) for i in rec.buyer):
            idents = _normalise_all(rec.buyer, key, cache)
            if rec.profile is not None:
                facts = profile_facts(rec.profile, channel, now)
        from gateway.sync.apply import order_input  # apply imports this module lazily

        inp = validate_order(order_input(rec, channel, None))
    except Exception:
        return None
    return _Prep(rec, idents, facts, inp)


async def apply_batch(
    tx: Tx,
    records: Sequence[Record],
    *,
    channel: str,
    key: bytes,
    rules: RuleRegistry | None,
    now: datetime,
) -> list[ApplyOutcome]:
    """Apply ``records`` in order with the per-record semantics (see the module docstring)."""
    from gateway.sync.apply import apply_one

    check_channel(channel)
    check_aware(now, "now")
    cache: dict[tuple[Any, ...], Any] = {}
    preps = [_prepare(r, channel, key, now, cache) for r in records]
    # Orders that exist already (or repeat within the batch) take the update path, per record.
    existing = await _existing_orders(tx, channel, [p.inp.external_id for p in preps if p])
    for j, p in enumerate(preps):
        if p is not None:
            if p.inp.external_id in existing:
                preps[j] = None
            existing.add(p.inp.external_id)
    registry = rules if rules is not None else default_registry()
    cfg, timezone = await rule_config.active(tx, registry)
    if not cfg.bulk_safe:
        # Tiers, tasks, benefits or expiry rules run in the rule engine, record by record.
        return [
            await apply_one(tx, r, channel=channel, key=key, rules=rules, now=now) for r in records
        ]
    rule_sets = [
        (rs, dict(e.config))
        for e in cfg.slot("earning")
        if (rs := registry.get(e.rule)) is not None
    ]
    out: list[ApplyOutcome] = []
    i = 0
    while i < len(records):
        if preps[i] is None:
            out.append(
                await apply_one(tx, records[i], channel=channel, key=key, rules=rules, now=now)
            )
            i += 1
            continue
        seg, stop = await _simulate(tx, preps, i, now, rule_sets, timezone)
        if seg.orders and not await _write(tx, seg, now):
            # Lost an insert race to a concurrent writer: redo the segment record by record.
            for j in range(i, stop):
                out.append(
                    await apply_one(tx, records[j], channel=channel, key=key, rules=rules, now=now)
                )
        else:
            out.extend(seg.outcomes)
        i = stop
        if i < len(records) and preps[i] is not None:  # stopped by a merge or an error
            out.append(
                await apply_one(tx, records[i], channel=channel, key=key, rules=rules, now=now)
            )
            i += 1
    return out


async def _simulate(
    tx: Tx,
    preps: list[_Prep | None],
    start: int,
    now: datetime,
    rule_sets: list[Any],
    timezone: str,
) -> tuple[_Segment, int]:
    """Read the state the records from ``start`` need, then simulate them until one is unusual;
    returns the segment and the index of the first record it does not cover."""
    end = start
    while end < len(preps) and preps[end] is not None:
        end += 1
    todo = [p for p in preps[start:end] if p is not None]
    all_idents = list({(n.kind, n.scope, n.value): n for p in todo for n in p.idents}.values())
    if all_idents:
        if tx.is_postgres:
            keys = sorted({lock_key(tx.tenant_id, n) for n in all_idents})
            await tx.conn.execute(_LOCK, {"keys": keys})
            owners: dict[IdentKey, Any] = await _pg_locked_owners(tx, all_idents)
        else:
            owners = await _owners(tx, all_idents)
    else:
        owners = {}
    owner_ids = list({mid for mid, _ in owners.values()})
    facts_by_member = await load_facts(tx, owner_ids)
    views = await ledger.balances_for(tx, owner_ids, now=now) if rule_sets and owner_ids else {}

    own: dict[IdentKey, tuple[uuid.UUID, datetime]] = dict(owners)
    created_at: dict[uuid.UUID, datetime] = {mid: c for mid, c in owners.values()}
    balances: dict[uuid.UUID, dict[str, int]] = {}
    for (mid, acct), view in views.items():
        balances.setdefault(mid, {})[acct] = view.available
    seg = _Segment()
    for idx in range(start, end):
        p = preps[idx]
        assert p is not None
        try:
            plan = _plan_record(
                tx, p, own, created_at, facts_by_member, balances, rule_sets, timezone, now
            )
        except Exception:
            return seg, idx
        _commit(tx, seg, p, plan, own, created_at, facts_by_member, balances, p.inp.channel, now)
    return seg, end


@dataclass
class _Plan:
    member_id: uuid.UUID | None
    created: bool
    new_idents: list[NormalisedIdentifier]
    winners: list[Fact]
    order_id: uuid.UUID
    event_id: uuid.UUID | None
    payload: dict[str, Any] | None
    credits: list[dict[str, Any]]


def _plan_record(
    tx: Tx,
    p: _Prep,
    own: dict[IdentKey, tuple[uuid.UUID, datetime]],
    created_at: dict[uuid.UUID, datetime],
    facts_by_member: dict[uuid.UUID, dict[str, Fact]],
    balances: dict[uuid.UUID, dict[str, int]],
    rule_sets: list[Any],
    timezone: str,
    now: datetime,
) -> _Plan:
    """What the per-record path would do for ``p`` given the simulated state (no mutation)."""
    member_id: uuid.UUID | None = None
    created = False
    new_idents: list[NormalisedIdentifier] = []
    winners: list[Fact] = []
    if p.idents:
        strong: dict[uuid.UUID, datetime] = {}
        weak: dict[uuid.UUID, datetime] = {}
        for n in p.idents:
            owner = own.get((n.kind, n.scope, n.value))
            if owner is None:
                continue
            if n.strong:
                strong[owner[0]] = owner[1]
            elif resolves(n.kind):  # a receiver's phone never picks the member
                weak[owner[0]] = owner[1]
        if len(strong) > 1:
            raise _Unusual  # a merge: members.ingest does it
        if strong:
            member_id = next(iter(strong))
        elif weak:
            member_id = min(weak, key=lambda m: (weak[m], m))
        else:
            member_id = uuid7()
            created = True
        new_idents = [n for n in p.idents if (n.kind, n.scope, n.value) not in own]
        if p.facts:
            current = {} if created else facts_by_member.get(member_id, {})
            winners = [f for f in p.facts if wins(f, current.get(f.field))]

    order_id = uuid7()
    event_id = payload = None
    credits: list[dict[str, Any]] = []
    inp = p.inp
    if member_id is not None and inp.status in PAID_STATUSES:
        event_id = derived_id(tx.tenant_id, "order", order_id, "paid")
        row = _OrderRow(order_id, inp)
        payload = paid_payload(row, inp.lines)
        if rule_sets:
            occurred_at = inp.paid_at or now
            event = EventView(event_id, "order.paid", member_id, occurred_at, payload)
            mine = dict(balances.get(member_id, {}))
            snapshot = MemberSnapshot(
                member_id, now if created else created_at[member_id], mine, timezone
            )
            for rs, conf in rule_sets:
                got = rs.evaluate(snapshot, event, conf)
                for planned in _checked(rs.name, "earning", got, None):
                    intent = planned.outcome
                    if not isinstance(intent, Intent):
                        raise _Unusual  # a grant: the rule engine records it
                    credits.append(
                        _credit_row(tx, rs.name, intent, event_id, order_id, member_id, now)
                    )
    return _Plan(member_id, created, new_idents, winners, order_id, event_id, payload, credits)


@dataclass(frozen=True)
class _OrderRow:
    """The columns of a freshly inserted order that ``paid_payload`` reads."""

    id: uuid.UUID
    inp: OrderInput

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inp, name)


def _credit_row(
    tx: Tx,
    rule_set: str,
    intent: Any,
    event_id: uuid.UUID,
    order_id: uuid.UUID,
    member_id: uuid.UUID,
    now: datetime,
) -> dict[str, Any]:
    """The ``ledger_transfer`` row ``ledger.credit`` writes for an earning intent (same checks,
    same fingerprint: see :func:`gateway.ledger.credits.credit`)."""
    idem_key = str(derived_id(tx.tenant_id, "rules", event_id, intent.rule, intent.account))
    source = f"rule:{rule_set}"
    source_ref = str(order_id)
    account, amount, reason, kind = intent.account, intent.amount, intent.reason, intent.kind
    v.member(member_id)
    acct = v.account(account)
    v.amount(amount)
    v.common(reason=reason, idem_key=idem_key)
    v.text(source, "source", 64)
    v.text(source_ref, "source_ref", 128, optional=True)
    v.text(kind, "kind", 24)
    ttl = acct.default_ttl_days if acct.expiring else None
    fingerprint = v.request_hash(
        op="credit",
        member_id=member_id,
        account=account,
        amount=amount,
        reason=reason,
        source=source,
        source_ref=source_ref,
        kind=kind,
        expires_at="default",
    )
    transfer_id = uuid7()
    return {
        "tenant_id": tx.tenant_id,
        "id": transfer_id,
        "journal_id": transfer_id,
        "member_id": member_id,
        "account": account,
        "kind": kind,
        "amount": amount,
        "counterparty": f"sys:{kind}",
        "reason": reason,
        "source": source,
        "source_ref": source_ref,
        "idem_key": idem_key,
        "request_hash": fingerprint,
        "remaining": amount,
        "expires_at": now + timedelta(days=ttl) if ttl else None,
        "hold_id": None,
        "related_id": None,
        "shortfall": 0,
        "created_at": now,
    }


def _commit(
    tx: Tx,
    seg: _Segment,
    p: _Prep,
    plan: _Plan,
    own: dict[IdentKey, tuple[uuid.UUID, datetime]],
    created_at: dict[uuid.UUID, datetime],
    facts_by_member: dict[uuid.UUID, dict[str, Fact]],
    balances: dict[uuid.UUID, dict[str, int]],
    channel: str,
    now: datetime,
) -> None:
    """Apply a planned record to the simulated state and queue its rows."""
    tid, inp, mid = tx.tenant_id, p.inp, plan.member_id
    if mid is not None:
        if plan.created:
            created_at[mid] = now
            seg.members[mid] = {
                "tenant_id": tid,
                "id": mid,
                "status": "active",
                "merged_into": None,
                "name": None,
                "gender": None,
                "birthday": None,
                "city": None,
                "created_at": now,
                "updated_at": now,
            }
            # Every new member's member.joined, as ``members.ingest`` records it (this path only
            # runs for bulk-safe configs, where no rule reacts to it).
            seg.events.append(
                {
                    "tenant_id": tid,
                    "id": derived_id(tid, "member", mid, "joined"),
                    "member_id": mid,
                    "type": "member.joined",
                    "payload": joined_payload(channel),
                    "occurred_at": now,
                }
            )
        for n in plan.new_idents:
            own[(n.kind, n.scope, n.value)] = (mid, created_at[mid])
            seg.identities.append(
                {
                    "tenant_id": tid,
                    "kind": n.kind,
                    "scope": n.scope,
                    "value": n.value,
                    "member_id": mid,
                    "display": n.display,
                    "channel": channel,
                    "created_at": now,
                }
            )
        if plan.winners:
            current = facts_by_member.setdefault(mid, {})
            for f in plan.winners:
                current[f.field] = f
                seg.facts[(mid, f.field)] = f
        target = seg.members.get(mid)
        if target is None and (plan.new_idents or plan.winners):
            target = seg.touched.setdefault(mid, {})
        if target is not None:
            for f in plan.winners:
                target[f.field] = column_value(f.field, f.value)
    seg.orders.append(
        {
            "tenant_id": tid,
            "id": plan.order_id,
            "channel": inp.channel,
            "external_id": inp.external_id,
            "member_id": mid,
            "status": inp.status,
            "total_fen": inp.total_fen,
            "paid_fen": inp.paid_fen,
            "refunded_fen": 0,
            "store_code": inp.store_code,
            "guide_code": inp.guide_code,
            "placed_at": inp.placed_at,
            "paid_at": inp.paid_at,
            "created_at": now,
            "updated_at": now,
        }
    )
    for i, line in enumerate(inp.lines):
        seg.lines.append(
            {
                "tenant_id": tid,
                "order_id": plan.order_id,
                "line_no": i + 1,
                "sku": line.sku,
                "name": line.name,
                "category": line.category,
                "quantity": line.quantity,
                "unit_price_fen": line.unit_price_fen,
                "amount_fen": line.amount_fen,
            }
        )
    if plan.event_id is not None and mid is not None:
        seg.events.append(
            {
                "tenant_id": tid,
                "id": plan.event_id,
                "member_id": mid,
                "type": "order.paid",
                "payload": plan.payload,
                "occurred_at": inp.paid_at or now,
            }
        )
        mine = balances.setdefault(mid, {})
        for row in plan.credits:
            seg.transfers.append(row)
            mine[row["account"]] = mine.get(row["account"], 0) + row["amount"]
            bk = (mid, row["account"])
            seg.balances[bk] = seg.balances.get(bk, 0) + row["amount"]
    seg.outcomes.append(ApplyOutcome("order", p.rec.external_id, "created", mid))


_PG_OWNERS = """
SELECT x.kind, x.scope, x.value, m.id, m.created_at, m.status, s.id, s.created_at
FROM unnest($2::text[], $3::text[], $4::text[]) AS x(kind, scope, value)
JOIN identity i ON i.tenant_id = $1 AND i.kind = x.kind AND i.scope = x.scope AND i.value = x.value
JOIN member m ON m.tenant_id = i.tenant_id AND m.id = i.member_id
LEFT JOIN member s ON s.tenant_id = m.tenant_id AND s.id = m.merged_into
"""
_PG_LOCK_MEMBERS = """
SELECT id, status FROM member WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY id FOR UPDATE
"""
_PG_EXISTING = """
SELECT external_id FROM orders
WHERE tenant_id = $1 AND channel = $2 AND external_id = ANY($3::text[])
"""


async def _pg_locked_owners(
    tx: Tx, idents: list[NormalisedIdentifier]
) -> dict[IdentKey, tuple[uuid.UUID, datetime]]:
    """``gateway.identity.ingest._locked_owners`` for a whole batch: the identifiers travel as
    three arrays (an ``IN`` list of row values makes PostgreSQL plan a huge ``OR``), the owners
    are locked ``FOR UPDATE`` in id order and re-read until every one is still active."""
    args = (
        [n.kind for n in idents],
        [n.scope for n in idents],
        [n.value for n in idents],
    )
    for _ in range(8):
        out: dict[IdentKey, tuple[uuid.UUID, datetime]] = {}
        for kind, scope, value, mid, created, status, s_id, s_created in await tx.driver.fetch(
            _PG_OWNERS, tx.tenant_id, *args
        ):
            if status == "merged" and s_id is not None:
                out[(kind, scope, value)] = (s_id, s_created)
            else:
                out[(kind, scope, value)] = (mid, created)
        ids = sorted({mid for mid, _ in out.values()})
        if not ids:
            return out
        rows = await tx.driver.fetch(_PG_LOCK_MEMBERS, tx.tenant_id, ids)
        if all(r[1] == "active" for r in rows):
            return out
    raise RuntimeError("members kept being merged while resolving a batch")


async def _existing_orders(tx: Tx, channel: str, external_ids: list[str]) -> set[str]:
    if not external_ids:
        return set()
    if tx.driver is not None:
        rows = await tx.driver.fetch(_PG_EXISTING, tx.tenant_id, channel, external_ids)
        return {r[0] for r in rows}
    rows = await tx.conn.execute(
        select(ORD.c.external_id).where(
            ORD.c.tenant_id == tx.tenant_id,
            ORD.c.channel == channel,
            in_ids(ORD.c.external_id, tx.dialect),
        ),
        {"ids": list(dict.fromkeys(external_ids))},
    )
    return {r[0] for r in rows}


async def _insert(
    tx: Tx, table: Any, rows: list[dict[str, Any]], statement: Any, pg_suffix: str = ""
) -> list[Any]:
    """Insert ``rows`` in one statement; returns the first ``RETURNING`` column, if any.

    PostgreSQL: column arrays through ``unnest`` on the asyncpg connection. SQLite: SQLAlchemy's
    ``executemany`` of ``statement`` (its "insertmanyvalues" batches the rows)."""
    if tx.driver is not None:
        cols = tuple(rows[0])
        json_cols = {c for c in cols if isinstance(table.c[c].type, JSON)}
        args = [
            [json.dumps(r[c]) for r in rows] if c in json_cols else [r[c] for r in rows]
            for c in cols
        ]
        return [
            r[0] for r in await tx.driver.fetch(unnest_insert_sql(table, cols, pg_suffix), *args)
        ]
    result = await tx.conn.execute(statement, rows)
    return list(result.scalars().all()) if result.returns_rows else []


async def _write(tx: Tx, seg: _Segment, now: datetime) -> bool:
    """Write a simulated segment; ``False`` (nothing written) if another writer inserted one of
    its orders first."""
    conn, tid = tx.conn, tx.tenant_id
    got = await _insert(
        tx,
        ORD,
        seg.orders,
        upsert_insert(tx, ORD)
        .on_conflict_do_nothing(index_elements=[ORD.c.tenant_id, ORD.c.channel, ORD.c.external_id])
        .returning(ORD.c.id),
        "ON CONFLICT (tenant_id, channel, external_id) DO NOTHING RETURNING id",
    )
    if len(got) != len(seg.orders):
        if got:
            await conn.execute(
                delete(ORD).where(ORD.c.tenant_id == tid, in_ids(ORD.c.id, tx.dialect)),
                {"ids": list(got)},
            )
        return False
    if seg.members:
        await _insert(tx, M, list(seg.members.values()), M.insert())
    if seg.identities:
        await _insert(tx, I, seg.identities, I.insert())
    if seg.facts:
        rows = [
            {
                "tenant_id": tid,
                "member_id": mid,
                "field": f.field,
                "value": f.value,
                "channel": f.channel,
                "verified": f.verified,
                "observed_at": f.observed_at,
            }
            for (mid, _field), f in seg.facts.items()
        ]
        up = upsert_insert(tx, A)
        await _insert(
            tx,
            A,
            rows,
            up.on_conflict_do_update(
                index_elements=[A.c.tenant_id, A.c.member_id, A.c.field],
                set_={
                    "value": up.excluded.value,
                    "channel": up.excluded.channel,
                    "verified": up.excluded.verified,
                    "observed_at": up.excluded.observed_at,
                },
            ),
            "ON CONFLICT (tenant_id, member_id, field) DO UPDATE SET value = excluded.value, "
            "channel = excluded.channel, verified = excluded.verified, "
            "observed_at = excluded.observed_at",
        )
    by_fields: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for mid, values in seg.touched.items():
        by_fields.setdefault(tuple(sorted(values)), []).append(
            {"b_id": mid, "b_updated_at": now, **{f"b_{k}": x for k, x in values.items()}}
        )
    for cols, rows in by_fields.items():
        stmt = (
            update(M)
            .where(and_(M.c.tenant_id == tid, M.c.id == bindparam("b_id")))
            .values(updated_at=bindparam("b_updated_at"), **{c: bindparam("b_" + c) for c in cols})
        )
        await conn.execute(stmt, rows)
    if seg.lines:
        await _insert(tx, LINE, seg.lines, LINE.insert())
    if seg.events:
        created = utcnow()
        await _insert(
            tx,
            E,
            [{**e, "created_at": created} for e in seg.events],
            upsert_insert(tx, E).on_conflict_do_nothing(),
            "ON CONFLICT DO NOTHING",
        )
    if seg.transfers:
        claimed = await _insert(
            tx,
            T,
            seg.transfers,
            upsert_insert(tx, T)
            .on_conflict_do_nothing(index_elements=[T.c.tenant_id, T.c.idem_key])
            .returning(T.c.id),
            "ON CONFLICT (tenant_id, idem_key) DO NOTHING RETURNING id",
        )
        if len(claimed) != len(seg.transfers):  # keys derive from fresh order ids
            raise RuntimeError("an earning key of a new order was already claimed")
        up = upsert_insert(tx, B)
        await _insert(
            tx,
            B,
            [
                {
                    "tenant_id": tid,
                    "member_id": mid,
                    "account": acct,
                    "available": amount,
                    "held": 0,
                    "updated_at": now,
                }
                for (mid, acct), amount in seg.balances.items()
            ],
            up.on_conflict_do_update(
                index_elements=[B.c.tenant_id, B.c.member_id, B.c.account],
                set_={
                    "available": B.c.available + up.excluded.available,
                    "updated_at": up.excluded.updated_at,
                },
            ),
            "ON CONFLICT (tenant_id, member_id, account) DO UPDATE SET "
            "available = ledger_balance.available + excluded.available, "
            "updated_at = excluded.updated_at",
        )
        await _points_changed(tx, seg, now)
    return True


async def _points_changed(tx: Tx, seg: _Segment, now: datetime) -> None:
    """``points.changed`` for every credit of the segment, as ``ledger.credit`` records them:
    one read of the balance rows just upserted (locked by this transaction, so exact), then the
    ``available`` after each credit is the final value minus the later credits of the segment,
    and one multi-row insert."""
    member_ids = list({mid for mid, _ in seg.balances})
    final: dict[tuple[uuid.UUID, str], int] = {
        (r[0], r[1]): int(r[2])
        for r in await tx.conn.execute(
            select(B.c.member_id, B.c.account, B.c.available).where(
                B.c.tenant_id == tx.tenant_id, in_ids(B.c.member_id, tx.dialect)
            ),
            {"ids": member_ids},
        )
    }
    changes: list[points.Change] = []
    for row in reversed(seg.transfers):
        bk = (row["member_id"], row["account"])
        changes.append(
            points.Change(
                row["member_id"], row["account"], row["amount"], final[bk], row["kind"], row["id"]
            )
        )
        final[bk] -= row["amount"]
    created = utcnow()
    tid = tx.tenant_id
    await _insert(
        tx,
        E,
        [
            {
                "tenant_id": tid,
                "id": points.event_id(tid, c.transfer_id, c.kind),
                "member_id": c.member_id,
                "type": points.POINTS_CHANGED,
                "payload": points.payload(c),
                "occurred_at": now,
                "created_at": created,
            }
            for c in reversed(changes)
        ],
        upsert_insert(tx, E).on_conflict_do_nothing(),
        "ON CONFLICT DO NOTHING",
    )
