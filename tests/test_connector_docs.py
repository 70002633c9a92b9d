"""The connector author's guide documents every hook with its exact signature, and every public
name of the contract module it tells authors to import."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import gateway.sync
from gateway.sync.hookspecs import ConnectorSpecs

README = Path(__file__).parents[1] / "connectors" / "README.md"


def _hooks() -> dict[str, str]:
    out = {}
    for name, fn in inspect.getmembers(ConnectorSpecs, inspect.isfunction):
        if not hasattr(fn, "memberhub_spec"):
            continue
        sig = inspect.signature(fn)
        params = ", ".join(p for p in sig.parameters if p != "self")
        out[name] = f"{name}({params}) -> {sig.return_annotation}"
    return out


def test_every_hook_is_a_hookspec_we_know() -> None:
    assert set(_hooks()) == {
        "register_connectors",
        "register_identifier_kinds",
        "register_webhooks",
    }


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    text = README.read_text()
    headings = set(re.findall(r"^### `([^`]+)`", text, flags=re.M))
    missing = [sig for sig in _hooks().values() if sig not in headings]
    assert not missing, f"connectors/README.md lacks a '### `…`' heading for: {missing}"
    stale = [h for h in headings if "(" in h and h.split("(")[0] not in _hooks()]
    assert not stale, f"connectors/README.md documents hooks that do not exist: {stale}"


def test_the_contract_names_the_guide_uses_exist() -> None:
    text = README.read_text()
    for name in re.findall(r"`gateway\.sync\.(\w+)`", text):
        assert hasattr(gateway.sync, name), f"README mentions gateway.sync.{name}"
    for name in ("Connector", "Stream", "Checkpoint", "Partition", "CheckResult", "hookimpl"):
        assert name in gateway.sync.__all__
