"""``points.expiring``: a member's points lots are about to expire.

Options: ``days_ahead`` (default 7) and ``accounts`` (expiring accounts, default ``[points]``).
A member is selected when lots with points left (``remaining > 0``) in those accounts expire
after ``now`` and before the end of the tenant-local day ``today + days_ahead``. One event per
member per account per *local expiry date* — the occurrence key is ``<account>:<YYYY-MM-DD>`` —
whose ``amount`` is what is left on that date's lots when it fires (lots earned later for the
same date do not fire again), ``expires_at`` the earliest expiry instant of that date and
``days_left`` the local days from today. A run that was missed fires on the next one, with fewer
days left, as long as the points are still there.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, select

from gateway.sql import in_ids
from gateway.storage.db import Tx
from gateway.storage.tables import LedgerTransfer, Member
from gateway.triggers.base import Candidate, ScanRun, local_date, local_midnight
from gateway.triggers.history import custom_plans

L: Any = LedgerTransfer.__table__  # type: ignore[attr-defined]
M: Any = Member.__table__  # type: ignore[attr-defined]


class PointsExpiring:
    name = "points_expiring"
    event_type = "points.expiring"

    def _lots(self, tx: Tx, run: ScanRun) -> list[Any]:
        horizon = local_midnight(
            run.today + timedelta(days=run.options["days_ahead"] + 1), run.timezone
        )
        return [
            L.c.tenant_id == tx.tenant_id,
            L.c.account.in_(list(run.options["accounts"])),
            L.c.remaining > 0,
            L.c.expires_at > run.now,
            L.c.expires_at < horizon,
        ]

    async def scan(
        self, tx: Tx, run: ScanRun, after: uuid.UUID | None, limit: int
    ) -> tuple[list[Candidate], uuid.UUID | None]:
        await custom_plans(tx)
        lots = self._lots(tx, run)
        cond = [*lots, M.c.status == "active"]
        if after is not None:
            cond.append(L.c.member_id > after)
        ids = list(
            (
                await tx.conn.execute(
                    select(L.c.member_id)
                    .join_from(L, M, and_(M.c.tenant_id == L.c.tenant_id, M.c.id == L.c.member_id))
                    .where(*cond)
                    .group_by(L.c.member_id)
                    .order_by(L.c.member_id)
                    .limit(limit)
                )
            ).scalars()
        )
        if not ids:
            return [], None
        rows = await tx.conn.execute(
            select(
                L.c.member_id, L.c.account, L.c.expires_at, func.sum(L.c.remaining).label("left")
            )
            .where(*lots, in_ids(L.c.member_id, tx.dialect))
            .group_by(L.c.member_id, L.c.account, L.c.expires_at),
            {"ids": ids},
        )
        by: dict[tuple[uuid.UUID, str, Any], list[Any]] = {}
        for r in rows:
            day = local_date(r.expires_at, run.timezone)
            by.setdefault((r.member_id, r.account, day), []).append(r)
        out = []
        for (member, account, day), group in sorted(
            by.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])
        ):
            payload = {
                "account": account,
                "amount": int(sum(int(r.left) for r in group)),
                "expires_at": min(r.expires_at for r in group).isoformat(),
                "days_left": (day - run.today).days,
            }
            out.append(Candidate(member, f"{account}:{day.isoformat()}", payload))
        return out, ids[-1] if len(ids) == limit else None


POINTS_EXPIRING = PointsExpiring()
