"""The rule author's guide (plugins/README.md) documents the whole rule-plugin contract, and its
examples work.

It fails when any of these is missing from the guide: a hook of ``RuleSpecs`` (as a ``### `…```
heading with its exact signature), a slot of ``SLOTS`` (as a ``### `slot` (exclusive|additive)``
heading whose section names the slot's method from ``SLOT_METHOD``), a field of a hookspecs
dataclass, a built-in event type, reward kind or ledger account, a ``TaskDef.kind`` value, a
top-level config key (``TOP_KEYS``, as a key of a full config example), an installed built-in rule
set (with its slot, in the built-ins table), a ``memberhub rules|tiers`` command, a
``plugins.testing`` helper. And: every ```` ```yaml full-config ```` block validates
(``plugins.testing.check_config``), the ```` ```yaml invalid-config ```` block fails with exactly
the problems the guide prints, the worked example's code is the example package's, and the
guide's example tests pass with that plugin installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.ledger.accounts import ACCOUNTS
from gateway.rules import hookspecs
from gateway.rules.config import TOP_KEYS
from gateway.rules.hookspecs import (
    EVENT_TYPES,
    EXCLUSIVE_SLOTS,
    REWARD_KINDS,
    SLOTS,
    RuleSpecs,
    TaskKind,
)
from gateway.rules.manager import SLOT_METHOD, default_registry, load_rules

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "plugins" / "README.md"
EXAMPLE = ROOT / "tests" / "example_rule_plugin" / "memberhub_weekend_points" / "__init__.py"
TEXT = README.read_text(encoding="utf-8")
_FENCE = re.compile(r"^```([\w-]*)(?:[ \t]+([\w-]+))?[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def _blocks(lang: str, tag: str | None = None) -> list[str]:
    return [
        body
        for m_lang, m_tag, body in _FENCE.findall(TEXT)
        if m_lang == lang and (tag is None or m_tag == tag)
    ]


def _sections(level: str) -> dict[str, str]:
    """``{heading text: section text}`` for the headings of ``level`` ("###"); a section runs to
    the next heading of the same or a higher level (code blocks are not headings)."""
    depth = len(level)
    out: dict[str, str] = {}
    current: str | None = None
    fence = False
    for line in TEXT.splitlines(keepends=True):
        if line.startswith("```"):
            fence = not fence
        heading = None if fence else re.match(r"^(#{1,6}) (.+)$", line)
        if heading and len(heading.group(1)) <= depth:
            current = heading.group(2).strip() if len(heading.group(1)) == depth else None
            if current is not None:
                out[current] = ""
            continue
        if current is not None:
            out[current] += line
    return out


# ---- hooks ------------------------------------------------------------------------------------


def _hooks() -> dict[str, str]:
    out = {}
    for name, fn in inspect.getmembers(RuleSpecs, inspect.isfunction):
        if not hasattr(fn, "memberhub_spec"):
            continue
        sig = inspect.signature(fn)
        params = ", ".join(p for p in sig.parameters if p != "self")
        out[name] = f"{name}({params}) -> {sig.return_annotation}"
    return out


def test_every_hook_is_a_hookspec_we_know() -> None:
    assert set(_hooks()) == {"register_rule_sets", "register_event_types", "register_reward_kinds"}


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    headings = set(re.findall(r"^### `([^`]+)`", TEXT, flags=re.M))
    missing = [sig for sig in _hooks().values() if sig not in headings]
    assert not missing, f"plugins/README.md lacks a '### `…`' heading for: {missing}"
    stale = [h for h in headings if h.startswith("register_") and h not in _hooks().values()]
    assert not stale, f"plugins/README.md documents hooks that do not exist: {stale}"


# ---- slots --------------------------------------------------------------------------------------


def test_every_slot_is_documented_with_its_kind_and_method() -> None:
    sections = _sections("###")
    assert set(SLOT_METHOD) == set(SLOTS)
    for slot in SLOTS:
        kind = "exclusive" if slot in EXCLUSIVE_SLOTS else "additive"
        heading = f"`{slot}` ({kind})"
        assert heading in sections, f"plugins/README.md lacks the heading '### {heading}'"
        method = SLOT_METHOD[slot]
        assert f"`{method}(" in sections[heading], f"section {heading} does not show {method}()"
        row = re.search(rf"^\| `{slot}` \| (\w+) \| `{method}\(", TEXT, flags=re.M)
        assert row and row.group(1) == kind, f"the slots table lacks '| `{slot}` | {kind} | …'"
    stale = [
        h
        for h in sections
        if re.fullmatch(r"`\w+` \((exclusive|additive)\)", h) and h.split("`")[1] not in SLOTS
    ]
    assert not stale, f"plugins/README.md documents slots that do not exist: {stale}"
    for attr in ("priority", "stacking"):
        assert f"**`{attr}`**" in sections["`benefits` (additive)"]
    assert "`stack`" in TEXT and "`exclusive`" in TEXT


# ---- types and vocabularies ------------------------------------------------------------------


def _dataclasses() -> list[type]:
    return [
        obj
        for _, obj in inspect.getmembers(hookspecs, inspect.isclass)
        if dataclasses.is_dataclass(obj) and obj.__module__ == hookspecs.__name__
    ]


def test_every_dataclass_and_field_is_documented() -> None:
    sections = _sections("####")
    classes = _dataclasses()
    assert {c.__name__ for c in classes} >= {"Intent", "Grant", "MemberSnapshot", "TaskDef"}
    for cls in classes:
        section = sections.get(f"`{cls.__name__}`")
        assert section is not None, f"plugins/README.md lacks '#### `{cls.__name__}`'"
        missing = [f.name for f in dataclasses.fields(cls) if f"| `{f.name}` |" not in section]
        assert not missing, f"{cls.__name__}: fields not in its table: {missing}"


def test_built_in_event_types_reward_kinds_accounts_and_task_kinds_are_documented() -> None:
    for et in EVENT_TYPES:
        assert f"| `{et.name}` |" in TEXT, f"event type {et.name} is not in the table"
    for rk in REWARD_KINDS:
        assert re.search(rf"^\| `{rk.name}` \| {rk.fulfilment} \|", TEXT, flags=re.M), rk
    for account in ACCOUNTS:
        assert f"`{account}`" in TEXT, f"account {account} is not documented"
    tasks = _sections("##")["Tasks"]
    for kind in typing.get_args(TaskKind):
        assert f"| `{kind}` |" in tasks, f"task kind {kind} is not in the Tasks table"


def test_every_top_level_config_key_is_in_the_full_example() -> None:
    keys = {
        key
        for block in _blocks("yaml", "full-config")
        for key in re.findall(r"^([a-z_]+):", block, flags=re.M)
    }
    missing = [k for k in TOP_KEYS if k not in keys]
    assert not missing, f"no full-config example sets {missing}"
    for key in TOP_KEYS:
        assert f"`{key}`" in _sections("##")["The config file"]


def _built_ins() -> list[Any]:
    return [rs for rs in load_rules() if type(rs).__module__.startswith("plugins.")]


def test_every_built_in_rule_set_is_in_the_table_with_its_slot() -> None:
    built_ins = _built_ins()
    assert "points_per_yuan" in {rs.name for rs in built_ins}
    table = _sections("##")["Built-in plugins"]
    for rs in built_ins:
        assert re.search(rf"^\| [^|]*\| `{rs.name}` \| `{rs.slot}` \|", table, flags=re.M), (
            f"the built-in plugins table lacks '| … | `{rs.name}` | `{rs.slot}` | …'"
        )
    documented = set(re.findall(r"^\| [^|]*\| `(\w+)` \| `\w+` \|", table, flags=re.M))
    stale = documented - {rs.name for rs in built_ins}
    assert not stale, f"the built-in table lists rule sets that are not installed: {stale}"
    from importlib.metadata import entry_points

    for ep in entry_points(group="memberhub.rules"):
        if ep.value.startswith("plugins."):
            assert re.search(rf"^\| `{ep.name}`", table, flags=re.M), f"plugin {ep.name}"
    registry = load_rules()
    for name in registry.event_types:
        assert f"`{name}`" in TEXT, f"event type {name} (installed) is not documented"
    for name in registry.reward_kinds:
        assert f"`{name}`" in TEXT, f"reward kind {name} (installed) is not documented"


def test_every_rules_and_tiers_command_is_documented() -> None:
    from gateway.cli import build_parser

    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    top = subcommands(build_parser())
    for group in ("rules", "tiers"):
        assert group in top, f"`memberhub {group}` is not a command"
        for name in subcommands(top[group]):
            assert f"memberhub {group} {name}" in TEXT, f"`memberhub {group} {name}`"


def test_every_plugins_testing_helper_is_documented() -> None:
    testing = importlib.import_module("plugins.testing")
    names = [
        n
        for n, obj in vars(testing).items()
        if not n.startswith("_")
        and getattr(obj, "__module__", None) == "plugins.testing"
        and (inspect.isfunction(obj) or inspect.isclass(obj))
    ]
    section = _sections("##")["Testing a plugin: `plugins.testing`"]
    for name in names:
        assert f"`{name}" in section, f"plugins.testing.{name} is not documented"
    for name, _ in inspect.getmembers(testing.RuleLab, inspect.isfunction):
        if not name.startswith("_"):
            assert f"`{name}(" in section, f"RuleLab.{name}() is not documented"
    assert "`RuleLab.open(" in section


# ---- the examples --------------------------------------------------------------------------------


def test_the_worked_example_is_the_example_package() -> None:
    [code] = _blocks("python", "example-plugin")
    assert code == EXAMPLE.read_text(encoding="utf-8"), (
        "the README's worked example differs from tests/example_rule_plugin's package: change both"
    )


def test_the_invalid_example_fails_with_the_printed_problems() -> None:
    from plugins.testing import check_config

    [doc] = _blocks("yaml", "invalid-config")
    [output] = [b for b in _blocks("text") if "bad.yaml" in b]
    lines = output.splitlines()
    problems = check_config(yaml.safe_load(doc))
    assert lines[1] == f"error: the config has {len(problems)} problem(s); nothing was saved"
    assert lines[2:] == [f"  {path}: {message}" for path, message in problems]


@pytest.fixture(scope="module")
def example_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The README's example plugin 'installed': its code and a dist-info with its entry point
    on ``sys.path`` for this module only."""
    [code] = _blocks("python", "example-plugin")
    site = tmp_path_factory.mktemp("readme-site")
    (site / "memberhub_weekend_points").mkdir()
    (site / "memberhub_weekend_points" / "__init__.py").write_text(code, encoding="utf-8")
    info = site / "memberhub_weekend_points-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: memberhub-weekend-points\nVersion: 1.0.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[memberhub.rules]\nweekend_points = memberhub_weekend_points\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        yield
    sys.modules.pop("memberhub_weekend_points", None)
    importlib.invalidate_caches()
    # A process-wide registry loaded meanwhile would keep the example for later tests.
    if default_registry.cache_info().currsize and "weekend_double" in default_registry():
        default_registry.cache_clear()


def test_every_full_config_example_validates(example_installed: None) -> None:
    from plugins.testing import check_config

    blocks = _blocks("yaml", "full-config")
    assert len(blocks) >= 2
    assert "weekend_double" in load_rules()
    for block in blocks:
        doc = yaml.safe_load(block)
        assert isinstance(doc, dict) and set(doc) <= set(TOP_KEYS)
        assert check_config(doc) == [], block


async def test_the_example_tests_in_the_guide_pass(example_installed: None) -> None:
    [code] = _blocks("python", "example-test")
    namespace: dict[str, Any] = {"__name__": "readme_example_test"}
    exec(compile(code, f"{README}:example-test", "exec"), namespace)
    tests = {n: f for n, f in namespace.items() if n.startswith("test_") and callable(f)}
    assert set(tests) == {"test_pure", "test_lab"}
    for fn in tests.values():
        result = fn()
        if inspect.isawaitable(result):
            await result
