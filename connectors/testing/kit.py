"""The connector conformance kit: one call builds the full pytest suite for a connector.

A partner's package proves its connector with one test file::

    # tests/test_conformance.py
    from connectors.testing import connector_suite
    from memberhub_example_shop import ExampleShop
    from memberhub_example_shop.testing import ExampleShopHarness

    TestExampleShop = connector_suite(
        ExampleShopHarness(ExampleShop, "example", capabilities=frozenset({"orders", "refunds"}))
    )

Every test starts the harness's fake platform on 127.0.0.1 for a small, fresh, deterministic
:class:`~connectors.testing.world.World`, builds the connector directly (no database) with a
fast retry policy and a clock fixed at the world's end, and reads its streams the way the runner
does. The kit owns time: the connector's clock and the fake's are both the World's end (moved on
by the tests that let time pass), so signed timestamps and token lifetimes agree. The truth the
records are compared with is the World itself. One test
(``test_one_person_two_channels_one_member``) runs the real :class:`~gateway.sync.runner.SyncRunner`
on a throwaway SQLite database.

**Strictness.** ``"strict"`` (the default) fails a test when the harness leaves out a piece the
test needs (``make_fake`` / ``config`` / ``link_identifier`` raising :class:`NotImplementedError`)
or when the connector has no stream for a capability the harness declares; ``"lenient"`` skips
those tests instead. The level comes from ``connector_suite(strictness=…)``, else the pytest option
``--connector-strictness`` (from the kit's pytest plugin), else the environment variable
``MEMBERHUB_CONNECTOR_STRICTNESS``, else strict. A capability the harness does **not** declare
(WeChat has no order pull) is not applicable: its tests skip at every level, saying why.

Capabilities the kit knows: ``members``, ``orders``, ``refunds``, ``points`` (a stream of that
record type must exist), ``rate_limit`` (the fake answers the platform's rate-limit error: fault
``429``) and ``token_refresh`` (the fake can expire the access token).

Async tests are marked ``@pytest.mark.asyncio`` explicitly, so the suite runs under
pytest-asyncio's strict mode as well as ``asyncio_mode = "auto"``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.metadata
import importlib.resources
import json
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, NoReturn

import jsonschema
import pytest

from connectors.testing.fake import ALL_FAULTS, FakePlatform, Faults
from connectors.testing.harness import Harness
from connectors.testing.world import Person, World, WorldOrder
from gateway.errors import InvalidInput
from gateway.identifiers import KINDS, normalise, register_kind
from gateway.identity.model import IdentifierInput, ProfileInput
from gateway.sync.contract import (
    Checkpoint,
    CheckResult,
    Connector,
    ConnectorContext,
    Partition,
    Stream,
    secret_fields,
)
from gateway.sync.errors import AuthFailed
from gateway.sync.hookspecs import ENTRY_POINT_GROUP
from gateway.sync.http import PlatformHttp, RateLimiter, RetryPolicy
from gateway.sync.records import (
    RECORD_TYPES,
    MemberRecord,
    OrderRecord,
    PointsEventRecord,
    Record,
    RefundRecord,
    record_key,
)
from gateway.sync.registry import ConnectorRegistry, plugin_manager

STRICT = "strict"
LENIENT = "lenient"
STRICTNESS_LEVELS = (STRICT, LENIENT)
STRICTNESS_ENV = "MEMBERHUB_CONNECTOR_STRICTNESS"

# The kit's default World: small enough that every test runs in well under a second or two.
KIT_START = datetime(2026, 11, 1, tzinfo=UTC)
KIT_DAYS = 8
KIT_PEOPLE = 30
KIT_ORDERS = 150
KIT_SEED = 7

# How the kit drives a connector: retries fast, time out fast (the fake's "timeout" fault sleeps
# longer than the client waits, so it really times out).
POLICY = RetryPolicy(attempts=10, backoff=0.01, max_backoff=0.2, max_wait=5.0, timeout=0.3)
CHECK_POLICY = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, max_wait=1.0, timeout=0.3)
TIMEOUT_DELAY = 0.8
READ_DEADLINE = 60.0
FAULT_RATE = 0.25
RESUME_CHECKPOINTS = 8
PAGING_SECONDS = 30.0
CLEAN_READ_MAX_CALLS = 5000
KIT_KEY = b"memberhub-connector-kit-hash-key"
SECRET_REFERENCE = "env:MEMBERHUB_CONNECTOR_KIT_SECRET_REFERENCE"

CAPABILITY_RECORDS: Mapping[str, type[Record]] = {
    "members": MemberRecord,
    "orders": OrderRecord,
    "refunds": RefundRecord,
    "points": PointsEventRecord,
}
PAID = ("paid", "completed")
STREAM_ORDER = (MemberRecord, PointsEventRecord, OrderRecord, RefundRecord)

# Config properties that hold credentials whatever the platform calls them.
SECRET_NAME = re.compile(r"secret|passw|token|api_?key|private_?key|aes_?key|signing_?key", re.I)
TENANT_KEY = re.compile(r"tenant", re.I)
# A mainland mobile number standing on its own (not inside a longer token of letters/digits).
PHONE_LIKE = re.compile(r"(?<![0-9A-Za-z])(?:\+?86[ -]?)?1[3-9]\d{9}(?![0-9A-Za-z])")
# A mainland resident ID number: region, birth date, sequence, check digit (verified in code).
ID_CARD_LIKE = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:19|20)\d{9}[\dXx](?![0-9A-Za-z])")
OFFSET_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)$"
)


# -- public helpers ---------------------------------------------------------------------------


def default_world(
    channel: str,
    *,
    seed: int = KIT_SEED,
    people: int = KIT_PEOPLE,
    orders: int = KIT_ORDERS,
    days: int = KIT_DAYS,
    start: datetime = KIT_START,
) -> World:
    """The kit's World for ``channel``: shoppers on ``channel`` and in stores (``pos``)."""
    channels = (channel,) if channel == "pos" else (channel, "pos")
    return World.generate(
        seed=seed, people=people, orders=orders, channels=channels, start=start, days=days
    )


def resolve_strictness(explicit: str | None = None, config: pytest.Config | None = None) -> str:
    """``explicit``, else ``--connector-strictness``, else ``$MEMBERHUB_CONNECTOR_STRICTNESS``,
    else ``"strict"``."""
    value = explicit
    if value is None and config is not None:
        value = config.getoption("connector_strictness", None)
    if value is None:
        value = os.environ.get(STRICTNESS_ENV) or STRICT
    value = value.strip().lower()
    if value not in STRICTNESS_LEVELS:
        raise pytest.UsageError(
            f"connector strictness must be one of {', '.join(STRICTNESS_LEVELS)}, got {value!r}"
        )
    return value


@cache
def record_schema(record_type: str, version: int = 1) -> dict[str, Any]:
    """The JSON Schema of a canonical record (``schema/records/<type>.v<N>.json``)."""
    resource = importlib.resources.files("schema") / "records" / f"{record_type}.v{version}.json"
    return json.loads(resource.read_text(encoding="utf-8"))


