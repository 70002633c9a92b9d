"""``memberhub rules …`` and ``memberhub tiers …`` in-process, on a per-test SQLite database."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from gateway import members, orders
from gateway.cli import main
from gateway.identifiers import tenant_key
from gateway.storage.db import Database

CLASSIC = Path(__file__).resolve().parents[1] / "plugins" / "classic" / "config.example.yaml"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEMBERHUB_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("MEMBERHUB_SECRET_KEY", "cli-test-secret")
    assert main(["db", "upgrade"]) == 0
    assert main(["tenant", "create", "--name", "Brand A", "--slug", "brand-a"]) == 0
    assert main(["tenant", "create", "--name", "Brand B", "--slug", "brand-b"]) == 0
    return tmp_path


def _member_with_order(workdir: Path, paid_fen: int) -> uuid.UUID:
    """A member of brand-a with one paid order, through the domain API (as a sync would)."""

    async def go() -> uuid.UUID:
        db = Database.from_url(f"sqlite+aiosqlite:///{workdir / 'cli.db'}")
        try:
            from gateway.tenants import get_tenant

            t = await get_tenant(db, "brand-a")
            assert t is not None
            async with db.tenant_tx(t.id) as tx:
                m = await members.ingest(
                    tx,
                    channel="pos",
                    identifiers=[members.IdentifierInput("pos_card", "brand", "C-1")],
                    key=tenant_key(b"cli-test-secret", t.id),
                )
                await orders.record_order(
                    tx,
                    orders.OrderInput(
                        "tmall",
                        "T-1",
                        m.member_id,
                        "paid",
                        [],
                        paid_fen,
                        paid_fen,
                        placed_at=orders_now(),
                        paid_at=orders_now(),
                    ),
                )
            return m.member_id
        finally:
            await db.dispose()

    return asyncio.run(go())


def orders_now():  # type: ignore[no-untyped-def]
    from gateway.storage.types import utcnow

    return utcnow()


def test_apply_show_history_and_no_op(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["rules", "apply", "--tenant", "brand-a", str(CLASSIC), "--comment", "launch"]) == 0
    assert "saved version 1" in capsys.readouterr().out
    # The same file again is not a new version (safe in a deploy pipeline).
    assert main(["rules", "apply", "--tenant", "brand-a", str(CLASSIC)]) == 0
    assert "unchanged, active version 1" in capsys.readouterr().out
    assert main(["rules", "history", "--tenant", "brand-a"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1\t") and "cli:" in out and "launch" in out
    assert main(["rules", "show", "--tenant", "brand-a"]) == 0
    out = capsys.readouterr().out
    assert "rule config version 1" in out and "classic_tiers" in out
    # Brand B saw nothing of it.
    assert main(["rules", "history", "--tenant", "brand-b"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["rules", "list"]) == 0
    listed = capsys.readouterr().out
    assert "tiers\tclassic_tiers" in listed and "earning\tpoints_per_yuan" in listed


def test_invalid_config_prints_every_problem_and_saves_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = workdir / "bad.yaml"
    bad.write_text(
        "tiers:\n  - rule: classic_tiers\n  - rule: bakery_tiers\n"
        "earning:\n  - rule: no_such_rule\n"
        "loyalty: {}\n"
        "mall:\n  rewards:\n    - {code: MUG, title: Mug, kind: gift,"
        " options: {points: {points: -5}}}\n",
        encoding="utf-8",
    )
    capsys.readouterr()
    assert main(["rules", "apply", "--tenant", "brand-a", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "nothing was saved" in err
    assert "loyalty: unknown slot" in err
    assert "tiers: slot 'tiers' is exclusive" in err
    assert "earning[0].rule: no installed rule set 'no_such_rule'" in err
    assert "mall.rewards[0].options.points.points" in err
    (workdir / "broken.yaml").write_text("tiers: [unclosed\n", encoding="utf-8")
    assert main(["rules", "apply", "--tenant", "brand-a", str(workdir / "broken.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["rules", "history", "--tenant", "brand-a"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["rules", "apply", "--tenant", "brand-a", str(CLASSIC), "--dry-run"]) == 0
    assert "valid (dry run" in capsys.readouterr().out
    assert main(["rules", "history", "--tenant", "brand-a"]) == 0
    assert capsys.readouterr().out == ""


def test_dry_run_an_order_and_run_the_tier_job(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "apply", "--tenant", "brand-a", str(CLASSIC)]) == 0
    member = _member_with_order(workdir, 1_000_00)  # ¥1,000: still "member"
    capsys.readouterr()
    payload = json.dumps({"order_id": str(uuid.uuid4()), "channel": "tmall", "paid_fen": 1_500_00})
    args = ["rules", "dry-run", "--tenant", "brand-a", "--member", str(member)]
    assert main([*args, "--event", "order.paid", "--payload", payload]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is True
    assert report["tier"]["before"] == "member" and report["tier"]["after"] == "silver"
    assert {i["account"] for i in report["intents"] if "account" in i} == {"points", "growth"}
    # Nothing was written: the same dry run gives the same answer.
    assert main([*args, "--event", "order.paid", "--payload", payload]) == 0
    assert json.loads(capsys.readouterr().out)["tier"]["after"] == "silver"
    # The scheduled job: on 2 January the member's calendar-year period is reviewed (once).
    review = f"{orders_now().year + 1}-01-02T00:00:00+08:00"
    assert main(["tiers", "evaluate", "--now", review]) == 0
    out = capsys.readouterr().out
    assert "brand-a\tmembers reviewed 1" in out and "kept=1" in out
    assert main(["tiers", "evaluate", "--now", review]) == 0
    assert "members reviewed 0" in capsys.readouterr().out
    assert (
        main(
            [
                "tiers",
                "override",
                "--tenant",
                "brand-a",
                "--member",
                str(member),
                "--tier",
                "gold",
                "--until",
                "2099-06-01T00:00:00+08:00",
                "--reason",
                "VIP gesture",
            ]
        )
        == 0
    )
    assert "override\tmember → gold" in capsys.readouterr().out
    assert (
        main(
            [
                "tiers",
                "override",
                "--tenant",
                "brand-a",
                "--member",
                str(member),
                "--tier",
                "mythic",
                "--until",
                "2099-06-01T00:00:00+08:00",
                "--reason",
                "x",
            ]
        )
        == 2
    )
    assert "unknown tier 'mythic'" in capsys.readouterr().err


def test_fulfil_retry_delivers_a_gift_once_its_template_exists(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A join gift naming a template the brand had not created yet waits ``unfulfilled``; after
    the template exists ``rules fulfil-retry`` delivers it once (exit 0), then finds nothing."""
    cfg = workdir / "gifts.yaml"
    cfg.write_text(
        "benefits:\n  - rule: member_gifts\n    config: {join: ['coupon:HELLO']}\n", "utf-8"
    )
    assert main(["rules", "apply", "--tenant", "brand-a", str(cfg)]) == 0
    member = _member_with_order(workdir, 1000)  # a new member: member.joined → the gift
    capsys.readouterr()
    assert main(["rules", "fulfil-retry", "--tenant", "brand-a"]) == 1
    assert "\tcoupon:HELLO\tunfulfilled\tNOT_FOUND" in capsys.readouterr().out

    async def create_template() -> None:
        from gateway import coupons
        from gateway.tenants import get_tenant

        db = Database.from_url(f"sqlite+aiosqlite:///{workdir / 'cli.db'}")
        try:
            t = await get_tenant(db, "brand-a")
            assert t is not None
            async with db.tenant_tx(t.id) as tx:
                await coupons.create_template(
                    tx, code="HELLO", title="Hello", kind="amount_off", off_fen=500,
                    validity="relative", valid_days=30,
                )  # fmt: skip
        finally:
            await db.dispose()

    asyncio.run(create_template())
    assert main(["rules", "fulfil-retry", "--tenant", "brand-a"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.split("\t")[1:3] == ["coupon:HELLO", "fulfilled"] and len(line.split("\t")[3]) > 8
    assert main(["rules", "fulfil-retry", "--tenant", "brand-a"]) == 0
    assert capsys.readouterr().out == ""
    assert member is not None
