"""The connector conformance kit and test doubles (``connectors.testing``).

- :func:`connector_suite` builds a full pytest suite for a connector from a :class:`Harness`;
- :class:`FakePlatform` / :class:`Faults` are the base for fake platform servers with fault
  injection; :class:`World` is the synthetic, deterministic world of shoppers they render.

The pytest plugin (entry point ``pytest11``: ``memberhub_connectors``) adds the
``--connector-strictness`` option and the ``connector_world`` fixture. See
``connectors/README.md`` ("Proving a connector").
"""

from typing import Any

from connectors.testing.fake import ALL_FAULTS, FakePlatform, Faults
from connectors.testing.harness import Harness
from connectors.testing.world import CHANNELS, Person, World, WorldOrder

# The kit needs pytest; the fakes and the World do not (the demo and the benchmark run them in
# an installation without the test extra), so the kit's names load on first use.
_KIT_NAMES = frozenset(
    {
        "LENIENT",
        "STRICT",
        "STRICTNESS_ENV",
        "connector_suite",
        "default_world",
        "plugin_registry",
        "read_all",
        "read_partition",
        "record_schema",
        "resolve_strictness",
    }
)


def __getattr__(name: str) -> Any:
    if name in _KIT_NAMES:
        from connectors.testing import kit

        return getattr(kit, name)
    raise AttributeError(f"module 'connectors.testing' has no attribute {name!r}")

__all__ = [
    "ALL_FAULTS",
    "CHANNELS",
    "LENIENT",
    "STRICT",
    "STRICTNESS_ENV",
    "FakePlatform",
    "Faults",
    "Harness",
    "Person",
    "World",
    "WorldOrder",
    "connector_suite",
    "default_world",
    "plugin_registry",
    "read_all",
    "read_partition",
    "record_schema",
    "resolve_strictness",
]