@cache
def record_validator(record_type: str, version: int = 1) -> jsonschema.Draft202012Validator:
    schema = record_schema(record_type, version)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def plugin_registry(connector: type[Connector]) -> ConnectorRegistry:
    """A registry holding ``connector`` as its plugin module registers it.

    The plugin module is the ``memberhub.connectors`` entry point naming the connector's module
    (or a package above it) when the package is installed, else the nearest enclosing module that
    implements ``register_connectors``. Its hooks run exactly as :func:`load_connectors` runs
    them, so identifier kinds the plugin registers are known before records are applied.
    """
    module = _plugin_module(connector)
    if module is None:
        for kind in connector.identifier_kinds:
            register_kind(kind)
        return ConnectorRegistry([connector])
    pm = plugin_manager()
    pm.register(module)
    for batch in pm.hook.register_identifier_kinds():
        for kind in batch or []:
            register_kind(kind)
    classes = [cls for batch in pm.hook.register_connectors() for cls in batch or []]
    hooks = [h for batch in pm.hook.register_webhooks() for h in batch or []]
    if connector not in classes:
        # A variant of a packaged connector (same name): the variant is what is under test.
        classes = [c for c in classes if getattr(c, "name", None) != connector.name]
        classes.append(connector)
    return ConnectorRegistry(classes, hooks)


def _plugin_module(connector: type[Connector]) -> Any:
    """The plugin module of ``connector``, or of the packaged connector it extends."""
    candidates: list[str] = []
    for cls in connector.__mro__:
        if not (isinstance(cls, type) and issubclass(cls, Connector)) or cls is Connector:
            continue
        names = cls.__module__.split(".")
        for i in range(len(names), 0, -1):
            name = ".".join(names[:i])
            if name not in candidates:
                candidates.append(name)
    try:
        points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # pragma: no cover - broken metadata must not hide the connector
        points = ()
    by_module = {ep.value.split(":")[0]: ep for ep in points}
    for name in candidates:
        if name in by_module:
            return by_module[name].load()
    for name in candidates:
        module = importlib.import_module(name)
        if callable(getattr(module, "register_connectors", None)):
            return module
    return None


