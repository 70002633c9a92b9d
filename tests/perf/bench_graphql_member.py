"""HTTP throughput of the one-member GraphQL query vs a plain starlette JSON endpoint.

Both run in ONE uvicorn process (1 worker, loopback, uvloop + httptools), same database, same
auth (bearer key through the hub's cache), same service batch functions (member row, balances,
5 latest orders). A bounded aiohttp loop (concurrency 16, fixed duration) drives each endpoint
after asserting HTTP 200. Prints one JSON line; target: graphql/plain ≥ 0.6.

    python tests/perf/bench_graphql_member.py            # SQLite (+ PostgreSQL when
                                                         # MEMBERHUB_BENCH_POSTGRES_URL is set)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

CONCURRENCY = 16
DURATION = float(os.environ.get("BENCH_DURATION", "6"))
ROUNDS = 3  # alternating plain/GraphQL rounds; each gets DURATION / ROUNDS
QUERY = """query($id: ID!) { member(id: $id) { id profile { name gender birthday city }
  balances { account available held expiring nextExpiry }
  latestOrders(limit: 5) { id externalId status paidFen placedAt } } }"""


def build_app(url: str):
    """The real app plus a /plain route answering the same data as hand-built JSON."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from gateway import ledger, members, orders
    from gateway.app import create_app
    from gateway.settings import Settings
    from schema.relay import decode_id, global_id
    from tests.perf._seed import SECRET

    app = create_app(Settings(database_url=url, secret_key=SECRET, pool_size=8))
    hub = app.state.hub

    async def plain(request: Request) -> JSONResponse:
        header = request.headers.get("authorization", "")
        principal = await hub.authenticate(header.partition(" ")[2])
        if principal is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        mid = decode_id(request.query_params["id"], "Member")
        assert mid is not None
        async with hub.db.tenant_tx(principal.tenant_id, write=False) as tx:
            row = (await members.get_members(tx, [mid])).get(mid)
            bal = await ledger.balances_for(tx, [mid])
            latest = (await orders.latest_orders_for(tx, [mid], limit_per_member=5)).get(mid, [])
        if row is None:
            return JSONResponse({"data": {"member": None}})
        return JSONResponse(
            {
                "data": {
                    "member": {
                        "id": global_id("Member", row.id),
                        "profile": {
                            "name": row.name,
                            "gender": row.gender,
                            "birthday": row.birthday.isoformat() if row.birthday else None,
                            "city": row.city,
                        },
                        "balances": [
                            {
                                "account": a,
                                "available": b.available,
                                "held": b.held,
                                "expiring": b.expiring,
                                "nextExpiry": b.next_expiry.isoformat() if b.next_expiry else None,
                            }
                            for a in ledger.ACCOUNTS
                            for b in [
                                bal.get((mid, a)) or ledger.BalanceView(mid, a, 0, 0, 0, None)
                            ]
                        ],
                        "latestOrders": [
                            {
                                "id": global_id("Order", o.id),
                                "externalId": o.external_id,
                                "status": o.status.upper(),
                                "paidFen": o.paid_fen,
                                "placedAt": o.placed_at.isoformat(),
                            }
                            for o in latest
                        ],
                    }
                }
            }
        )

    app.router.routes.append(Route("/plain", plain))
    return app


def serve(url: str, port: int) -> None:
    import uvicorn

    uvicorn.run(
        build_app(url),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
    )


async def load(method: str, url: str, *, headers: dict, body: dict | None) -> float:
    import aiohttp

    async with aiohttp.ClientSession(headers=headers) as session:

        async def once() -> None:
            if method == "POST":
                async with session.post(url, json=body) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
            else:
                async with session.get(url) as r:
                    assert r.status == 200, await r.text()
                    await r.read()

        await once()
        for _ in range(50):  # warm-up: caches, pool
            await once()
        done = 0
        stop = time.perf_counter() + DURATION / ROUNDS

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await once()
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return done / (time.perf_counter() - start)


def run_backend(name: str, url: str) -> dict:
    from tests.graphql_client import free_port
    from tests.perf._seed import seed

    seeded = asyncio.run(seed(url, n_members=20))
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", url, str(port)])
    try:
        import httpx

        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        from schema.relay import global_id

        gid = global_id("Member", seeded.member_ids[3])
        headers = {"Authorization": f"Bearer {seeded.key}"}
        body = {"query": QUERY, "variables": {"id": gid}}
        check = httpx.post(f"http://127.0.0.1:{port}/graphql", json=body, headers=headers)
        assert check.status_code == 200 and "errors" not in check.json(), check.text
        plain = httpx.get(f"http://127.0.0.1:{port}/plain?id={gid}", headers=headers).json()
        assert plain == check.json(), (plain, check.json())  # same JSON, byte for byte
        # Alternate the two sides in rounds and take medians: on a shared 2-vCPU machine a
        # single back-to-back pair swings the ratio by ±30 %.
        plain_runs: list[float] = []
        gql_runs: list[float] = []
        for _ in range(ROUNDS):
            plain_runs.append(
                asyncio.run(
                    load(
                        "GET",
                        f"http://127.0.0.1:{port}/plain?id={gid}",
                        headers=headers,
                        body=None,
                    )
                )
            )
            gql_runs.append(
                asyncio.run(
                    load("POST", f"http://127.0.0.1:{port}/graphql", headers=headers, body=body)
                )
            )
        plain_rps = statistics.median(plain_runs)
        gql_rps = statistics.median(gql_runs)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {
        "backend": name,
        "graphql_rps": round(gql_rps),
        "plain_rps": round(plain_rps),
        "ratio": round(gql_rps / plain_rps, 3),
    }


def main() -> None:
    from tests.perf._seed import backends

    with tempfile.TemporaryDirectory() as tmp:
        results = [run_backend(n, u if n == "sqlite" else _fresh_pg(u)) for n, u in backends(tmp)]
    print(
        json.dumps(
            {
                "bench": "graphql_member",
                "concurrency": CONCURRENCY,
                "duration_s": DURATION,
                "target_ratio": 0.6,
                "results": results,
                "ok": all(r["ratio"] >= 0.6 for r in results),
            }
        )
    )


def _fresh_pg(admin_url: str) -> str:
    """A throwaway database (non-superuser role) like the test suite uses."""
    from tests.conftest import create_pg_database

    return create_pg_database(admin_url).app_url


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        os.environ.setdefault("PYTHONHASHSEED", str(uuid.uuid4().int % 1000))
        main()
