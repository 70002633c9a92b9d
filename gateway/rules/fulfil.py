"""Grant fulfilment: a ``member_grant`` the gateway can deliver itself is delivered at once.

Rule sets and the points mall only *grant* (``member_grant`` rows, status ``issued``); until this
module, nothing turned ``coupon:WELCOME`` into a coupon. Now, in the same transaction as the grant
row:

- ``coupon:<template>`` × quantity → that many coupons (:func:`gateway.coupons.issue`), each
  idempotent on ``grant:<grant id>:<n>`` (:func:`coupon_key`) — which is also the link from the
  grant to its coupons (no extra column: :func:`coupons_of` joins on it). The coupon's ``source``
  is ``rule:<rule>`` (``mall`` for mall purchases);
- ``points:<amount>`` × quantity → one ledger credit of ``amount × quantity`` points, idempotent on
  ``grant:<grant id>`` (kind ``bonus``, source as above), dated by the caller's expiry.

Either the whole grant is delivered (status ``fulfilled``) or nothing is: a refusal — the template
is unknown, inactive or ended, a per-member or total limit is reached, a points code is not an
amount — leaves the grant ``unfulfilled`` with the refusal's code appended to its reason
(``… [unfulfilled: MEMBER_LIMIT]``), writes no coupon and **does not fail the event**: the order,
sign-up or birthday is recorded all the same, and an operator follows up (raise the limit, then
:func:`retry`). Other kinds (``gift``, ``physical``, plugin kinds) stay ``issued`` for the system
that owns them.

Idempotency: the engine fulfils only grants it has just inserted (a replayed event inserts
nothing), and every write underneath is keyed by the grant, so even a retry of the same grant
cannot issue a second coupon or credit twice. Dry runs run inside the engine's savepoint: the
report shows the coupon that would be issued, and the rollback takes it back.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from gateway import coupons, ledger
from gateway.coupons.model import C, coupon_from_row
from gateway.errors import NotEligible, NotFound
from gateway.ledger.accounts import MAX_AMOUNT
from gateway.storage.db import Tx
from gateway.storage.tables import MemberGrant

log = logging.getLogger(__name__)
G: Any = MemberGrant.__table__  # type: ignore[attr-defined]

ISSUED = "issued"
FULFILLED = "fulfilled"
UNFULFILLED = "unfulfilled"
CANCELLED = "cancelled"
STATUSES = (ISSUED, FULFILLED, UNFULFILLED, CANCELLED)
"""``member_grant.status``: ``issued`` waits for the owning system (gift, physical, plugin
kinds), ``fulfilled`` was delivered, ``unfulfilled`` was refused and needs a person."""
KINDS = ("coupon", "points")
"""Reward kinds the gateway fulfils itself."""
MAX_COUPONS = 100
"""Coupons per grant; a brand giving more at once is doing bulk issuance (segments)."""
_MARK = re.compile(r" \[unfulfilled: [A-Z_]+\]$")


@dataclass(frozen=True)
class Fulfilment:
    """What fulfilling one grant did (or, in a dry run, would do)."""

    grant_id: uuid.UUID
    kind: str
    code: str
    status: str  # fulfilled | unfulfilled | issued (not the gateway's kind)
    coupons: tuple[coupons.Coupon, ...] = ()
    transfer_id: uuid.UUID | None = None
    reason: str | None = None  # unfulfilled: NotEligible reason, NOT_FOUND or INVALID_CODE
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (CLI dry runs, GraphQL reports)."""
        return {
            "grant_id": str(self.grant_id),
            "status": self.status,
            "coupons": [c.code for c in self.coupons],
            "reason": self.reason,
            "message": self.message,
        }


def coupon_key(grant_id: uuid.UUID, n: int) -> str:
    """The idempotency key of the ``n``-th coupon (0-based) of a grant: its link to the grant."""
    return f"grant:{grant_id}:{n}"


def points_key(grant_id: uuid.UUID) -> str:
    return f"grant:{grant_id}"


def source_of(rule: str) -> str:
    """The coupon / ledger ``source`` of a grant by ``rule``: ``mall`` or ``rule:<rule>``."""
    return "mall" if rule == "mall" else f"rule:{rule}"[:64]


def base_reason(reason: str) -> str:
    """The grant's reason without the ``[unfulfilled: …]`` mark."""
    return _MARK.sub("", reason)


