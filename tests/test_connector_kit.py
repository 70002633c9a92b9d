"""The connector conformance kit (``connectors.testing``) on the example partner connector.

(a) The kit's suite runs in-process on Example Shop (``TestExampleShopKit`` below).
(b) The example package is installed through its ``memberhub.connectors`` entry point into a
    throwaway directory (the current environment is not touched), and its own one-file test suite
    runs in a subprocess with the kit's pytest plugin, exactly as a partner runs it.
(c) The kit catches bugs: deliberately broken variants of the connector fail the kit test meant
    to catch them (and the intact connector passes the same tests in the same run), and the
    strictness levels fail or skip missing harness pieces as documented.
Plus the canonical record schemas themselves: valid records pass, malformed documents do not.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from connectors.testing import connector_suite
from connectors.testing.kit import (
    ScheduledFaults,
    _looks_like_id_card,
    _pii_violations,
    record_validator,
    resolve_strictness,
)
from gateway.sync.records import (
    Identifier,
    MemberRecord,
    OrderLineRecord,
    OrderRecord,
    PointsEventRecord,
    Profile,
    RefundRecord,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "example_connector"
CAPABILITIES = frozenset({"orders", "refunds", "rate_limit"})


def _import_example() -> tuple[Any, Any]:
    sys.path.insert(0, str(EXAMPLE))
    try:
        shop = importlib.import_module("memberhub_example_shop")
        testing = importlib.import_module("memberhub_example_shop.testing")
    finally:
        sys.path.remove(str(EXAMPLE))
    return shop, testing


_shop, _testing = _import_example()

# (a) the whole kit, in-process, on the example connector.
TestExampleShopKit = connector_suite(
    _testing.ExampleShopHarness(_shop.ExampleShop, "example", capabilities=CAPABILITIES)
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MEMBERHUB_CONN"))}
    env.update(extra)
    return env


def _outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """``{"Class::test": (outcome, message)}`` from a JUnit XML report."""
    out: dict[str, tuple[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = f"{node.get('message') or ''}\n{node.text or ''}"
                break
        out[name] = (outcome, message)
    return out


# (b) installed through its entry point, run the partner's way -------------------------------

# The kit's plugin loads through its pytest11 entry point once memberhub is installed; naming it
# with -p as well would register it twice ("Plugin already registered").
_PLUGIN_ARGS = (
    []
    if any(
        ep.value == "connectors.testing.plugin"
        for ep in __import__("importlib.metadata").metadata.entry_points(group="pytest11")
    )
    else ["-p", "connectors.testing.plugin"]
)

_PARTNER_RUN = """
import sys
from importlib.metadata import entry_points

import pytest

import memberhub_example_shop
from gateway.sync.registry import load_connectors

registry = load_connectors()
cls = registry.get("example_shop")
print("MH-ENTRY-POINT", cls.__module__ if cls else None, memberhub_example_shop.__file__)
args = sys.argv[1:]
if not any(ep.value == "connectors.testing.plugin" for ep in entry_points(group="pytest11")):
    args += ["-p", "connectors.testing.plugin"]  # the pytest11 entry point is not installed
