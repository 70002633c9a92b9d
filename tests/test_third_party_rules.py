"""A third-party rule plugin, installed through its entry point like a partner's package.

``tests/example_rule_plugin`` (``memberhub-weekend-points``) is built and installed with pip into
a throwaway directory (the current environment is not touched, exactly as
``tests/test_connector_kit.py`` does for the example connector); then, in subprocesses that see
that directory:

- the gateway's own discovery (``default_registry()``, no plugin passed by hand) finds its rule set,
  event type and reward kind, imported from the installation;
- on one database, tenant A enables it (``gateway.rules.config.save``) and tenant B does not: the
  same Saturday order earns A the weekend extra and B only the base; A's weekend store visit
  grants the plugin's reward kind; B cannot save a config naming a rule set that is not installed
  (a clear ``ConfigInvalid`` listing what is installed);
- the package's own test file (``plugins.testing``: pure helpers and ``RuleLab``) passes.

And in this process, where the package is *not* installed, a config naming it is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.rules.manager import load_rules
from plugins.testing import check_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "example_rule_plugin"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example package installed (with its entry point) into a throwaway directory."""
    tmp = tmp_path_factory.mktemp("rule-plugin")
    src, site = tmp / "src", tmp / "site"
    shutil.copytree(
        EXAMPLE,
        src,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"),
    )
    install = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
            "--no-index", "--quiet", "--target", str(site), str(src),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
    )  # fmt: skip
    assert install.returncode == 0, (
        "pip could not build the example rule plugin (it needs setuptools>=77 and wheel in this "
        f"environment):\n{install.stdout}\n{install.stderr}"
    )
    points = list(site.glob("memberhub_weekend_points-*.dist-info/entry_points.txt"))
    assert points, list(site.iterdir())
    assert "[memberhub.rules]" in points[0].read_text()
    assert "weekend_points = memberhub_weekend_points" in points[0].read_text()
    yield site


