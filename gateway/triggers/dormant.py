"""``member.dormant``: no purchase for the tenant's configured number of days.

Options: ``days`` (default 90) and ``never_ordered`` (default true). A member's last order is
their latest paid order (merged members' included, see :mod:`gateway.triggers.history`); they
are dormant once ``days`` tenant-local calendar days have passed since that order's local date
(an order at 23:00 on 1 March, 90 days: dormant from 30 May, 00:00 local time). The occurrence key
is the last order's id, so each dormant spell fires once: a new order starts a new spell, a
refund that makes an earlier order the last one again does not fire that one twice.

A member who never ordered is dormant ``days`` local days after joining (key ``joined``, once),
unless ``never_ordered: false``. Payload: ``days`` (the configured threshold) and
``last_order_at`` (ISO, ``null`` for never-ordered members).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from gateway.storage.db import Tx
from gateway.triggers.base import Candidate, ScanRun, local_date
from gateway.triggers.history import MemberScan, last_orders


class Dormant(MemberScan):
    name = "dormant"
    event_type = "member.dormant"

    async def candidates(
        self, tx: Tx, run: ScanRun, members: Sequence[Any], ids: list[uuid.UUID]
    ) -> list[Candidate]:
        days = int(run.options["days"])
        last_day = run.today - timedelta(days=days)  # the latest local date still dormant
        last = await last_orders(tx, ids, len(members))
        out = []
        for m in members:
            order = last.get(m.id)
            if order is not None:
                oid, at = order
                if local_date(at, run.timezone) <= last_day:
                    out.append(
                        Candidate(m.id, str(oid), {"days": days, "last_order_at": at.isoformat()})
                    )
            elif (
                run.options["never_ordered"] and local_date(m.created_at, run.timezone) <= last_day
            ):
                out.append(Candidate(m.id, "joined", {"days": days, "last_order_at": None}))
        return out


DORMANT = Dormant()