sys.exit(pytest.main(args))
"""


def test_example_package_passes_the_kit_installed_through_its_entry_point(
    tmp_path: Path,
) -> None:
    src, site, partner = tmp_path / "src", tmp_path / "site", tmp_path / "partner"
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
        "pip could not build the example package (it needs setuptools>=77 and wheel in this "
        f"environment):\n{install.stdout}\n{install.stderr}"
    )
    points = list(site.glob("memberhub_example_shop-*.dist-info/entry_points.txt"))
    assert points and "example_shop = memberhub_example_shop" in points[0].read_text()
    # The partner's checkout: only the tests; the package comes from the installation.
    shutil.copytree(src / "tests", partner / "tests")
    junit = tmp_path / "partner.xml"
    run = subprocess.run(
        [
            sys.executable, "-c", _PARTNER_RUN, str(partner / "tests"),
            "-p", "no:cacheprovider", "-q", f"--junitxml={junit}",
        ],
        cwd=partner,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(PYTHONPATH=str(site)),
    )  # fmt: skip
    report = f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    marker = [line for line in run.stdout.splitlines() if line.startswith("MH-ENTRY-POINT")]
    assert marker, report
    _, module, path = marker[0].split(" ", 2)
    assert module == "memberhub_example_shop", f"entry point not found: {marker[0]}"
    assert Path(path).is_relative_to(site), f"imported from {path}, not the installation"
    assert run.returncode == 0, report
    outcomes = _outcomes(junit)
    passed = {k for k, (o, _) in outcomes.items() if o == "passed"}
    assert len(passed) >= 15, outcomes
    assert "TestExampleShop::test_one_person_two_channels_one_member" in passed
    assert outcomes["TestExampleShop::test_token_refresh"][0] == "skipped"


# (c) the kit catches broken connectors ---------------------------------------------------------

_BROKEN = '''
import dataclasses
from datetime import datetime, timedelta

import pytest

from connectors.testing import Harness, connector_suite
from memberhub_example_shop import (
    WINDOW, ExampleShop, OrdersStream, RefundsStream, Request, parse,
)
from memberhub_example_shop.testing import ExampleShopHarness
from gateway.sync import Checkpoint, OrderRecord, Profile, errors

CAPS = frozenset({"orders", "refunds", "rate_limit"})


class YuanOrders(OrdersStream):
    """Divides money by 100: yuan where fen are due."""

    async def read(self, partition, state):
        async for item in super().read(partition, state):
            if isinstance(item, OrderRecord):
                item = dataclasses.replace(
                    item, total_fen=item.total_fen // 100, paid_fen=item.paid_fen // 100
                )
            yield item


class YuanShop(ExampleShop):
    def streams(self):
        return (YuanOrders(self), RefundsStream(self))


class SkippingOrders(OrdersStream):
    """Bookmarks one window too far: a resumed read skips a day."""

    async def read(self, partition, state):
        async for item in super().read(partition, state):
            if isinstance(item, Checkpoint):
                cursor = datetime.fromisoformat(item.state["cursor"]) + WINDOW
                item = Checkpoint(
                    {"cursor": min(cursor, partition.until).isoformat()}, item.done, item.total
                )
            yield item


class SkippingShop(ExampleShop):
    def streams(self):
        return (SkippingOrders(self), RefundsStream(self))


def parse_401_as_transient(resp):
    if resp.status == 401:
        raise errors.TransientError("HTTP 401 (taken for a glitch)")
    return parse(resp)


class RetryOn401Shop(ExampleShop):
    async def get(self, path, **params):
        query = {k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in params.items()}

        def build():
            return Request(
                "GET",
                self.config["base_url"] + path,
                params={**query, "shop": self.config["shop"]},
                headers={"Authorization": f"Bearer {self.config['api_key']}"},
            )

        return await self.http.call(build, parse_401_as_transient)


class LeakyOrders(OrdersStream):
    """Puts the buyer's phone into the profile name."""

    async def read(self, partition, state):
        async for item in super().read(partition, state):
            if isinstance(item, OrderRecord):
                phone = next(i.value for i in item.buyer if i.kind == "phone")
                item = dataclasses.replace(item, profile=Profile(name=f"buyer {phone}"))
            yield item


class LeakyShop(ExampleShop):
    def streams(self):
        return (LeakyOrders(self), RefundsStream(self))


def harness(cls, caps=CAPS):
    return ExampleShopHarness(cls, "example", capabilities=caps)


TestGood = connector_suite(harness(ExampleShop))
TestYuan = connector_suite(harness(YuanShop))
TestSkipping = connector_suite(harness(SkippingShop))
TestRetryOn401 = connector_suite(harness(RetryOn401Shop))
TestLeaky = connector_suite(harness(LeakyShop))
# A harness that implements nothing (make_fake / config raise NotImplementedError).
TestNoFakeStrict = connector_suite(Harness(ExampleShop, "example", CAPS), strictness="strict")
TestNoFakeLenient = connector_suite(Harness(ExampleShop, "example", CAPS), strictness="lenient")
TestNoFakeDefault = connector_suite(Harness(ExampleShop, "example", CAPS))
# Declares members, but Example Shop has no member stream.
TestNoMembersStrict = connector_suite(harness(ExampleShop, CAPS | {"members"}), strictness="strict")


@pytest.mark.connector_world("example", orders=40, days=3)
def test_connector_world_fixture(connector_world):
    assert connector_world.end - connector_world.start == timedelta(days=3)
    assert sum(len(v) for v in connector_world.orders.values()) == 40
    assert set(connector_world.orders) == {"example", "pos"}


