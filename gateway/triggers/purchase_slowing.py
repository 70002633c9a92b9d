"""``member.purchase_slowing``: the member is late against their *own* purchase rhythm.

Options: ``factor`` (default 2.0) and ``min_orders`` (default 3). A member's rhythm is the median
gap between consecutive paid orders (merged members' included), counting only gaps of at least a
day — a split order or a second purchase the same afternoon is one visit; ``min_orders`` counts
visits (gaps + 1). They are slowing when the time since the last paid order exceeds ``factor`` ×
that median (exact durations: rhythms are not calendar days). The database computes the gaps and
the median with window functions (:func:`gateway.triggers.history.rhythms`).

The occurrence key is the last order's id: once per spell, a new order starts a new one. Payload:
``usual_interval_days`` (the median, days, 2 decimals), ``days_since_last`` (whole days) and
``last_order_at`` (ISO).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from gateway.storage.db import Tx
from gateway.triggers.base import Candidate, ScanRun
from gateway.triggers.history import DAY_SECONDS, MemberScan, rhythms


class PurchaseSlowing(MemberScan):
    name = "purchase_slowing"
    event_type = "member.purchase_slowing"

    async def candidates(
        self, tx: Tx, run: ScanRun, members: Sequence[Any], ids: list[uuid.UUID]
    ) -> list[Candidate]:
        factor = float(run.options["factor"])
        min_orders = int(run.options["min_orders"])
        out = []
        for r in await rhythms(tx, ids, len(members)):
            median, visits = float(r.median), int(r.k) + 1
            since = (run.now - r.at).total_seconds()
            if visits >= min_orders and since > factor * median:
                payload = {
                    "usual_interval_days": round(median / DAY_SECONDS, 2),
                    "days_since_last": int(since // DAY_SECONDS),
                    "last_order_at": r.at.isoformat(),
                }
                out.append(Candidate(r.owner, str(r.oid), payload))
        out.sort(key=lambda c: c.member_id)
        return out


PURCHASE_SLOWING = PurchaseSlowing()
