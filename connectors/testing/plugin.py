"""pytest plugin of the connector conformance kit (entry point ``pytest11``:
``memberhub_connectors = "connectors.testing.plugin"``; without the entry point, load it with
``pytest -p connectors.testing.plugin``).

It adds:

- the option ``--connector-strictness={strict,lenient}``: the level of every
  :func:`~connectors.testing.connector_suite` that does not fix its own. ``strict`` (the default,
  also from ``$MEMBERHUB_CONNECTOR_STRICTNESS``) fails a test when the harness leaves out a piece
  the test needs or the connector lacks a stream for a declared capability; ``lenient`` skips
  such tests. Capabilities a harness does not declare are skipped at both levels;
- the fixture ``connector_world``: a fresh, deterministic :class:`~connectors.testing.World`, the
  same one the kit's tests start from, for a partner's own extra tests. Its channel is the
  ``harness.world_channel`` of the kit class the test belongs to, or the one named by the marker
  ``@pytest.mark.connector_world("example", people=…, orders=…, days=…, seed=…)``;
- the marker ``connector_world`` itself, and a report header line with the strictness level.

The kit does not need the plugin to run (it reads the option only when it exists).
"""

from __future__ import annotations

from typing import Any

import pytest

from connectors.testing.kit import STRICTNESS_ENV, STRICTNESS_LEVELS, default_world
from connectors.testing.world import World


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memberhub-connectors", "memberhub connector conformance kit")
    group.addoption(
        "--connector-strictness",
        dest="connector_strictness",
        choices=STRICTNESS_LEVELS,
        default=None,
        help=(
            "strict: a harness piece or stream missing for a declared capability fails the "
            "test; lenient: it skips. Default: $" + STRICTNESS_ENV + " or strict."
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "connector_world(channel, **options): the channel (and default_world() options: people, "
        "orders, days, seed, start) of the connector_world fixture",
    )


def pytest_report_header(config: pytest.Config) -> str:
    from connectors.testing.kit import resolve_strictness

    return f"memberhub connector kit: strictness={resolve_strictness(None, config)}"


@pytest.fixture
def connector_world(request: pytest.FixtureRequest) -> World:
    """A fresh World for the connector under test (see the module docstring)."""
    marker = request.node.get_closest_marker("connector_world")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    channel = options.pop("channel", None)
    if channel is None and marker is not None and marker.args:
        channel = marker.args[0]
    if channel is None and not options:
        factory = getattr(request.cls, "kit_world", None)
        if callable(factory):
            return factory()
    if channel is None:
        harness = getattr(request.cls, "kit_harness", None)
        channel = getattr(harness, "world_channel", None)
    if channel is None:
        raise pytest.UsageError(
            "connector_world needs a channel: use it in a connector_suite() class or mark the "
            "test @pytest.mark.connector_world('<world channel>')"
        )
    return default_world(str(channel), **options)
