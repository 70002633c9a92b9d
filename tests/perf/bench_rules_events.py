"""Benchmark ``rules_events``: member events through the rule engine vs the bare ledger write.

Run: ``python tests/perf/bench_rules_events.py`` (PostgreSQL superuser URL from
``MEMBERHUB_BENCH_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1/postgres``). It
creates a fresh database owned by a non-superuser role (row-level security applies to both
sides), configures one tenant with the built-in ``bakery`` rule plugin — tiers, earning, tasks
and benefits all enabled — and runs 8 concurrent workers per phase, spread over 2,000 members:

- **rules**: one member event per call, recorded and processed exactly as the gateway does
  (``engine.record_and_process``: the event row, the member lock, snapshot, earning with the
  tier multiplier, task progress and completion, benefits, ledger credits, growth facts, the
  tier decision and any ``tier.changed`` follow-up) — alternately an ``order.paid`` (2
  categories, ¥20-¥300) and a ``task.checkin`` on a new local day;
- **ledger**: ``ledger.credit`` of the same size through ``Database.tenant_tx`` (the bare
  ledger write path, one transaction per write).

Phases alternate in 3 rounds (medians). Prints ONE JSON line with events/s, writes/s and the
ratio rules/ledger (target ≥ 0.5), plus ``ledger.verify`` violations (must be 0).
"""

from __future__ import annotations

import os
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway import coupons, ledger, members
from gateway.identifiers import tenant_key
from gateway.ids import uuid7
from gateway.rules import config as rule_config
from gateway.rules import engine
from gateway.rules.manager import default_registry
from gateway.storage.db import Database
from gateway.tenants import create_tenant
from tests.perf._harness import WORKERS, alternate, ledger_write, run

MEMBERS = 2_000
PHASE_SECONDS = float(os.environ.get("BENCH_PHASE_SECONDS", "6"))
CONFIG = Path(__file__).resolve().parents[2] / "plugins" / "bakery" / "config.example.yaml"
START = datetime(2026, 1, 1, 2, tzinfo=UTC)


async def measure(app_url: str) -> dict[str, object]:
    db = Database.from_url(app_url, pool_size=WORKERS)
    tenant = await create_tenant(db, name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
    registry = default_registry()
    document = rule_config.parse_text(CONFIG.read_text(encoding="utf-8"))
    async with db.tenant_tx(tenant.id) as tx:
        saved, _ = await rule_config.save(tx, document, registry, actor="bench")
        # The join gift is a real coupon since #5 (grant fulfilment): the brand has its template.
        await coupons.create_template(
            tx, code="LEVAIN-WELCOME-CROISSANT", title="A croissant on us", kind="gift",
            gift_sku="CROISSANT", validity="relative", valid_days=30,
        )  # fmt: skip
    slots = sorted({e.slot for e in rule_config.validate(saved.document, registry).entries})
    key = tenant_key(b"bench-secret-key-bench-secret-ke", tenant.id)
    ids: list[uuid.UUID] = []
    for i in range(MEMBERS):  # each join runs the join gift and the entry tier
        async with db.tenant_tx(tenant.id) as tx:
            res = await members.ingest(
                tx,
                channel="pos",
                identifiers=[members.IdentifierInput("pos_card", "brand", f"B{i:06d}")],
                key=key,
                now=START,
            )
        ids.append(res.member_id)
    rng = random.Random(11)
    day = [0] * MEMBERS  # per member: the next check-in day (one per local day)
    clock = {"n": 0}

    async def via_rules(w: int) -> None:
        i = rng.randrange(MEMBERS)
        clock["n"] += 1
        if clock["n"] % 2:
            at = START + timedelta(minutes=clock["n"] % 500_000)
            payload = {
                "order_id": str(uuid7()),
                "channel": "pos",
                "external_id": f"E{clock['n']}",
                "paid_fen": rng.randrange(2_000, 30_000),
                "total_fen": 0,
                "lines": [
                    {"sku": "A", "category": "bread", "quantity": 1, "amount_fen": 1_000},
                    {"sku": "B", "category": "cake", "quantity": 1, "amount_fen": 1_000},
                ],
            }
            etype = "order.paid"
        else:
            day[i] += 1
            at = START + timedelta(days=day[i])
            payload = {"channel": "app"}
            etype = "task.checkin"
        async with db.tenant_tx(tenant.id) as tx:
            await engine.record_and_process(
                tx,
                event_id=uuid7(),
                member_id=ids[i],
                type=etype,
                payload=payload,
                occurred_at=at,
                registry=registry,
                now=at,
            )

    async def via_ledger(w: int) -> None:
        await ledger_write(db, tenant.id, rng.choice(ids))

    rates = await alternate({"rules": via_rules, "ledger": via_ledger}, PHASE_SECONDS)
    async with db.tenant_tx(tenant.id, write=False) as tx:
        violations = await ledger.verify(tx)
    await db.dispose()
    return {
        "benchmark": "rules_events",
        "workers": WORKERS,
        "members": MEMBERS,
        "slots": slots,
        "phase_seconds": PHASE_SECONDS,
        "rules_events_per_s": round(rates["rules"]),
        "ledger_writes_per_s": round(rates["ledger"]),
        "ratio": round(rates["rules"] / rates["ledger"], 3),
        "target": 0.5,
        "verify_violations": len(violations),
    }


if __name__ == "__main__":
    run(measure)
