"""The ``memberhub`` command: via ``main([...])`` in-process and via the installed console script.

Every test runs in its own directory with its own SQLite database (the CLI reads
``MEMBERHUB_DATABASE_URL`` / ``MEMBERHUB_SECRET_KEY`` like production does).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.cli import main
from schema import sdl


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEMBERHUB_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("MEMBERHUB_SECRET_KEY", "cli-test-secret")
    return tmp_path


def test_tenant_apikey_and_ledger_commands(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    assert main(["tenant", "create", "--name", "Brand A", "--slug", "brand-a"]) == 0
    assert (
        main(
            [
                "tenant",
                "create",
                "--name",
                "Brand B",
                "--slug",
                "brand-b",
                "--timezone",
                "Europe/Berlin",
                "--currency",
                "EUR",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["tenant", "list"]) == 0
    out = capsys.readouterr().out
    assert "brand-a" in out and "Europe/Berlin" in out
    assert (
        main(["apikey", "create", "--tenant", "brand-a", "--name", "pos-1", "--scopes", "pos,read"])
        == 0
    )
    key = capsys.readouterr().out.strip()
    assert re.fullmatch(r"mhk_[0-9a-f]{32}_\S{40,}", key)
    assert main(["ledger", "verify"]) == 0
    assert "brand-a\tok" in capsys.readouterr().out
    assert main(["ledger", "verify", "--tenant", "brand-b"]) == 0
    assert main(["ledger", "expire", "--now", "2030-01-01T00:00:00+08:00"]) == 0
    assert "lots expired 0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tenant", "create", "--name", "X", "--slug", "Bad Slug"], "slug"),
        (
            ["tenant", "create", "--name", "X", "--slug", "okay", "--timezone", "Mars/Base"],
            "timezone",
        ),
        (["apikey", "create", "--tenant", "nope", "--name", "k", "--scopes", "admin"], "no tenant"),
        (
            ["apikey", "create", "--tenant", "brand-a", "--name", "k", "--scopes", "root"],
            "unknown scope",
        ),
        (["ledger", "expire", "--now", "yesterday"], "ISO-8601"),
        (["ledger", "expire", "--now", "2030-01-01T00:00:00"], "timezone offset"),
        (["ledger", "verify", "--tenant", "ghost"], "no tenant"),
        (["demo", "--members", "0", "--no-serve"], "--members"),
    ],
)
def test_expected_errors_are_one_line_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["db", "upgrade"]) == 0
    main(["tenant", "create", "--name", "Brand A", "--slug", "brand-a"])
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tenant"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["--help"]) == 0


def test_ledger_verify_reports_violations(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import update

    from gateway import ledger
    from gateway.ids import uuid7
    from gateway.storage.db import Database
    from gateway.storage.tables import LedgerBalance
    from gateway.tenants import get_tenant

    assert main(["db", "upgrade"]) == 0
    assert main(["tenant", "create", "--name", "Brand A", "--slug", "brand-a"]) == 0

    async def corrupt() -> None:
        db = Database.from_url(os.environ["MEMBERHUB_DATABASE_URL"])
        t = await get_tenant(db, "brand-a")
        assert t is not None
        member = uuid7()
        async with db.tenant_tx(t.id) as tx:
            await ledger.credit(
                tx,
                member_id=member,
                account="points",
                amount=10,
                reason="x",
                source="test",
                idem_key="k1",
            )
            B = LedgerBalance.__table__  # type: ignore[attr-defined]
            await tx.conn.execute(update(B).where(B.c.tenant_id == t.id).values(available=99))
        await db.dispose()

    asyncio.run(corrupt())
    capsys.readouterr()
    assert main(["ledger", "verify"]) == 1
    captured = capsys.readouterr()
    assert "brand-a\t" in captured.out and "violation" in captured.err


def test_export_schema(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-schema"]) == 0
    assert capsys.readouterr().out == sdl()
    assert main(["export-schema", "--output", str(workdir / "s.graphql")]) == 0
    assert (workdir / "s.graphql").read_text(encoding="utf-8") == sdl()


def test_console_script_prints_the_sdl(tmp_path: Path) -> None:
    exe = shutil.which("memberhub") or str(Path(sys.executable).with_name("memberhub"))
    done = subprocess.run(
        [exe, "export-schema"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == sdl()
    bad = subprocess.run(
        [exe, "ledger", "expire", "--now", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
        env={**os.environ, "MEMBERHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"},
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_demo_seeds_merged_members_and_serves_them(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--no-serve", "--members", "200"]) == 0
    out = capsys.readouterr().out
    key = re.search(r"API key \(admin, shown once\): (\S+)", out)
    gid = re.search(r"Showcase member: (\S+)", out)
    assert key and gid and gid.group(1) != "None", out
    assert "http://127.0.0.1:8000/graphql" in out and "Authorization" in out

    from gateway.app import create_app
    from gateway.settings import Settings

    async def query() -> dict:
        app = create_app(Settings.from_env())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            resp = await client.post(
                "/graphql",
                headers={"Authorization": f"Bearer {key.group(1)}"},
                json={
                    "query": """query($id: ID!) { member(id: $id) { id identities { channel }
                  balances { account available } latestOrders { externalId }
                  merges { status } } members(first: 100) { edges { node { id } } } }""",
                    "variables": {"id": gid.group(1)},
                },
            )
        await app.state.hub.close()
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    body = asyncio.run(query())
    member = body["data"]["member"]
    assert member["id"] == gid.group(1)
    assert len({i["channel"] for i in member["identities"]}) >= 2
    assert member["merges"] and member["merges"][0]["status"] == "MERGED"
    assert len(body["data"]["members"]["edges"]) == 100
    # a second run reuses the seeded brand and prints a fresh key
    assert main(["demo", "--no-serve", "--members", "200"]) == 0
    again = capsys.readouterr().out
    assert "already seeded" in again and key.group(1) not in again
