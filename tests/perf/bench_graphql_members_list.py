"""``members(first: 100)`` with balances, latestOrders and identities: SQL statement count, and
execution time vs graphql-core running the same query on the same data with a minimal schema
whose list resolver batch-loads the relations (the floor for Python GraphQL).

Both execute in-process against the same database and the same service batch functions; both
have parse/validate cached (strawberry: ParserCache + ValidationCache; graphql-core: the document
is parsed and validated once). Prints one JSON line; target: strawberry/graphql-core ≤ 1.3.

    python tests/perf/bench_graphql_members_list.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

ROUNDS = 30
QUERY = """{ members(first: 100) { edges { cursor node { id
  profile { name city }
  identities { kind display }
  balances { account available held expiring nextExpiry }
  latestOrders(limit: 3) { externalId paidFen placedAt } } } } }"""


def core_schema(ctx_holder: dict[str, Any]) -> Any:
    """graphql-core schema: the ``members`` resolver loads the page and every relation in one
    batch each, and the object fields are plain dict look-ups."""
    from graphql import (
        GraphQLArgument,
        GraphQLField,
        GraphQLInt,
        GraphQLList,
        GraphQLNonNull,
        GraphQLObjectType,
        GraphQLScalarType,
        GraphQLSchema,
        GraphQLString,
    )

    from gateway import ledger, members, orders
    from schema.relay import encode_cursor, global_id

    dt = GraphQLScalarType("DateTime", serialize=lambda v: v.isoformat())

    def key(name: str) -> GraphQLField:
        return GraphQLField(GraphQLString, resolve=lambda o, _i: o[name])

    def f(t: Any, name: str) -> GraphQLField:
        return GraphQLField(t, resolve=lambda o, _i: o[name])

    balance = GraphQLObjectType(
        "Balance",
        {
            "account": f(GraphQLNonNull(GraphQLString), "account"),
            "available": f(GraphQLNonNull(GraphQLInt), "available"),
            "held": f(GraphQLNonNull(GraphQLInt), "held"),
            "expiring": f(GraphQLNonNull(GraphQLInt), "expiring"),
            "nextExpiry": f(dt, "nextExpiry"),
        },
    )
    order = GraphQLObjectType(
        "Order",
        {
            "externalId": key("externalId"),
            "paidFen": f(GraphQLInt, "paidFen"),
            "placedAt": f(dt, "placedAt"),
        },
    )
    identity = GraphQLObjectType("Identity", {"kind": key("kind"), "display": key("display")})
    profile = GraphQLObjectType("Profile", {"name": key("name"), "city": key("city")})
    member = GraphQLObjectType(
        "Member",
        {
            "id": key("id"),
            "profile": f(profile, "profile"),
            "identities": f(GraphQLList(identity), "identities"),
            "balances": f(GraphQLList(balance), "balances"),
            "latestOrders": GraphQLField(
                GraphQLList(order),
                args={"limit": GraphQLArgument(GraphQLInt, default_value=5)},
                resolve=lambda o, _i, limit=5: o["latestOrders"],
            ),
        },
    )
    edge = GraphQLObjectType("Edge", {"cursor": key("cursor"), "node": f(member, "node")})
    conn = GraphQLObjectType("Conn", {"edges": f(GraphQLList(edge), "edges")})

    async def resolve_members(_root: Any, _info: Any, first: int = 20) -> dict[str, Any]:
        ctx = ctx_holder["ctx"]
        rows = await ctx.read(
            members.list_members, first=first, after=None, filter=members.MemberFilter()
        )
        rows = rows[:first]
        ids = [r.id for r in rows]
        idents = await ctx.read(members.identities_for, ids)
        bal = await ctx.read(ledger.balances_for, ids)
        latest = await ctx.read(orders.latest_orders_for, ids, limit_per_member=3)
        edges = []
        for r in rows:
            edges.append(
                {
                    "cursor": encode_cursor("member", str(r.id)),
                    "node": {
                        "id": global_id("Member", r.id),
                        "profile": {"name": r.name, "city": r.city},
                        "identities": [
                            {"kind": i.kind, "display": i.display} for i in idents[r.id]
                        ],
                        "balances": [
                            {
                                "account": a,
                                "available": b.available,
                                "held": b.held,
                                "expiring": b.expiring,
                                "nextExpiry": b.next_expiry,
                            }
                            for a in ledger.ACCOUNTS
                            for b in [
                                bal.get((r.id, a)) or ledger.BalanceView(r.id, a, 0, 0, 0, None)
                            ]
                        ],
                        "latestOrders": [
                            {
                                "externalId": o.external_id,
                                "paidFen": o.paid_fen,
                                "placedAt": o.placed_at,
                            }
                            for o in latest[r.id]
                        ],
                    },
                }
            )
        return {"edges": edges}

    query = GraphQLObjectType(
        "Query",
        {
            "members": GraphQLField(
                conn, args={"first": GraphQLArgument(GraphQLInt)}, resolve=resolve_members
            )
        },
    )
    return GraphQLSchema(query)


async def run(url: str) -> dict[str, Any]:
    from graphql import execute, parse, validate

    from gateway.hub import Hub
    from gateway.settings import Settings
    from gateway.storage.db import Database
    from gateway.tenancy import Principal, Scope
    from schema import build_schema
    from schema.context import RequestContext
    from tests.graphql_client import StatementCounter
    from tests.perf._seed import SECRET, seed

    seeded = await seed(url, n_members=100, orders_each=3)
    db = Database.from_url(url)
    hub = Hub(Settings(database_url=url, secret_key=SECRET), db)
    principal = Principal(seeded.tenant_id, frozenset({Scope.READ}))
    sb = build_schema(hub.settings)
    holder: dict[str, Any] = {}
    core = core_schema(holder)
    doc = parse(QUERY)
    assert not validate(core, doc)

    async def strawberry_once() -> Any:
        ctx = RequestContext(hub, principal)
        try:
            r = await sb.execute(QUERY, context_value=ctx)
            assert not r.errors, r.errors
            return r.data
        finally:
            await ctx.close()

    async def core_once() -> Any:
        ctx = holder["ctx"] = RequestContext(hub, principal)
        try:
            r = await execute(core, doc)  # type: ignore[misc]
            assert not r.errors, r.errors
            return r.data
        finally:
            await ctx.close()

    a, b = await strawberry_once(), await core_once()
    assert a == b, "the two implementations must answer the same JSON"
    assert len(a["members"]["edges"]) == 100
    with StatementCounter(db) as counter:
        await strawberry_once()
    statements = len(counter.queries)

    async def timed(fn: Any) -> float:
        samples = []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            await fn()
            samples.append(time.perf_counter() - t)
        return statistics.median(samples)

    for _ in range(3):
        await strawberry_once()
        await core_once()
    # interleave to share machine noise fairly
    s1, c1 = await timed(strawberry_once), await timed(core_once)
    s2, c2 = await timed(strawberry_once), await timed(core_once)
    sb_t, core_t = min(s1, s2), min(c1, c2)
    await db.dispose()
    return {
        "statements": statements,
        "strawberry_ms": round(sb_t * 1000, 2),
        "graphql_core_ms": round(core_t * 1000, 2),
        "ratio": round(sb_t / core_t, 3),
    }


def main() -> None:
    from tests.perf._seed import backends

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in backends(tmp):
            if name == "postgres":
                from tests.conftest import create_pg_database

                url = create_pg_database(url).app_url
            results.append({"backend": name, **asyncio.run(run(url))})
    print(
        json.dumps(
            {
                "bench": "graphql_members_list",
                "page": 100,
                "target_ratio": 1.3,
                "results": results,
                "ok": all(r["ratio"] <= 1.3 for r in results),
            }
        )
    )


if __name__ == "__main__":
    main()