async def fulfil(
    tx: Tx,
    *,
    grant_id: uuid.UUID,
    member_id: uuid.UUID,
    kind: str,
    code: str,
    quantity: int,
    rule: str,
    reason: str,
    now: datetime,
    expires_at: Any = ledger.DEFAULT_EXPIRY,
) -> Fulfilment:
    """Deliver the grant ``grant_id`` (already written) and set its status; see the module
    docstring. ``expires_at`` dates a points credit (the tenant's expiry rule set)."""
    if kind not in KINDS:
        return Fulfilment(grant_id, kind, code, ISSUED)
    source = source_of(rule)
    sp = await tx.conn.begin_nested()
    try:
        if kind == "coupon":
            issued = await _coupons(tx, grant_id, member_id, code, quantity, source, now)
            done = Fulfilment(grant_id, kind, code, FULFILLED, coupons=issued)
        else:
            transfer = await _points(
                tx, grant_id, member_id, code, quantity, source, reason, now, expires_at
            )
            done = Fulfilment(grant_id, kind, code, FULFILLED, transfer_id=transfer)
    except (NotEligible, NotFound, _InvalidCode) as exc:
        await sp.rollback()
        why = exc.reason if isinstance(exc, NotEligible) else exc.code
        log.warning("grant %s (%s:%s) not fulfilled: %s %s", grant_id, kind, code, why, exc)
        await _set_status(tx, grant_id, UNFULFILLED, _marked(reason, why))
        return Fulfilment(grant_id, kind, code, UNFULFILLED, reason=why, message=str(exc))
    except BaseException:
        await sp.rollback()
        raise
    await sp.commit()
    await _set_status(tx, grant_id, FULFILLED, base_reason(reason))
    return done


class _InvalidCode(Exception):
    code = "INVALID_CODE"


async def _coupons(
    tx: Tx,
    grant_id: uuid.UUID,
    member_id: uuid.UUID,
    template: str,
    quantity: int,
    source: str,
    now: datetime,
) -> tuple[coupons.Coupon, ...]:
    if not 1 <= quantity <= MAX_COUPONS:
        raise _InvalidCode(f"a coupon grant gives 1..{MAX_COUPONS} coupons, not {quantity}")
    out = []
    for n in range(quantity):
        out.append(
            await coupons.issue(
                tx, template, member_id, source=source, idem_key=coupon_key(grant_id, n), now=now
            )
        )
    return tuple(out)


async def _points(
    tx: Tx,
    grant_id: uuid.UUID,
    member_id: uuid.UUID,
    code: str,
    quantity: int,
    source: str,
    reason: str,
    now: datetime,
    expires_at: Any,
) -> uuid.UUID:
    if not code.isdigit() or not 0 < int(code) * quantity <= MAX_AMOUNT:
        raise _InvalidCode(f"points:{code} × {quantity} is not an amount of points")
    result = await ledger.credit(
        tx,
        member_id=member_id,
        account="points",
        amount=int(code) * quantity,
        reason=base_reason(reason)[:200],
        source=source,
        idem_key=points_key(grant_id),
        kind="bonus",
        expires_at=expires_at,
        now=now,
    )
    return result.id


def _marked(reason: str, why: str) -> str:
    mark = f" [unfulfilled: {why}]"
    return base_reason(reason)[: 300 - len(mark)] + mark


async def _set_status(tx: Tx, grant_id: uuid.UUID, status: str, reason: str) -> None:
    await tx.conn.execute(
        update(G)
        .where(G.c.tenant_id == tx.tenant_id, G.c.id == grant_id)
        .values(status=status, reason=reason[:300])
    )


# ---- follow-up and reads ----------------------------------------------------------------------


async def retry(
    tx: Tx,
    *,
    grant_ids: Sequence[uuid.UUID] | None = None,
    now: datetime,
    limit: int = 100,
) -> list[Fulfilment]:
    """Try the tenant's ``unfulfilled`` grants again (all, oldest first, or ``grant_ids``) —
    after the operator raised a template's limit or created the missing template. Safe to run
    repeatedly: a grant is delivered at most once (the keys above)."""
    from gateway.identity.reads import resolve

    stmt = select(G).where(G.c.tenant_id == tx.tenant_id, G.c.status == UNFULFILLED)
    if grant_ids is not None:
        stmt = stmt.where(G.c.id.in_(list(grant_ids)))
    rows = list(await tx.conn.execute(stmt.order_by(G.c.created_at, G.c.id).limit(limit)))
    out = []
    for r in rows:
        owner = await resolve(tx, r.member_id) or r.member_id
        out.append(
            await fulfil(
                tx,
                grant_id=r.id,
                member_id=owner,
                kind=r.kind,
                code=r.code,
                quantity=int(r.quantity),
                rule=r.rule,
                reason=r.reason,
                now=now,
            )
        )
    return out


async def coupons_of(
    tx: Tx, grants: Iterable[tuple[uuid.UUID, int]]
) -> dict[uuid.UUID, list[coupons.Coupon]]:
    """The coupons each ``(grant id, quantity)`` issued, in one statement (the join is the
    coupons' idempotency keys, :func:`coupon_key`)."""
    wanted = {coupon_key(g, n): g for g, q in grants for n in range(min(int(q), MAX_COUPONS))}
    out: dict[uuid.UUID, list[coupons.Coupon]] = {}
    if not wanted:
        return out
    rows = await tx.conn.execute(
        select(C)
        .where(C.c.tenant_id == tx.tenant_id, C.c.idem_key.in_(list(wanted)))
        .order_by(C.c.idem_key)
    )
    for r in rows:
        out.setdefault(wanted[r.idem_key], []).append(coupon_from_row(r))
    return out


__all__ = [
    "FULFILLED",
    "ISSUED",
    "KINDS",
    "STATUSES",
    "UNFULFILLED",
    "Fulfilment",
    "base_reason",
    "coupon_key",
    "coupons_of",
    "fulfil",
    "retry",
    "source_of",
]
