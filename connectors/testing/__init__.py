"""The connector conformance kit and test doubles (``connectors.testing``).

- :func:`connector_suite` builds a full pytest suite for a connector from a :class:`Harness`;
- :class:`FakePlatform` / :class:`Faults` are the base for fake platform servers with fault
  injection; :class:`World` is the synthetic, deterministic world of shoppers they render.

The pytest plugin (entry point ``pytest11``: ``memberhub_connectors``) adds the
``--connector-strictness`` option and the ``connector_world`` fixture. See
``connectors/README.md`` ("Proving a connector").
"""

from connectors.testing.fake import ALL_FAULTS, FakePlatform, Faults
from connectors.testing.harness import Harness
from connectors.testing.kit import (
    LENIENT,
    STRICT,
    STRICTNESS_ENV,
    connector_suite,
    default_world,
    plugin_registry,
    read_all,
    read_partition,
    record_schema,
    resolve_strictness,
)
from connectors.testing.world import CHANNELS, Person, World, WorldOrder

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