TestNoMembersLenient = connector_suite(
    harness(ExampleShop, CAPS | {"members"}), strictness="lenient"
)
'''

# test id -> (expected outcome, text the report must contain)
_EXPECTED = {
    "TestGood::test_money_in_fen": ("passed", ""),
    "TestGood::test_resume_from_every_checkpoint": ("passed", ""),
    "TestGood::test_no_retry_on_401": ("passed", ""),
    "TestGood::test_no_tenant_ids_or_raw_pii": ("passed", ""),
    "TestGood::test_token_refresh": ("skipped", "not applicable"),
    "TestYuan::test_money_in_fen": ("failed", "total_fen"),
    "TestSkipping::test_resume_from_every_checkpoint": ("failed", "loses"),
    "TestRetryOn401::test_no_retry_on_401": ("failed", "TransientError"),
    "TestLeaky::test_no_tenant_ids_or_raw_pii": ("failed", "a phone number at profile/name"),
    "TestNoFakeStrict::test_check_ok": ("failed", "does not implement make_fake()"),
    "TestNoFakeLenient::test_check_ok": ("skipped", "lenient"),
    # No explicit level: the command line's --connector-strictness=lenient applies.
    "TestNoFakeDefault::test_check_ok": ("skipped", "lenient"),
    "TestNoMembersStrict::test_discovery_stable": ("failed", "no MemberRecord stream"),
    "TestNoMembersLenient::test_discovery_stable": ("skipped", "no MemberRecord stream"),
    # The plugin's fixture, configured by its marker.
    "test_broken_connectors::test_connector_world_fixture": ("passed", ""),
}


def test_kit_catches_broken_connectors_and_honours_strictness(tmp_path: Path) -> None:
    (tmp_path / "test_broken_connectors.py").write_text(textwrap.dedent(_BROKEN))
    junit = tmp_path / "broken.xml"
    ids = [
        f"test_broken_connectors.py::{case.removeprefix('test_broken_connectors::')}"
        for case in _EXPECTED
    ]
    run = subprocess.run(
        [
            sys.executable, "-m", "pytest", *ids, *_PLUGIN_ARGS,
            "-p", "no:cacheprovider", "-q", "--connector-strictness=lenient",
            f"--junitxml={junit}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(PYTHONPATH=str(EXAMPLE)),
    )  # fmt: skip
    report = f"{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    assert junit.exists(), report
    assert run.returncode == 1, report  # some tests failed, as intended; no usage error
    outcomes = _outcomes(junit)
    for case, (outcome, text) in _EXPECTED.items():
        got, message = outcomes.get(case, ("missing", ""))
        assert got == outcome, f"{case}: expected {outcome}, got {got}\n{message[-2000:]}"
        assert text in message, f"{case}: {text!r} not in the report:\n{message[-2000:]}"


# strictness resolution -------------------------------------------------------------------------


def _config(option: str | None) -> Any:
    return SimpleNamespace(getoption=lambda name, default=None: option)


def test_strictness_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMBERHUB_CONNECTOR_STRICTNESS", raising=False)
    assert resolve_strictness(None, None) == "strict"
    assert resolve_strictness(None, _config(None)) == "strict"
    monkeypatch.setenv("MEMBERHUB_CONNECTOR_STRICTNESS", "Lenient")
    assert resolve_strictness(None, _config(None)) == "lenient"
    assert resolve_strictness(None, _config("strict")) == "strict"  # the option beats the env
    assert resolve_strictness("strict", _config("lenient")) == "strict"  # explicit beats both
    monkeypatch.setenv("MEMBERHUB_CONNECTOR_STRICTNESS", "sloppy")
    with pytest.raises(pytest.UsageError):
        resolve_strictness(None, _config(None))
    with pytest.raises(ValueError, match="strictness"):
        connector_suite(
            _testing.ExampleShopHarness(_shop.ExampleShop, "example"), strictness="sloppy"
        )
    with pytest.raises(TypeError):
        connector_suite(object())  # type: ignore[arg-type]


def test_scheduled_faults_meet_every_kind() -> None:
    faults = ScheduledFaults(rate=0.25, kinds=("429", "5xx", "timeout"), period=4)
    picks = [faults.pick() for _ in range(12)]
    assert picks == [None, None, None, "429"] + [None] * 3 + ["5xx"] + [None] * 3 + ["timeout"]
    assert faults.injected == {"429": 1, "5xx": 1, "timeout": 1}


# the record schemas and the PII scan -----------------------------------------------------------

T0 = datetime(2026, 11, 1, 8, 30, tzinfo=timezone(timedelta(hours=8)))


def _records() -> list[Any]:
    full_profile = Profile(
        name="王芳",
        gender="female",
        birthday=date(1990, 5, 17),
        city="杭州",
        verified=True,
        observed_at=T0,
    )
    line = OrderLineRecord("TEA-LJ-250", "龙井 250g", 2, 16800, 33600, category="tea")
    discount = OrderLineRecord("DISCOUNT", "满减", 1, 0, -1000)
    phone = Identifier("phone", None, "13812345678")
    return [
        MemberRecord("m1", (phone,), T0),
        MemberRecord(
            "m2",
            (phone, Identifier("wechat_unionid", "open-1", "o6_bXYZ")),
            T0,
            profile=full_profile,
            joined_at=T0 - timedelta(days=3),
            level="gold",
            points=120,
        ),
        OrderRecord("o1", "created", T0, T0, 0, 0, ()),
        OrderRecord(
            "o2",
            "paid",
            T0,
            T0.astimezone(UTC),
            32600,
            32600,
            (line, discount),
            buyer=(phone,),
            profile=Profile(name="王芳"),
            paid_at=T0 + timedelta(minutes=5),
            store_code="SH001",
            guide_code="G001",
        ),
        RefundRecord("r1", "o2", 16800, T0, reason="quality"),
        RefundRecord("r2", "o2", 1, T0),
        PointsEventRecord("e1", (phone,), -50, T0, "redeemed on Tmall", balance=70),
        PointsEventRecord("e2", (phone,), 10, T0, "joined"),
    ]


def test_record_schemas_accept_every_valid_record() -> None:
    for rec in _records():
        doc = rec.to_json()
        errors = [e.message for e in record_validator(rec.record_type).iter_errors(doc)]
        assert not errors, (rec.record_type, errors)


@pytest.mark.parametrize(
    ("record_type", "mutate", "why"),
    [
        ("order", lambda d: d.update(placed_at="2026-11-01T08:30:00"), "naive date-time"),
        ("order", lambda d: d.update(total_fen=-1), "negative money"),
        ("order", lambda d: d.update(total_fen=12.5), "money not in integer fen"),
        ("order", lambda d: d.update(total_fen=10**12 + 1), "money out of range"),
        ("order", lambda d: d.update(tenant_id="7f0c"), "unknown field (a tenant)"),
        ("order", lambda d: d.update(status="shipped"), "non-canonical status"),
        ("order", lambda d: d["buyer"].append({"kind": "phone", "value": "1"}), "identifier"),
        ("order", lambda d: d["lines"][0].update(unit_price_fen=-5), "negative unit price"),
        ("member", lambda d: d.update(identifiers=[]), "a member without identifiers"),
        ("member", lambda d: d["profile"].update(birthday="1990-05-17T00:00"), "birthday"),
        ("member", lambda d: d.update(schema_version=2), "wrong version"),
        ("refund", lambda d: d.update(amount_fen=0), "a refund of nothing"),
        ("refund", lambda d: d.update(order_external_id="has space"), "bad key"),
        ("points_event", lambda d: d.update(delta=0), "a zero points change"),
        ("points_event", lambda d: d.update(occurred_at="yesterday"), "not a date-time"),
    ],
)
def test_record_schemas_refuse_malformed_documents(record_type: str, mutate: Any, why: str) -> None:
    rec = next(
        r
        for r in reversed(_records())
        if r.record_type == record_type and (record_type != "order" or r.lines)
    )
    doc = rec.to_json()
    assert record_validator(record_type).is_valid(doc)
    mutate(doc)
    assert not record_validator(record_type).is_valid(doc), why


def test_pii_scan() -> None:
    ok = {
        "identifiers": [
            {"kind": "phone", "scope": None, "value": "+86 138 1234 5678"},
            {"kind": "wechat_unionid", "scope": "open-1", "value": "o6_b13912345678abc"},
        ],
        "profile": {"name": "王芳", "verified": False},
        "external_id": "EX070000000012",
    }
    assert _pii_violations(ok, {"13812345678"}) == []
    assert _pii_violations({"note": "call 13912345678"}, set()) != []
    assert _pii_violations({"note": "电话+8613912345678"}, set()) != []
    # A known person's phone, even glued into another token, outside a PII identifier.
    leaked = {"identifiers": [{"kind": "wechat_unionid", "scope": "s", "value": "x13812345678"}]}
    assert _pii_violations(leaked, {"13812345678"}) != []
    assert _pii_violations({"tenant_id": "t"}, set()) != []
    assert _pii_violations({"a": [{"Tenant": 1}]}, set()) != []
    assert _looks_like_id_card("id 11010519491231002X")
    assert not _looks_like_id_card("order 110105194912310021")  # bad check digit
    assert not _looks_like_id_card("order 1101051949123100211")  # 19 digits: not an ID
