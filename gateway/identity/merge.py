"""Merge and unmerge members (ONE ID).

A merge moves everything the loser owns to the survivor (identities, orders, points as ledger
transfers) and keeps the better-sourced profile values, then records a snapshot precise enough
for :func:`unmerge` to put both members back exactly as they were. Merges are reversible because
identity resolution is a guess: a shared family phone or a mistyped card number must be undoable
without losing what happened since (identities, orders or profile values the survivor acquired
after the merge stay with it).

Chains stay flat: members previously merged into the loser are re-pointed to the survivor, so
:func:`gateway.identity.reads.resolve` is one hop.

Subscribers learn of both in the same transaction: ``member.merged`` on the survivor (payload
``merged_id``, ``merge_id``) and, on undo, ``member.unmerged`` on the former survivor
(``restored_id``, ``merge_id``); ids derive from the merge record, so each happens once. Automatic
merges by ONE ID resolution (``members.ingest``, the sync runner) come through here too.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select, tuple_, update

from gateway import ledger
from gateway.errors import InvalidInput, InvalidTransition, NotFound
from gateway.events import record_event
from gateway.identity.model import MR, A, I, M, MergeInfo, check_aware, merge_info
from gateway.identity.profile import FIELDS, Fact, load_facts, wins, write_facts
from gateway.ids import derived_id, uuid7
from gateway.storage.db import Tx
from gateway.storage.tables import Order
from gateway.storage.types import utcnow

ORD: Any = Order.__table__  # type: ignore[attr-defined]
_CHUNK = 500


def _reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 200:
        raise InvalidInput("reason must be 1-200 characters", field="reason")
    return reason.strip()


def _profile(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "gender": row.gender,
        "birthday": row.birthday.isoformat() if row.birthday else None,
        "city": row.city,
    }


def _profile_columns(snapshot: dict[str, Any]) -> dict[str, Any]:
    b = snapshot.get("birthday")
    return {
        "name": snapshot.get("name"),
        "gender": snapshot.get("gender"),
        "birthday": date.fromisoformat(b) if b else None,
        "city": snapshot.get("city"),
    }


async def _lock_members(tx: Tx, ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """Both members in one statement, row-locked on PostgreSQL so concurrent merges serialise."""
    rows = await tx.conn.execute(
        select(M)
        .where(M.c.tenant_id == tx.tenant_id, M.c.id.in_(ids))
        .order_by(M.c.id)
        .with_for_update()
    )
    return {r.id: r for r in rows}


async def merge(
    tx: Tx,
    *,
    survivor_id: uuid.UUID,
    loser_id: uuid.UUID,
    reason: str,
    now: datetime | None = None,
) -> MergeInfo:
    """Merge ``loser_id`` into ``survivor_id``; see the module docstring for what moves."""
    now = check_aware(now, "now") if now is not None else utcnow()
    reason = _reason(reason)
    if survivor_id == loser_id:
        raise InvalidInput("a member cannot be merged into itself", field="loser_id")
    rows = await _lock_members(tx, [survivor_id, loser_id])
    for mid, name in ((survivor_id, "survivor"), (loser_id, "loser")):
        if mid not in rows:
            raise NotFound(f"{name} member not found", id=str(mid))
        if rows[mid].status == "merged":
            raise InvalidInput(
                f"{name} member is already merged into another member",
                field=f"{name}_id",
            )
    merge_id = uuid7()
    t = tx.tenant_id

    moved_identities = (
        await tx.conn.execute(
            update(I)
            .where(I.c.tenant_id == t, I.c.member_id == loser_id)
            .values(member_id=survivor_id)
            .returning(I.c.kind, I.c.scope, I.c.value)
        )
    ).all()
    moved_orders = (
        (
            await tx.conn.execute(
                update(ORD)
                .where(ORD.c.tenant_id == t, ORD.c.member_id == loser_id)
                .values(member_id=survivor_id, updated_at=now)
                .returning(ORD.c.id)
            )
        )
        .scalars()
        .all()
    )

    facts = await load_facts(tx, [survivor_id, loser_id])
    survivor_facts, loser_facts = facts[survivor_id], facts[loser_id]
    taken = [f for f in loser_facts.values() if wins(f, survivor_facts.get(f.field))]
    await write_facts(tx, survivor_id, taken, now)

    repointed = (
        (
            await tx.conn.execute(
                update(M)
                .where(M.c.tenant_id == t, M.c.merged_into == loser_id)
                .values(merged_into=survivor_id)
                .returning(M.c.id)
            )
        )
        .scalars()
        .all()
    )

    ledger_snapshot = await ledger.merge_balances(
        tx, loser_id=loser_id, survivor_id=survivor_id, merge_id=merge_id, reason=reason, now=now
    )
    await tx.conn.execute(
        update(M)
        .where(M.c.tenant_id == t, M.c.id == loser_id)
        .values(status="merged", merged_into=survivor_id, updated_at=now)
    )
    snapshot = {
        "version": 1,
        "identities": [[r.kind, r.scope, r.value] for r in moved_identities],
        "orders": [str(o) for o in moved_orders],
        "repointed": [str(m) for m in repointed],
        "survivor": {
            "profile": _profile(rows[survivor_id]),
            "attributes": [f.to_json() for f in survivor_facts.values()],
        },
        "loser": {
            "profile": _profile(rows[loser_id]),
            "attributes": [f.to_json() for f in loser_facts.values()],
        },
        "taken": [f.to_json() for f in taken],
        "ledger": ledger_snapshot,
    }
    await tx.conn.execute(
        insert(MR).values(
            tenant_id=t,
            id=merge_id,
            survivor_id=survivor_id,
            loser_id=loser_id,
            reason=reason,
            snapshot=snapshot,
            status="merged",
            created_at=now,
        )
    )
    await record_event(
        tx,
        event_id=derived_id(t, "merge", merge_id, "merged"),
        member_id=survivor_id,
        type="member.merged",
        payload={"merged_id": str(loser_id), "merge_id": str(merge_id)},
        occurred_at=now,
    )
    return MergeInfo(merge_id, survivor_id, loser_id, now, reason, "merged", None)


async def unmerge(
    tx: Tx, *, merge_id: uuid.UUID, reason: str, now: datetime | None = None
) -> MergeInfo:
    """Undo a merge: the loser gets back what it brought, the survivor keeps what came later."""
    now = check_aware(now, "now") if now is not None else utcnow()
    reason = _reason(reason)
    t = tx.tenant_id
    rec = (
        await tx.conn.execute(
            select(MR).where(MR.c.tenant_id == t, MR.c.id == merge_id).with_for_update()
        )
    ).first()
    if rec is None:
        raise NotFound("merge not found", id=str(merge_id))
    if rec.status != "merged":
        raise InvalidTransition("this merge was already undone")
    survivor_id, loser_id = rec.survivor_id, rec.loser_id
    rows = await _lock_members(tx, [survivor_id, loser_id])
    survivor, loser = rows.get(survivor_id), rows.get(loser_id)
    if survivor is None or loser is None:
        raise NotFound("merged members not found")
    if survivor.status == "merged":
        raise InvalidTransition(
            "the survivor has since been merged into another member; undo that merge first"
        )
    if loser.status != "merged" or loser.merged_into != survivor_id:
        raise InvalidTransition("the loser is no longer merged into the survivor")
    snap: dict[str, Any] = rec.snapshot

    keys = [tuple(k) for k in snap["identities"]]
    for i in range(0, len(keys), _CHUNK):
        await tx.conn.execute(
            update(I)
            .where(
                I.c.tenant_id == t,
                I.c.member_id == survivor_id,
                tuple_(I.c.kind, I.c.scope, I.c.value).in_(keys[i : i + _CHUNK]),
            )
            .values(member_id=loser_id)
        )
    order_ids = [uuid.UUID(o) for o in snap["orders"]]
    for i in range(0, len(order_ids), _CHUNK):
        await tx.conn.execute(
            update(ORD)
            .where(
                ORD.c.tenant_id == t,
                ORD.c.member_id == survivor_id,
                ORD.c.id.in_(order_ids[i : i + _CHUNK]),
            )
            .values(member_id=loser_id, updated_at=now)
        )

    await _restore_survivor_profile(tx, survivor_id, snap, now)
    await tx.conn.execute(
        update(M)
        .where(M.c.tenant_id == t, M.c.id == loser_id)
        .values(
            status="active",
            merged_into=None,
            updated_at=now,
            **_profile_columns(snap["loser"]["profile"]),
        )
    )
    repointed = [uuid.UUID(m) for m in snap["repointed"]]
    if repointed:
        await tx.conn.execute(
            update(M)
            .where(M.c.tenant_id == t, M.c.merged_into == survivor_id, M.c.id.in_(repointed))
            .values(merged_into=loser_id)
        )
    await ledger.unmerge_balances(
        tx, merge_id=merge_id, snapshot=snap["ledger"], reason=reason, now=now
    )
    await tx.conn.execute(
        update(MR)
        .where(MR.c.tenant_id == t, MR.c.id == merge_id)
        .values(status="unmerged", undone_at=now)
    )
    await record_event(
        tx,
        event_id=derived_id(t, "merge", merge_id, "unmerged"),
        member_id=survivor_id,
        type="member.unmerged",
        payload={"restored_id": str(loser_id), "merge_id": str(merge_id)},
        occurred_at=now,
    )
    info = merge_info(rec)
    return MergeInfo(info.id, survivor_id, loser_id, info.created_at, info.reason, "unmerged", now)


async def _restore_survivor_profile(
    tx: Tx, survivor_id: uuid.UUID, snap: dict[str, Any], now: datetime
) -> None:
    """Give back the survivor's pre-merge value of every field the merge overwrote, unless a newer
    fact has replaced it since (that fact belongs to the survivor and stays)."""
    prior = {d["field"]: Fact.from_json(d) for d in snap["survivor"]["attributes"]}
    prior_columns = _profile_columns(snap["survivor"]["profile"])
    current = (await load_facts(tx, [survivor_id]))[survivor_id]
    restore: list[Fact] = []
    cleared: list[str] = []
    for d in snap["taken"]:
        written = Fact.from_json(d)
        if current.get(written.field) != written:
            continue
        if written.field in prior:
            restore.append(prior[written.field])
        else:
            cleared.append(written.field)
    await write_facts(tx, survivor_id, restore, now)
    if cleared:
        await tx.conn.execute(
            delete(A).where(
                and_(
                    A.c.tenant_id == tx.tenant_id,
                    A.c.member_id == survivor_id,
                    A.c.field.in_(cleared),
                )
            )
        )
        await tx.conn.execute(
            update(M)
            .where(M.c.tenant_id == tx.tenant_id, M.c.id == survivor_id)
            .values(updated_at=now, **{f: prior_columns[f] for f in cleared if f in FIELDS})
        )