@dataclass
class ScheduledFaults(Faults):
    """Faults on a fixed schedule instead of by chance: every ``period``-th API call fails, with
    the next of ``kinds`` in turn, so that any read of ``len(kinds) * period`` calls meets every
    kind (``rate`` is ``1 / period``)."""

    period: int = 4
    _calls: int = field(default=0, repr=False)

    def pick(self) -> str | None:
        self._calls += 1
        if not self.kinds or self._calls % self.period:
            return None
        kind = list(self.kinds)[(self._calls // self.period - 1) % len(self.kinds)]
        self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind


def stream_types(stream: Stream) -> tuple[type[Record], ...]:
    """The record types a stream yields: its ``record_type``, plus the others a *mixed* stream
    lists in ``record_types`` (a POS receipt feed interleaves sales and returns)."""
    extra = tuple(getattr(stream, "record_types", None) or ())
    return (stream.record_type, *(t for t in extra if t is not stream.record_type))


def rkey(record: Record) -> str:
    """A record's identity within a stream: its type and primary key."""
    return f"{record.record_type}:{record_key(record)}"


# -- reading ----------------------------------------------------------------------------------


@dataclass
class StreamRead:
    """What one stream yielded for one partition, in order."""

    stream: Stream
    partition: Partition
    items: list[Record | Checkpoint]

    @property
    def records(self) -> list[Record]:
        return [i for i in self.items if not isinstance(i, Checkpoint)]

    @property
    def checkpoints(self) -> list[tuple[int, Checkpoint]]:
        return [(n, i) for n, i in enumerate(self.items) if isinstance(i, Checkpoint)]

    def last_state(self) -> Mapping[str, Any] | None:
        marks = self.checkpoints
        return marks[-1][1].state if marks else None


async def read_partition(
    stream: Stream,
    partition: Partition,
    state: Mapping[str, Any] | None,
    *,
    deadline: float = READ_DEADLINE,
) -> StreamRead:
    """Read one stream partition to the end (within ``deadline`` seconds), checking item types."""
    items: list[Record | Checkpoint] = []
    try:
        async with asyncio.timeout(deadline):
            async for item in stream.read(partition, state):
                if not isinstance(item, Checkpoint) and type(item) not in stream_types(stream):
                    declared = ", ".join(t.__name__ for t in stream_types(stream))
                    pytest.fail(
                        f"stream {stream.name!r} yielded {type(item).__name__}; it declares "
                        f"{declared} (yield canonical records and Checkpoints)"
                    )
                items.append(item)
    except TimeoutError:
        pytest.fail(
            f"stream {stream.name!r} partition {partition.name!r} did not finish within "
            f"{deadline:.0f}s ({len(items)} items so far)"
        )
    return StreamRead(stream, partition, items)


async def read_all(
    connector: Connector,
    *,
    until: datetime,
    since: datetime,
    states: Mapping[tuple[str, str], Mapping[str, Any] | None] | None = None,
    deadline: float = READ_DEADLINE,
) -> dict[tuple[str, str], StreamRead]:
    """Every stream and partition, in the connector's order: ``{(stream, partition): read}``."""
    out: dict[tuple[str, str], StreamRead] = {}
    for stream in connector.streams():
        for name in stream.partitions():
            state = (states or {}).get((stream.name, name))
            out[(stream.name, name)] = await read_partition(
                stream, Partition(name, until=until, since=since), state, deadline=deadline
            )
    return out


def records_of(
    reads: Mapping[tuple[str, str], StreamRead], record_type: type[Record] | None = None
) -> list[Record]:
    return [
        r
        for read in reads.values()
        for r in read.records
        if record_type is None or type(r) is record_type
    ]


def by_key(reads: Mapping[tuple[str, str], StreamRead]) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(stream, "<type>:<primary key>"): to_json()}`` (the last copy wins, as in the runner)."""
    return {
        (read.stream.name, rkey(r)): r.to_json() for read in reads.values() for r in read.records
    }


# -- the per-test driver ----------------------------------------------------------------------


class _Recorder:
    """``context.save_secrets`` for the kit: remembers what the connector persisted."""

    def __init__(self) -> None:
        self.saved: list[dict[str, str]] = []

    async def __call__(self, updates: Mapping[str, str]) -> None:
        self.saved.append(dict(updates))

    def values(self) -> set[Any]:
        return {v for s in self.saved for v in s.values()}


@dataclass
class Session:
    fake: FakePlatform
    connector: Connector
    config: dict[str, Any]
    secrets: _Recorder
    world: World

    @property
    def http(self) -> PlatformHttp:
        return self.connector.context.http


@dataclass
class Kit:
    """What one kit test uses: the harness, the strictness level and fresh Worlds."""

    harness: Harness
    strictness: str
    world_factory: Callable[[], World]
    now: datetime | None = None
    _registry: ConnectorRegistry | None = field(default=None, repr=False)

    @property
    def cls(self) -> type[Connector]:
        return self.harness.connector

    @property
    def channel(self) -> str:
        return self.harness.world_channel

    @property
    def label(self) -> str:
        return f"{type(self.harness).__name__} ({getattr(self.cls, 'name', '?')})"

    # -- strictness -----------------------------------------------------------------------

    def missing(self, what: str) -> NoReturn:
        if self.strictness == STRICT:
            pytest.fail(
                f"{self.label}: {what}. The strict level requires it "
                f"(--connector-strictness=lenient skips this test instead)."
            )
        pytest.skip(f"{self.label}: {what} (lenient: skipped)")

    def need(self, capability: str) -> None:
        if capability not in self.harness.capabilities:
            pytest.skip(
                f"not applicable: {self.label} does not declare the {capability!r} capability"
            )

    def call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except NotImplementedError:
            self.missing(f"the harness does not implement {what}")

    def streams_for(self, connector: Connector, capability: str) -> list[Stream]:
        """The connector's streams for a declared capability (missing: fail or skip)."""
        self.need(capability)
        wanted = CAPABILITY_RECORDS[capability]
        found = [s for s in connector.streams() if wanted in stream_types(s)]
        if not found:
            self.missing(
                f"the harness declares {capability!r} but the connector has no "
                f"{wanted.__name__} stream"
            )
        return found

    def world(self) -> World:
        world = self.world_factory()
        if not isinstance(world, World):
            pytest.fail(f"the kit's world factory returned {type(world).__name__}, not a World")
        return world

    def registry(self) -> ConnectorRegistry:
        if self._registry is None:
            self._registry = plugin_registry(self.cls)
        return self._registry

    def make_fake(self, world: World, faults: Faults | None = None) -> FakePlatform:
        faults = faults if faults is not None else Faults(timeout_delay=TIMEOUT_DELAY)
        fake = self.call("make_fake()", self.harness.make_fake, world, faults)
        if not isinstance(fake, FakePlatform):
            pytest.fail(f"harness.make_fake() returned {type(fake).__name__}, not a FakePlatform")
        # The kit owns time: the platform's clock is the connector's (the World's end, moved on
        # by tests that let time pass), so signed timestamps and token lifetimes agree.
        self.now = world.end
        fake.clock = self.clock
        return fake

    def clock(self) -> datetime:
        if self.now is None:
            raise RuntimeError("the kit's clock is read before a world was made")
        return self.now

    def build(
        self,
        config: Mapping[str, Any],
        world: World,
        *,
        policy: RetryPolicy = POLICY,
        channel: str | None = None,
    ) -> tuple[Connector, _Recorder]:
        self.registry()
        recorder = _Recorder()
        if self.now is None:
            self.now = world.end
        http = PlatformHttp(RateLimiter(1000, 1000), policy)
        context = ConnectorContext(
            channel=channel or _channel_name(self.channel),
            http=http,
            save_secrets=recorder,
            clock=self.clock,
        )
        return self.cls(dict(config), context), recorder

    @asynccontextmanager
    async def session(
        self,
        world: World,
        *,
        faults: Faults | None = None,
        bad_credentials: bool = False,
        policy: RetryPolicy = POLICY,
    ) -> AsyncIterator[Session]:
        """The fake running for ``world`` and a connector configured against it (with the
        harness's working configuration, or its ``bad_credentials()``)."""
        fake = self.make_fake(world, faults)
        async with fake:
            cfg = dict(
                self.call("bad_credentials()", self.harness.bad_credentials, fake)
                if bad_credentials
                else self.call("config()", self.harness.config, fake)
            )
            connector, recorder = self.build(cfg, world, policy=policy)
            try:
                yield Session(fake, connector, cfg, recorder, world)
            finally:
                await connector.close()


def _channel_name(world_channel: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.:-]", "-", f"kit-{world_channel}")
    return name[:32]


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _repoint(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, Mapping):
        return {k: _repoint(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_repoint(v, old, new) for v in value]
    return value


def _identifiers(record: Record) -> tuple[IdentifierInput, ...]:
    if isinstance(record, OrderRecord):
        return record.buyer
    if isinstance(record, MemberRecord | PointsEventRecord):
        return record.identifiers
    return ()


def _walk(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, leaf or container) in a JSON document, keys included as ``("key", name)``."""
    yield path, value
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield (*path, ("key", k)), k
            yield from _walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, (*path, i))


def _id_card_checksum_ok(number: str) -> bool:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(number[:17], weights, strict=True))
    return "10X98765432"[total % 11] == number[17].upper()


def _looks_like_id_card(text: str) -> bool:
    for m in ID_CARD_LIKE.finditer(text):
        s = m.group(0)
        try:
            date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
        except ValueError:
            continue
        if _id_card_checksum_ok(s):
            return True
    return False


def _phone_forms(phones: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for p in phones:
        digits = re.sub(r"\D", "", p)
        if len(digits) >= 11:
            national = digits[-11:]
            out |= {national, f"86{national}", f"+86{national}"}
    return out


def _pii_violations(doc: Mapping[str, Any], world_phones: set[str]) -> list[str]:
    """Where a record's JSON carries a tenant key, or a phone / ID-card number outside the value
    of an identifier of a PII kind (phone, email, receiver_phone …)."""
    allowed: set[tuple[Any, ...]] = set()
    for field_name in ("identifiers", "buyer"):
        for i, ident in enumerate(doc.get(field_name) or []):
            kind = KINDS.get(str(ident.get("kind")))
            if kind is not None and kind.pii:
                allowed.add((field_name, i, "value"))
    problems: list[str] = []
    for path, value in _walk(doc):
        where = "/".join(str(p[1] if isinstance(p, tuple) else p) for p in path) or "/"
        if path and isinstance(path[-1], tuple):
            if isinstance(value, str) and TENANT_KEY.search(value):
                problems.append(f"key {value!r} at {where}: records never carry a tenant")
            continue
        if not isinstance(value, str):
            continue
        if _looks_like_id_card(value):
            problems.append(f"an ID-card number at {where}")
        if path in allowed:
            continue
        if PHONE_LIKE.search(value) or any(p in value for p in world_phones):
            problems.append(
                f"a phone number at {where}: phones travel only as identifiers of a PII kind "
                "(phone / receiver_phone), which the gateway hashes"
            )
    return problems


def _world_order_index(world: World, channel: str) -> dict[str, WorldOrder]:
    return {o.external_id: o for o in world.orders.get(channel, [])}


def _cursor(state: Mapping[str, Any] | None) -> datetime | None:
    if not state or not state.get("cursor"):
        return None
    value = datetime.fromisoformat(str(state["cursor"]))
    if value.tzinfo is None:
        pytest.fail(f"a checkpoint cursor must be timezone-aware, got {state['cursor']!r}")
    return value


def _spread(indices: Sequence[int], n: int) -> list[int]:
    """At most ``n`` of ``indices``, evenly spaced, first and last included."""
    if len(indices) <= n:
        return list(indices)
    step = (len(indices) - 1) / (n - 1)
    return sorted({indices[round(i * step)] for i in range(n)})


def _fmt(problems: Sequence[str], limit: int = 12) -> str:
    more = f"\n  … and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n  " + "\n  ".join(problems[:limit]) + more


# -- the suite --------------------------------------------------------------------------------


def connector_suite(
    harness: Harness,
    *,
    strictness: str | None = None,
    world: Callable[[], World] | None = None,
) -> type:
    """A pytest test class proving ``harness.connector`` against ``harness``'s fake platform.

    Assign it to a ``Test*`` name in a test module. ``strictness`` overrides the command line /
    environment; ``world`` makes the World each test starts from (default: :func:`default_world`
    for ``harness.world_channel``; it must return a fresh World per call — tests mutate it).
    """
    if not isinstance(harness, Harness):
        raise TypeError(f"connector_suite() needs a connectors.testing.Harness, got {harness!r}")
    if not (isinstance(harness.connector, type) and issubclass(harness.connector, Connector)):
        raise TypeError(f"{harness!r}.connector is not a Connector subclass")
    if strictness is not None and strictness.strip().lower() not in STRICTNESS_LEVELS:
        raise ValueError(f"strictness must be one of {STRICTNESS_LEVELS}, got {strictness!r}")
    factory = world or (lambda: default_world(harness.world_channel))

    class ConnectorSuite:
        """Conformance tests generated by :func:`connectors.testing.connector_suite`."""

        __test__ = True
        kit_harness = harness
        kit_world = staticmethod(factory)

        def kit(self, request: pytest.FixtureRequest) -> Kit:
            return Kit(harness, resolve_strictness(strictness, request.config), factory)

        # 1. spec ---------------------------------------------------------------------------

        @pytest.mark.asyncio
        async def test_config_schema_valid(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            schema = kit.cls.config_schema
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                pytest.fail(f"config_schema is not valid JSON Schema 2020-12: {exc.message}")
            assert schema.get("type") == "object", "config_schema must describe an object"
            props = schema.get("properties") or {}
            secrets = secret_fields(schema)
            assert secrets, (
                'no config property is marked "writeOnly": true — credentials would be stored '
                "and shown in clear"
            )
            unmarked = sorted(k for k in props if SECRET_NAME.search(k) and k not in secrets)
            assert not unmarked, f"credential-like properties not marked writeOnly: {unmarked}"
            validator = jsonschema.Draft202012Validator(
                schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
            )
            fake = kit.make_fake(kit.world())
            async with fake:
                config = dict(kit.call("config()", harness.config, fake))
            errors = [
                f"{'/'.join(map(str, e.path)) or 'config'}: fails {e.validator!r}"
                for e in validator.iter_errors(config)
            ]
            assert not errors, f"harness.config() does not satisfy config_schema:{_fmt(errors)}"
            refs = {**config, **{k: SECRET_REFERENCE for k in secrets if k in config}}
            errors = [
                f"{'/'.join(map(str, e.path))}: fails {e.validator!r}"
                for e in validator.iter_errors(refs)
            ]
            assert not errors, (
                'secrets given as references ("env:NAME", resolved when the connector is built) '
                f"must validate: constrain secret values in code, not in the schema:{_fmt(errors)}"
            )
            assert not validator.is_valid({}), "an empty configuration must not validate"
            for name in schema.get("required") or ():
                if name in config:
                    partial = {k: v for k, v in config.items() if k != name}
                    assert not validator.is_valid(partial), (
                        f"a configuration without the required {name!r} still validates"
                    )

        # 2. check --------------------------------------------------------------------------

        @pytest.mark.asyncio
        async def test_check_ok(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            async with kit.session(kit.world(), policy=CHECK_POLICY) as s:
                result = await _check(s.connector)
            assert result.ok, f"check() against the fake failed: {result.message}"

        @pytest.mark.asyncio
        async def test_check_fails_cleanly(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            world = kit.world()
            async with kit.session(world, bad_credentials=True, policy=CHECK_POLICY) as s:
                result = await _check(s.connector)
                secrets = {
                    str(v)
                    for v in {**harness.secret_values(s.config)}.values()
                    if isinstance(v, str) and len(v) >= 4
                }
            assert not result.ok, "check() with bad credentials says ok"
            assert isinstance(result.message, str) and result.message.strip(), (
                "check() with bad credentials must say why"
            )
            leaked = [v for v in secrets if v in result.message]
            assert not leaked, "check()'s message echoes a secret"

            fake = kit.make_fake(world)
            async with fake:
                good = dict(kit.call("config()", harness.config, fake))
                base = fake.base_url
            dead = f"http://127.0.0.1:{_closed_port()}"
            config = _repoint(good, base, dead)
            if config == good:
                pytest.fail("harness.config() does not point the connector at fake.base_url")
            connector, _ = kit.build(config, world, policy=CHECK_POLICY)
            try:
                result = await _check(connector)
            finally:
                await connector.close()
            assert not result.ok, "check() against a closed port says ok"
            assert result.message.strip(), "check() against a closed port must say why"

        # 3. discovery ----------------------------------------------------------------------

        @pytest.mark.asyncio
        async def test_discovery_stable(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            registry = kit.registry()
            assert registry.get(kit.cls.name) is kit.cls
            ConnectorRegistry([kit.cls])
            async with kit.session(kit.world()) as s:
                first, second = s.connector.streams(), s.connector.streams()

                def shape(streams: Sequence[Stream]) -> list[tuple[Any, ...]]:
                    return [
                        (st.name, stream_types(st), st.primary_key, st.replication_key)
                        for st in streams
                    ]

                assert shape(first) == shape(second), "streams() is not stable between calls"
                assert first, "the connector has no streams"
                names = [st.name for st in first]
                assert len(set(names)) == len(names), f"stream names are not unique: {names}"
                canonical = set(RECORD_TYPES.values())
                for st in first:
                    assert isinstance(st, Stream), f"{st!r} is not a gateway.sync.Stream"
                    assert isinstance(st.name, str) and re.fullmatch(
                        r"[a-z][a-z0-9_]{0,63}", st.name
                    )
                    for t in stream_types(st):
                        assert t in canonical, (
                            f"stream {st.name!r} yields {t!r}, not a canonical record"
                        )
                        assert st.replication_key is None or hasattr(t, st.replication_key), (
                            f"stream {st.name!r}: replication key {st.replication_key!r} is no "
                            f"field of {t.__name__}"
                        )
                    assert st.primary_key == st.record_type.primary_key
                    parts = list(st.partitions())
                    assert parts and len(set(parts)) == len(parts), (
                        f"stream {st.name!r}: partitions() must name unique partitions"
                    )
                    assert list(st.partitions()) == parts, "partitions() is not stable"
                ranks = [STREAM_ORDER.index(st.record_type) for st in first]
                assert ranks == sorted(ranks), (
                    "streams must run members before orders before refunds (a refund needs its "
                    f"order): {names}"
                )
                for capability in sorted(set(harness.capabilities) & set(CAPABILITY_RECORDS)):
                    kit.streams_for(s.connector, capability)

        # 4-7. records ----------------------------------------------------------------------

        @pytest.mark.asyncio
        async def test_records_match_schema(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            world = kit.world()
            async with kit.session(world) as s:
                reads = await read_all(s.connector, until=world.end, since=world.start)
                for capability in sorted(set(harness.capabilities) & set(CAPABILITY_RECORDS)):
                    kit.streams_for(s.connector, capability)
            problems: list[str] = []
            for read in reads.values():
                for rec in read.records:
                    validator = record_validator(rec.record_type)
                    doc = rec.to_json()
                    for e in validator.iter_errors(doc):
                        where = "/".join(map(str, e.path)) or "record"
                        problems.append(
                            f"{read.stream.name} {record_key(rec)}: {where}: {e.message}"
                        )
                    for ident in _identifiers(rec):
                        try:
                            normalise(ident.kind, ident.scope, ident.value, key=KIT_KEY)
                        except InvalidInput as exc:
                            problems.append(
                                f"{read.stream.name} {record_key(rec)}: identifier "
                                f"{ident.kind!r} (scope {ident.scope!r}) would be refused: {exc}"
                            )
            assert not problems, f"records that fail their schema:{_fmt(problems)}"
            _expect_records(kit, world, reads)

        @pytest.mark.asyncio
        async def test_primary_keys_unique(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            world = kit.world()
            async with kit.session(world) as s:
                reads = await read_all(s.connector, until=world.end, since=world.start)
            _expect_records(kit, world, reads)
            problems: list[str] = []
            seen: dict[tuple[str, str], dict[str, Any]] = {}
            for read in reads.values():
                for rec in read.records:
                    key = (read.stream.name, rkey(rec))
                    doc = rec.to_json()
                    if key in seen and seen[key] != doc:
                        problems.append(f"{key[0]}: two different records with key {key[1]!r}")
                    seen.setdefault(key, doc)
            assert not problems, f"primary keys are not unique in a clean read:{_fmt(problems)}"

        @pytest.mark.asyncio
        async def test_no_tenant_ids_or_raw_pii(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            world = kit.world()
            async with kit.session(world) as s:
                reads = await read_all(s.connector, until=world.end, since=world.start)
            _expect_records(kit, world, reads)
            kit.registry()
            phones = _phone_forms(
                [p.phone for p in world.people] + [o.receiver_phone for o in world.all_orders()]
            )
            problems = [
                f"{read.stream.name} {record_key(rec)}: {problem}"
                for read in reads.values()
                for rec in read.records
                for problem in _pii_violations(rec.to_json(), phones)
            ]
            assert not problems, f"records leak tenant ids or raw PII:{_fmt(problems)}"

        @pytest.mark.asyncio
        async def test_datetimes_aware(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            world = kit.world()
            async with kit.session(world) as s:
                reads = await read_all(s.connector, until=world.end, since=world.start)
            _expect_records(kit, world, reads)
            truth = _world_order_index(world, harness.world_channel)
            problems: list[str] = []
            for read in reads.values():
                for rec in read.records:
                    name = f"{read.stream.name} {record_key(rec)}"
                    for f in dataclasses.fields(rec):
                        value = getattr(rec, f.name)
                        values = [value]
                        if isinstance(value, ProfileInput):
                            values = [value.observed_at]
                        for v in values:
                            if isinstance(v, datetime) and v.utcoffset() is None:
                                problems.append(f"{name}: {f.name} is naive")
                    for path, value in _walk(rec.to_json()):
                        key = path[-1] if path else None
                        if (
                            isinstance(key, str)
                            and key.endswith("_at")
                            and value is not None
                            and not OFFSET_DATETIME.match(str(value))
                        ):
                            problems.append(f"{name}: {key}={value!r} has no UTC offset")
                    rk = read.stream.replication_key
                    if rk is not None:
                        at = getattr(rec, rk)
                        if isinstance(at, datetime) and at > read.partition.until:
                            problems.append(
                                f"{name}: {rk}={at.isoformat()} is after the partition's until "
                                f"({read.partition.until.isoformat()})"
                            )
                    if isinstance(rec, OrderRecord) and rec.external_id in truth:
                        o = truth[rec.external_id]
                        # A platform that only knows the checkout time (a POS receipt) reports
                        # the payment as the placing: either instant is the truth.
                        if rec.placed_at not in {o.created, o.paid_at}:
                            problems.append(
                                f"{name}: placed_at {rec.placed_at.isoformat()} but the order was "
                                f"placed at {o.created.isoformat()} (time zone mix-up?)"
                            )
                        if rec.paid_at is not None and o.paid_at is not None:
                            if rec.paid_at != o.paid_at:
                                problems.append(
                                    f"{name}: paid_at {rec.paid_at.isoformat()} but it was paid "
                                    f"at {o.paid_at.isoformat()}"
                                )
            assert not problems, f"datetimes are wrong:{_fmt(problems)}"

        @pytest.mark.asyncio
        async def test_money_in_fen(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            kit.need("orders")
            world = kit.world()
            async with kit.session(world) as s:
                kit.streams_for(s.connector, "orders")
                refund_streams = (
                    kit.streams_for(s.connector, "refunds")
                    if "refunds" in harness.capabilities
                    else []
                )
                reads = await read_all(s.connector, until=world.end, since=world.start)
            truth = _world_order_index(world, harness.world_channel)
            problems: list[str] = []
            seen: set[str] = set()
            for rec in records_of(reads, OrderRecord):
                assert isinstance(rec, OrderRecord)
                seen.add(rec.external_id)
                o = truth.get(rec.external_id)
                if o is None:
                    problems.append(f"order {rec.external_id} is not in the world")
                    continue
                for f in ("total_fen", "paid_fen"):
                    value = getattr(rec, f)
                    if isinstance(value, bool) or not isinstance(value, int):
                        problems.append(f"order {rec.external_id}: {f} is not an int")
                if rec.total_fen != o.total_fen:
                    problems.append(
                        f"order {rec.external_id}: total_fen {rec.total_fen} != {o.total_fen}"
                    )
                if rec.paid_fen != o.paid_fen:
                    problems.append(
                        f"order {rec.external_id}: paid_fen {rec.paid_fen} != {o.paid_fen}"
                    )
                got = sorted((li.sku, li.quantity, li.unit_price_fen) for li in rec.lines)
                want = sorted((li.sku, li.quantity, li.unit_fen) for li in o.lines)
                if got != want:
                    problems.append(
                        f"order {rec.external_id}: lines (sku, qty, unit fen) {got} != {want}"
                    )
            missing = sorted(
                oid for oid, o in truth.items() if o.status in PAID and oid not in seen
            )
            if missing:
                problems.append(f"{len(missing)} paid orders were never read: {missing[:5]}")
            if refund_streams:
                refunds: dict[str, dict[str, int]] = {}
                for rec in records_of(reads, RefundRecord):
                    assert isinstance(rec, RefundRecord)
                    if isinstance(rec.amount_fen, bool) or not isinstance(rec.amount_fen, int):
                        problems.append(f"refund {rec.refund_id}: amount_fen is not an int")
                    refunds.setdefault(rec.order_external_id, {})[rec.refund_id] = rec.amount_fen
                want_refunds = {
                    oid: sum(r.amount_fen for r in o.refunds if r.at < world.end)
                    for oid, o in truth.items()
                    if any(r.at < world.end for r in o.refunds)
                }
                got_refunds = {oid: sum(v.values()) for oid, v in refunds.items()}
                if got_refunds != want_refunds:
                    diff = sorted(
                        f"order {oid}: refunded {got_refunds.get(oid)} != {want_refunds.get(oid)}"
                        for oid in set(got_refunds) | set(want_refunds)
                        if got_refunds.get(oid) != want_refunds.get(oid)
                    )
                    problems.extend(diff)
            assert not problems, f"money does not match the world (integer fen):{_fmt(problems)}"

        # 8-10. incremental -----------------------------------------------------------------

        @pytest.mark.asyncio
        async def test_two_sequential_incremental_reads(
            self, request: pytest.FixtureRequest
        ) -> None:
            kit = self.kit(request)
            kit.need("orders")
            world = kit.world()
            async with kit.session(world) as s:
                order_streams = {st.name for st in kit.streams_for(s.connector, "orders")}
                incremental = [st for st in s.connector.streams() if st.name in order_streams]
                if all(st.replication_key is None for st in incremental):
                    pytest.skip("not applicable: the order stream is a full refresh")
                until1 = world.end
                first = await read_all(s.connector, until=until1, since=world.start)
                states: dict[tuple[str, str], Mapping[str, Any] | None] = {}
                for key, read in first.items():
                    state = read.last_state()
                    if state is None and read.stream.replication_key is not None:
                        pytest.fail(
                            f"stream {key[0]!r} partition {key[1]!r} yielded no Checkpoint: the "
                            "runner could never bookmark it"
                        )
                    states[key] = state
                at = until1 + timedelta(hours=1)
                touched: list[WorldOrder] = []
                for i in range(5):
                    changed = world.touch(at + timedelta(minutes=i), new=10, pay=5)
                    touched += [o for o in changed if o.channel == harness.world_channel]
                    if touched:
                        break
                assert touched, "the World touched no order on this channel (kit world too small)"
                until2 = world.end + timedelta(hours=1)
                kit.now = until2
                second = await read_all(s.connector, until=until2, since=world.start, states=states)
            problems: list[str] = []
            got = {
                record_key(r)
                for key, read in second.items()
                if key[0] in order_streams
                for r in read.records
                if isinstance(r, OrderRecord)
            }
            for o in touched:
                if o.external_id not in got:
                    problems.append(
                        f"order {o.external_id} changed at {o.modified.isoformat()} was not read"
                    )
            for key, read in second.items():
                if key[0] not in order_streams or read.stream.replication_key is None:
                    continue
                cursor = _cursor(states.get(key)) or until1
                floor = cursor - timedelta(hours=1)
                for rec in read.records:
                    if not isinstance(rec, OrderRecord):
                        continue
                    at_value = getattr(rec, read.stream.replication_key)
                    if at_value < floor:
                        problems.append(
                            f"{key[0]} {record_key(rec)} (updated {at_value.isoformat()}) was read "
                            f"again although the bookmark was {cursor.isoformat()}"
                        )
            assert not problems, f"the second incremental read is wrong:{_fmt(problems)}"

        @pytest.mark.asyncio
        async def test_resume_from_every_checkpoint(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            world = kit.world()
            problems: list[str] = []
            async with kit.session(world) as s:
                full = await read_all(s.connector, until=world.end, since=world.start)
                _expect_records(kit, world, full)
                for (name, part), read in full.items():
                    marks = [n for n, _ in read.checkpoints]
                    if read.records and not marks:
                        problems.append(f"{name}/{part} yielded records but no Checkpoint")
                        continue
                    all_keys = {rkey(r) for r in read.records}
                    for n in _spread(marks, RESUME_CHECKPOINTS):
                        cp = read.items[n]
                        assert isinstance(cp, Checkpoint)
                        try:
                            json.dumps(dict(cp.state))
                        except (TypeError, ValueError):
                            problems.append(f"{name}/{part}: checkpoint {n} state is not JSON")
                            continue
                        _cursor(cp.state)
                        before = {rkey(r) for r in read.items[:n] if not isinstance(r, Checkpoint)}
                        after = {
                            rkey(r) for r in read.items[n + 1 :] if not isinstance(r, Checkpoint)
                        }
                        resumed = await read_partition(read.stream, read.partition, cp.state)
                        again = {rkey(r) for r in resumed.records}
                        lost = sorted(after - again)
                        if lost:
                            problems.append(
                                f"{name}/{part}: resuming from checkpoint #{n} "
                                f"({dict(cp.state)}) loses {len(lost)} records, e.g. {lost[:3]}"
                            )
                        if before | again != all_keys:
                            extra = sorted((before | again) - all_keys)
                            problems.append(
                                f"{name}/{part}: resuming from checkpoint #{n} does not give the "
                                f"full read back (extra keys {extra[:3]})"
                            )
            assert not problems, f"resuming from a checkpoint is not exact:{_fmt(problems)}"

        @pytest.mark.asyncio
        async def test_future_state_yields_nothing(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            world = kit.world()
            async with kit.session(world) as s:
                states = {
                    (st.name, p): {"cursor": world.end.isoformat()}
                    for st in s.connector.streams()
                    for p in st.partitions()
                }
                reads = await read_all(
                    s.connector, until=world.end, since=world.start, states=states
                )
            got = {k: len(r.records) for k, r in reads.items() if r.records}
            assert not got, f"a state whose cursor is the sync's start still yields records: {got}"

        # 11-13. faults ---------------------------------------------------------------------

        @pytest.mark.asyncio
        async def test_retries_on_429_and_5xx(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            world = kit.world()
            async with kit.session(world) as s:
                clean = by_key(await read_all(s.connector, until=world.end, since=world.start))
            kinds = tuple(
                k for k in ALL_FAULTS if k != "429" or "rate_limit" in harness.capabilities
            )
            faults = ScheduledFaults(
                rate=FAULT_RATE,
                kinds=kinds,
                timeout_delay=TIMEOUT_DELAY,
                period=round(1 / FAULT_RATE),
            )
            async with kit.session(world, faults=faults) as s:
                faulty = by_key(await read_all(s.connector, until=world.end, since=world.start))
                stats = s.http.stats
                injected = dict(s.fake.faults.injected)
            assert sum(injected.values()) > 0, (
                "the fake injected no faults: harness.make_fake() must pass `faults` to the fake"
            )
            assert clean, "the clean read returned no records"
            missing = sorted(set(clean) - set(faulty))
            extra = sorted(set(faulty) - set(clean))
            changed = sorted(k for k in set(clean) & set(faulty) if clean[k] != faulty[k])
            assert not (missing or extra or changed), (
                f"with faults {injected} the read differs from a clean read: missing "
                f"{missing[:5]}, extra {extra[:5]}, changed {changed[:5]}"
            )
            recoverable = sum(v for k, v in injected.items() if k != "duplicate")
            assert stats.retries >= recoverable, (
                f"{recoverable} failed calls ({injected}) but only {stats.retries} retries: "
                "all HTTP must go through context.http.call() with a parse() that raises"
            )

        @pytest.mark.asyncio
        async def test_no_retry_on_401(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            world = kit.world()
            async with kit.session(world, bad_credentials=True) as s:
                streams = list(s.connector.streams())
                assert streams, "the connector has no streams"
                stream = streams[0]
                part = Partition(stream.partitions()[0], until=world.end, since=world.start)
                before = len(s.fake.calls)
                with pytest.raises(AuthFailed):
                    await read_partition(stream, part, None, deadline=30)
                calls = s.fake.calls[before:]
                retries = s.http.stats.retries
            assert len(calls) == 1, (
                f"bad credentials: the fake saw {len(calls)} calls "
                f"({[c.api for c in calls][:10]}); refused credentials are never retried"
            )
            assert retries == 0, f"{retries} retries after the platform refused the credentials"

        @pytest.mark.asyncio
        async def test_pagination_terminates(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            world = kit.world()
            async with kit.session(world) as s:
                clean_reads, clean_calls = await _bounded_read(
                    s, max_calls=CLEAN_READ_MAX_CALLS, seconds=PAGING_SECONDS, what="a clean read"
                )
            clean = by_key(clean_reads)
            faults = Faults(rate=0.3, kinds=("duplicate",), seed=5, timeout_delay=TIMEOUT_DELAY)
            async with kit.session(world, faults=faults) as s:
                reads, _ = await _bounded_read(
                    s,
                    max_calls=3 * clean_calls + 20,
                    seconds=PAGING_SECONDS,
                    what=f"a read with repeated pages (a clean read takes {clean_calls} calls)",
                )
            got = by_key(reads)
            assert got == clean, (
                "with repeated pages the read differs from a clean one: missing "
                f"{sorted(set(clean) - set(got))[:5]}, extra {sorted(set(got) - set(clean))[:5]}"
            )

        @pytest.mark.asyncio
        async def test_token_refresh(self, request: pytest.FixtureRequest) -> None:
            kit = self.kit(request)
            kit.need("token_refresh")
            world = kit.world()
            async with kit.session(world) as s:
                clean = by_key(await read_all(s.connector, until=world.end, since=world.start))
            async with kit.session(world) as s:
                fake = s.fake
                # Once before anything was read (the configured token expired), once mid-life
                # (a token the connector obtained itself expired).
                issued = fake.tokens_issued
                fake.expire_token()
                first = by_key(await read_all(s.connector, until=world.end, since=world.start))
                fake.expire_token()
                second = by_key(await read_all(s.connector, until=world.end, since=world.start))
                renewed = fake.tokens_issued - issued
                saved: dict[str, Any] = {}
                for update in s.secrets.saved:
                    saved.update(update)
                # The next sync starts from the stored configuration with the saved secrets
                # merged in (gateway.sync.connections.save_secrets): it must need no new token.
                connector, _ = kit.build({**s.config, **saved}, world)
                try:
                    issued = fake.tokens_issued
                    third = by_key(await read_all(connector, until=world.end, since=world.start))
                    again = fake.tokens_issued - issued
                finally:
                    await connector.close()
            assert first == clean and second == clean, "reads after a token expiry differ"
            assert renewed >= 1, "the platform expired the token but no new token was obtained"
            assert saved, "the new access token was not persisted with context.save_secrets()"
            assert third == clean, "a connector built with the saved secrets reads differently"
            assert again == 0, (
                "a connector built with the saved secrets had to obtain another token: the "
                "refreshed token was not persisted with context.save_secrets()"
            )

        # 14. ONE ID ------------------------------------------------------------------------

        @pytest.mark.asyncio
        async def test_one_person_two_channels_one_member(
            self, request: pytest.FixtureRequest, tmp_path: Any
        ) -> None:
            kit = self.kit(request)
            await _one_person_one_member(kit, tmp_path)

    ConnectorSuite.__name__ = ConnectorSuite.__qualname__ = (
        f"ConnectorSuite_{getattr(harness.connector, 'name', 'connector')}"
    )
    return ConnectorSuite


async def _bounded_read(
    s: Session, *, max_calls: int, seconds: float, what: str
) -> tuple[dict[tuple[str, str], StreamRead], int]:
    """A full read that fails as soon as it makes more than ``max_calls`` calls to the fake or
    runs longer than ``seconds``; returns the reads and the number of calls."""
    fake, world = s.fake, s.world
    before = len(fake.calls)
    started = time.monotonic()

    async def over_budget() -> None:
        # The fake's call log has no event to wait on; poll it.
        while len(fake.calls) - before <= max_calls:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    reading = asyncio.create_task(
        read_all(s.connector, until=world.end, since=world.start, deadline=seconds)
    )
    guard = asyncio.create_task(over_budget())
    done, _ = await asyncio.wait(
        {reading, guard}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
    )
    guard.cancel()
    if reading not in done:
        reading.cancel()
        await asyncio.gather(reading, guard, return_exceptions=True)
        pytest.fail(
            f"paging does not terminate: {what} made {len(fake.calls) - before} calls in "
            f"{time.monotonic() - started:.1f}s (budget: {max_calls} calls, {seconds:.0f}s)"
        )
    await asyncio.gather(guard, return_exceptions=True)
    return reading.result(), len(fake.calls) - before


async def _check(connector: Connector) -> CheckResult:
    try:
        async with asyncio.timeout(30):
            result = await connector.check()
    except TimeoutError:
        pytest.fail("check() did not answer within 30 s")
    except Exception as exc:
        pytest.fail(f"check() raised {type(exc).__name__}: it must return CheckResult(ok=False)")
    if not isinstance(result, CheckResult):
        pytest.fail(f"check() returned {type(result).__name__}, not a CheckResult")
    return result


def _expect_records(kit: Kit, world: World, reads: Mapping[tuple[str, str], StreamRead]) -> None:
    """Guard against vacuous passes: a declared capability's stream must read the world."""
    channel = kit.channel
    has = {
        "orders": bool(world.orders.get(channel)),
        "refunds": any(o.refunds for o in world.orders.get(channel, [])),
        "members": bool(world.people_on(channel)),
    }
    for capability, present in has.items():
        if capability not in kit.harness.capabilities or not present:
            continue
        wanted = CAPABILITY_RECORDS[capability]
        streams = [r for r in reads.values() if wanted in stream_types(r.stream)]
        if streams and not any(type(rec) is wanted for r in streams for rec in r.records):
            pytest.fail(
                f"the {capability} stream read nothing although the world has {capability} on "
                f"{channel!r}: does the harness's fake render harness.world_channel?"
            )
    if not any(r.records for r in reads.values()):
        pytest.fail("the connector read no records at all from the kit's world")


# -- ONE ID across channels (real runner, real SQLite) ----------------------------------------


async def _one_person_one_member(kit: Kit, tmp_path: Any) -> None:
    from sqlalchemy import delete, func, select

    from gateway import members
    from gateway.commerce.model import ORD
    from gateway.hub import Hub
    from gateway.settings import Settings
    from gateway.storage.migrate import upgrade
    from gateway.storage.tables import LedgerBalance, LedgerTransfer, Member, SyncState
    from gateway.sync import connections
    from gateway.sync.runner import SyncRunner
    from gateway.tenants import create_tenant

    harness = kit.harness
    if not ({"orders", "members"} & set(harness.capabilities)):
        pytest.skip("not applicable: the harness declares neither orders nor members")
    use_orders = "orders" in harness.capabilities
    world = kit.world()
    channel = _channel_name(harness.world_channel)
    candidates = _people_with_data(world, harness.world_channel, use_orders)
    if not candidates:
        pytest.fail(f"the kit's world has nobody on {harness.world_channel!r}")
    person = candidates[0]
    link = kit.call("link_identifier()", harness.link_identifier, person)
    if not isinstance(link, IdentifierInput):
        pytest.fail(f"harness.link_identifier() returned {type(link).__name__}")

    url = f"sqlite+aiosqlite:///{tmp_path / 'connector-kit.db'}"
    await upgrade(url)
    hub = Hub(Settings(database_url=url, secret_key=b"connector-kit-master-secret-0123"))
    M = Member.__table__  # type: ignore[attr-defined]
    LT = LedgerTransfer.__table__  # type: ignore[attr-defined]
    LB = LedgerBalance.__table__  # type: ignore[attr-defined]
    SS = SyncState.__table__  # type: ignore[attr-defined]
    try:
        tenant = await create_tenant(
            hub.db, name="Connector kit", slug=f"kit-{uuid.uuid4().hex[:8]}"
        )
        # The runner paces requests at the connector's own rate limit; against the loopback
        # fake that only costs time (pacing is not what this test is about), so run it fast.
        fast = type(
            kit.cls.__name__,
            (kit.cls,),
            {"rate_limit": 1000.0, "__module__": kit.cls.__module__},
        )
        registry = plugin_registry(fast)
        fake = kit.make_fake(world)
        runner = SyncRunner(hub, registry=registry, policy=POLICY, clock=kit.clock)
        async with fake:
            config = dict(kit.call("config()", harness.config, fake))
            props = kit.cls.config_schema.get("properties") or {}
            if "start_date" in props and "start_date" not in config:
                fmt = (
                    props["start_date"].get("format")
                    if isinstance(props["start_date"], Mapping)
                    else None
                )
                config["start_date"] = (
                    world.start.date().isoformat() if fmt == "date" else world.start.isoformat()
                )
            async with hub.db.tenant_tx(tenant.id) as tx:
                await connections.configure(
                    tx,
                    channel=channel,
                    connector=kit.cls.name,
                    config=config,
                    registry=registry,
                    master=hub.settings.secret_key,
                )
            report = await runner.run(tenant.id, channel)
            assert report.status == "succeeded", (
                f"the sync failed: {report.message} {report.errors[:5]}"
            )
            assert report.error_count == 0, (
                f"records were rejected:{_fmt([str(e) for e in report.errors])}"
            )

            key = hub.tenant_key(tenant.id)
            async with hub.db.tenant_tx(tenant.id) as tx:
                owner = await _synced_member(tx, kit, world, person, channel, use_orders, key, ORD)
                linked = await members.find_by_identifier(
                    tx, link.kind, link.scope, link.value, key=key
                )
                assert linked is not None and await members.resolve(tx, linked) == owner, (
                    "harness.link_identifier(person) is not on the member the connector's "
                    "records for that person made"
                )
                result = await members.ingest(
                    tx,
                    channel="kit-other",
                    identifiers=[link, IdentifierInput("phone", None, person.phone)],
                    key=key,
                    now=world.end,
                )
                other = await members.resolve(tx, result.member_id)
                owner = await members.resolve(tx, owner)
            assert not result.created, (
                "another channel's record with the person's link identifier created a new "
                "member: harness.link_identifier() is not among the identifiers the connector's "
                "records carry"
            )
            assert other == owner, (
                "the person is two members: the connector's records and another channel's record "
                "with the same link identifier did not resolve to one member"
            )

            async def snapshot() -> tuple[Any, ...]:
                async with hub.db.tenant_tx(tenant.id, write=False) as tx:
                    orders = (
                        await tx.conn.execute(
                            select(
                                ORD.c.channel,
                                ORD.c.external_id,
                                ORD.c.status,
                                ORD.c.member_id,
                                ORD.c.total_fen,
                                ORD.c.paid_fen,
                            )
                            .where(ORD.c.tenant_id == tenant.id)
                            .order_by(ORD.c.external_id)
                        )
                    ).all()
                    people = (
                        await tx.conn.execute(
                            select(func.count()).select_from(M).where(M.c.tenant_id == tenant.id)
                        )
                    ).scalar()
                    transfers = (
                        await tx.conn.execute(
                            select(LT.c.id, LT.c.amount, LT.c.remaining)
                            .where(LT.c.tenant_id == tenant.id)
                            .order_by(LT.c.id)
                        )
                    ).all()
                    balances = (
                        await tx.conn.execute(select(LB).where(LB.c.tenant_id == tenant.id))
                    ).all()
                return (
                    [tuple(r) for r in orders],
                    people,
                    [tuple(r) for r in transfers],
                    sorted(map(repr, balances)),
                )

            before = await snapshot()
            again = await runner.run(tenant.id, channel)
            assert again.status == "succeeded", f"the second sync failed: {again.message}"
            assert await snapshot() == before, "a second sync changed orders, members or the ledger"
            # Replay everything (as after a lost bookmark): still nothing new.
            async with hub.db.tenant_tx(tenant.id) as tx:
                await tx.conn.execute(
                    delete(SS).where(SS.c.tenant_id == tenant.id, SS.c.channel == channel)
                )
            replay = await runner.run(tenant.id, channel)
            assert replay.status == "succeeded", f"the replayed sync failed: {replay.message}"
            assert sum(st.read for st in replay.streams.values()) > 0, "the replay read nothing"
            assert await snapshot() == before, (
                "replaying the same records changed orders, members or the ledger (not idempotent)"
            )
    finally:
        await hub.close()


def _people_with_data(world: World, channel: str, use_orders: bool) -> list[Person]:
    if use_orders:
        count: dict[int, int] = {}
        for o in world.orders.get(channel, []):
            if o.status in PAID:
                count[o.person.index] = count.get(o.person.index, 0) + 1
        by_index = {p.index: p for p in world.people}
        ranked = sorted(count, key=lambda i: (-count[i], i))
        return [by_index[i] for i in ranked]
    return world.people_on(channel)


async def _synced_member(
    tx: Any,
    kit: Kit,
    world: World,
    person: Person,
    channel: str,
    use_orders: bool,
    key: bytes,
    ORD: Any,
) -> uuid.UUID:
    """The member the connector's synced data for ``person`` belongs to (one, or fail)."""
    from sqlalchemy import select

    from gateway import members

    if use_orders:
        # Paid orders: every platform lists them (some never show an unpaid or cancelled one).
        ids = [
            o.external_id
            for o in world.orders.get(kit.channel, [])
            if o.person is person and o.status in PAID
        ]
        rows = (
            await tx.conn.execute(
                select(ORD.c.external_id, ORD.c.member_id).where(
                    ORD.c.tenant_id == tx.tenant_id,
                    ORD.c.channel == channel,
                    ORD.c.external_id.in_(ids),
                )
            )
        ).all()
        found = {r.external_id: r.member_id for r in rows}
        lost = sorted(set(ids) - set(found))
        assert not lost, f"orders of the person were not synced: {lost[:5]}"
        owners = {await members.resolve(tx, m) if m is not None else None for m in found.values()}
        assert None not in owners, "an order of the person has no member (no buyer identifiers)"
        assert len(owners) == 1, (
            f"the person's {len(ids)} orders on this channel belong to {len(owners)} members"
        )
        return next(iter(owners))  # type: ignore[return-value]
    link = kit.harness.link_identifier(person)
    member = await members.find_by_identifier(tx, link.kind, link.scope, link.value, key=key)
    assert member is not None, (
        "no synced member carries harness.link_identifier(person) for a person on this channel"
    )
    return member


__all__ = [
    "KIT_START",
    "LENIENT",
    "STRICT",
    "STRICTNESS_ENV",
    "Kit",
    "Session",
    "StreamRead",
    "by_key",
    "connector_suite",
    "default_world",
    "plugin_registry",
    "read_all",
    "read_partition",
    "record_schema",
    "record_validator",
    "records_of",
    "resolve_strictness",
    "rkey",
    "stream_types",
]