_SCENARIO = r"""
import asyncio, json, sys, tempfile, uuid
from datetime import datetime, timedelta, timezone

import memberhub_weekend_points
from gateway import ledger, members, orders, tenants
from gateway.errors import ConfigInvalid
from gateway.identifiers import tenant_key
from gateway.ledger.store import T
from gateway.rules import config as rule_config
from gateway.rules import engine
from gateway.rules.manager import default_registry
from gateway.storage.db import Database, create_engine
from gateway.storage.migrate import upgrade
from gateway.storage.tables import MemberGrant
from sqlalchemy import select

CST = timezone(timedelta(hours=8))
SATURDAY = datetime(2026, 6, 20, 10, tzinfo=CST)
MONDAY = datetime(2026, 6, 22, 10, tzinfo=CST)
SECRET = b"third-party-rules-test-secret-32"
out = {}


async def main():
    registry = default_registry()  # entry points only: exactly what the gateway loads
    rs = registry.get("weekend_double")
    out["module"] = type(rs).__module__ if rs else None
    out["file"] = memberhub_weekend_points.__file__
    out["earning"] = registry.names("earning")
    out["event_type"] = "store.visited" in registry.event_types
    out["reward_kind"] = getattr(registry.reward_kinds.get("tea_tasting"), "fulfilment", None)

    path = tempfile.mktemp(suffix=".db")
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade(url)
    db = Database(create_engine(url))
    a = await tenants.create_tenant(db, name="Tea A", slug="tea-a")
    b = await tenants.create_tenant(db, name="Tea B", slug="tea-b")
    doc_a = {
        "earning": [
            {"rule": "points_per_yuan"},
            {"rule": "weekend_double", "config": {"multiplier_pct": 200, "tasting": "OOLONG"}},
        ],
        "mall": {"rewards": [{"code": "TASTING", "title": "Tea tasting", "kind": "tea_tasting",
                              "options": {"points": {"points": 500}}}]},
    }
    async with db.tenant_tx(a.id) as tx:
        v, created = await rule_config.save(tx, doc_a, registry, actor="ops@a", comment="weekends")
        out["a_version"] = [v.version, created]
    async with db.tenant_tx(b.id) as tx:
        v, created = await rule_config.save(
            tx, {"earning": ["points_per_yuan"]}, registry, actor="ops@b"
        )
        out["b_version"] = [v.version, created]
    async with db.tenant_tx(b.id) as tx:
        try:
            await rule_config.save(
                tx, {"earning": ["points_per_yuan", "weekend_tripple"]}, registry, actor="ops@b"
            )
        except ConfigInvalid as exc:
            out["b_unknown"] = [list(p) for p in exc.problems]
        out["b_history"] = [h.version for h in await rule_config.history(tx)]

    for t in (a, b):
        key = tenant_key(SECRET, t.id)
        async with db.tenant_tx(t.id) as tx:
            m = (await members.ingest(
                tx, channel="pos", identifiers=[members.IdentifierInput("pos_card", "brand", "C1")],
                key=key, now=SATURDAY - timedelta(days=7),
            )).member_id
        for ext, at in (("SAT-1", SATURDAY), ("MON-1", MONDAY)):
            inp = orders.OrderInput("tmall", ext, m, "paid", [], 12_300, 12_300,
                                    placed_at=at, paid_at=at)
            async with db.tenant_tx(t.id) as tx:
                await orders.record_order(tx, inp, now=at)
                await orders.record_order(tx, inp, now=at)  # re-sent: earns nothing more
            async with db.tenant_tx(t.id) as tx:
                views = await ledger.balances_for(tx, [m], now=at)
            out[f"{t.slug}:{ext}"] = {k[1]: v.available for k, v in views.items()}
        async with db.tenant_tx(t.id) as tx:
            for _ in range(2):
                await engine.record_and_process(
                    tx, event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"visit-{t.slug}"), member_id=m,
                    type="store.visited", payload={"store_code": "HZ01", "channel": "pos"},
                    occurred_at=SATURDAY, now=SATURDAY,
                )
            g = MemberGrant.__table__
            rows = await tx.conn.execute(
                select(g.c.kind, g.c.code, g.c.rule).where(g.c.tenant_id == t.id)
            )
            out[f"{t.slug}:grants"] = [[r.kind, r.code, r.rule] for r in rows]
            out[f"{t.slug}:violations"] = len(await ledger.verify(tx))
            sources = await tx.conn.execute(
                select(T.c.source, T.c.amount)
                .where(T.c.tenant_id == t.id, T.c.account == "points")
                .order_by(T.c.created_at, T.c.source)
            )
            out[f"{t.slug}:sources"] = [[r.source, r.amount] for r in sources]
    await db.dispose()


asyncio.run(main())
print("MH-RESULT " + json.dumps(out, default=str), flush=True)
if len(sys.argv) > 1:  # then the package's own tests, in the same interpreter (saves a start-up)
    import pytest

    sys.exit(pytest.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def partner(
    site: Path, tmp_path_factory: pytest.TempPathFactory
) -> subprocess.CompletedProcess[str]:
    """One subprocess that sees the installation: the scenario, then the package's own tests
    (copied without the package: it must come from the installation)."""
    checkout = tmp_path_factory.mktemp("partner")
    shutil.copytree(EXAMPLE / "tests", checkout / "tests")
    return subprocess.run(
        [
            sys.executable, "-c", _SCENARIO, str(checkout / "tests"),
            "-p", "no:cacheprovider", "-q",
            "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
        ],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(PYTHONPATH=str(site)),
    )  # fmt: skip


def _result(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    report = f"{run.stdout[-4000:]}\n{run.stderr[-6000:]}"
    line = next((x for x in run.stdout.splitlines() if x.startswith("MH-RESULT ")), None)
    assert line is not None, report
    return json.loads(line.removeprefix("MH-RESULT "))


def test_installed_plugin_is_discovered_and_enabled_per_tenant(
    site: Path, partner: subprocess.CompletedProcess[str]
) -> None:
    out = _result(partner)

    # Discovered through its entry point, imported from the installation.
    assert out["module"] == "memberhub_weekend_points", out
    assert Path(out["file"]).is_relative_to(site), out["file"]
    assert {"points_per_yuan", "weekend_double"} <= set(out["earning"])
    assert out["event_type"] is True
    assert out["reward_kind"] == "store"

    # Enabled for A only (both configs saved as version 1 of their own tenant).
    assert out["a_version"] == [1, True] and out["b_version"] == [1, True]
    # Saturday: 123 base + 123 weekend extra for A, the base only for B; Monday: the base.
    assert out["tea-a:SAT-1"] == {"points": 246, "growth": 123}
    assert out["tea-b:SAT-1"] == {"points": 123, "growth": 123}
    assert out["tea-a:MON-1"] == {"points": 369, "growth": 246}
    assert out["tea-b:MON-1"] == {"points": 246, "growth": 246}
    assert out["tea-a:sources"] == [
        ["rule:points_per_yuan", 123],
        ["rule:weekend_double", 123],
        ["rule:points_per_yuan", 123],
    ]
    assert out["tea-b:sources"] == [["rule:points_per_yuan", 123], ["rule:points_per_yuan", 123]]
    # The plugin's reward kind, granted once for A's replayed weekend visit; nothing for B.
    assert out["tea-a:grants"] == [["tea_tasting", "OOLONG", "weekend_double"]]
    assert out["tea-b:grants"] == []
    assert out["tea-a:violations"] == 0 and out["tea-b:violations"] == 0

    # B names a rule set nobody installed: refused, saying what is installed; nothing saved.
    [(path, message)] = out["b_unknown"]
    assert path == "earning[1].rule"
    assert message.startswith("no installed rule set 'weekend_tripple' (earning: ")
    assert "weekend_double" in message and "points_per_yuan" in message
    assert out["b_history"] == [1]


def test_the_plugins_own_tests_pass_with_plugins_testing(
    partner: subprocess.CompletedProcess[str],
) -> None:
    report = f"{partner.stdout[-4000:]}\n{partner.stderr[-4000:]}"
    assert partner.returncode == 0, report
    assert "5 passed" in partner.stdout, report


def test_without_the_package_a_config_naming_it_is_refused() -> None:
    registry = load_rules()
    assert "weekend_double" not in registry, "the example must not be installed here"
    problems = check_config(
        {
            "earning": [{"rule": "points_per_yuan"}, {"rule": "weekend_double"}],
            "mall": {
                "rewards": [
                    {
                        "code": "TASTING",
                        "title": "Tea tasting",
                        "kind": "tea_tasting",
                        "options": {"points": {"points": 500}},
                    }
                ]
            },
        }
    )
    assert [p for p, _ in problems] == ["earning[1].rule", "mall.rewards[0].kind"]
    assert problems[0][1].startswith("no installed rule set 'weekend_double' (earning: ")
    assert problems[1][1].startswith("unknown reward kind 'tea_tasting' (known: ")
    assert "coupon" in problems[1][1]
