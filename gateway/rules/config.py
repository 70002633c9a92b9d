"""Per-tenant rule config: one validated document per version, an audit of who saved it.

The document says which installed rule set fills each slot, with the rule set's own config, and
holds the points-mall catalog (``gateway/mall``)::

    tiers:    {rule: classic_tiers, config: {...}}        # exclusive: one entry at most
    expiry:   {rule: points_expiry, config: {...}}        # exclusive
    earning:  [{rule: classic_earning, config: {...}}]
    tasks:    [{rule: classic_tasks}]
    exchange: [{rule: member_exchange}]
    benefits: [{rule: join_gift, priority: 10, config: {...}}]
    mall:     {rewards: [...]}
    triggers: {birthday: {actions: {coupon: BDAY}}, dormant: {days: 90}, on_event: [...]}

Saving validates everything (unknown slots and rule sets, a rule set in the wrong slot, two rule
sets in an exclusive slot, each rule set's JSON Schema and semantic ``check``, the catalog) and
either stores a new version or raises :class:`~gateway.errors.ConfigInvalid` listing every
problem — nothing is half-saved. Versions are immutable; the tenant row points at the active
one, so the event path reads one column and finds the parsed config in a per-process cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jsonschema
from sqlalchemy import bindparam, func, insert, select, update

from gateway.errors import ConfigInvalid, NotFound
from gateway.rules.hookspecs import EXCLUSIVE_SLOTS, SLOTS, RuleSet, TierPolicy
from gateway.rules.manager import RuleRegistry
from gateway.sql import BatchRead
from gateway.storage.db import Tx
from gateway.storage.tables import RuleConfigVersion, Tenant
from gateway.storage.types import utcnow

RC: Any = RuleConfigVersion.__table__  # type: ignore[attr-defined]
T: Any = Tenant.__table__  # type: ignore[attr-defined]
TOP_KEYS = (*SLOTS, "mall", "triggers")
FORMAT_HELP = "see plugins/README.md, 'The config file'"


@dataclass(frozen=True)
class Entry:
    """One enabled rule set: its slot, its validated config and (benefits) its priority."""

    rule: str
    slot: str
    config: Mapping[str, Any]
    priority: int = 0


@dataclass(frozen=True)
class RuleConfig:
    """A parsed, validated config version. ``version`` 0 is the implicit legacy config built
    from ``tenant.enabled_rules`` for tenants that never saved one."""

    version: int
    entries: tuple[Entry, ...]
    document: Mapping[str, Any]
    mall: Any = None  # gateway.mall.catalog.Catalog
    tier_policy: TierPolicy | None = None
    _by_slot: dict[str, tuple[Entry, ...]] = field(default_factory=dict, repr=False)
    # Derived per config object (task definitions by rule set and registry), see engine.task_defs.
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        by: dict[str, list[Entry]] = {s: [] for s in SLOTS}
        for e in self.entries:
            by[e.slot].append(e)
        for slot, items in by.items():
            # Higher priority first; the document's order breaks ties (stable sort).
            self._by_slot[slot] = tuple(sorted(items, key=lambda e: -e.priority))

    def slot(self, name: str) -> tuple[Entry, ...]:
        return self._by_slot.get(name, ())

    def one(self, name: str) -> Entry | None:
        entries = self.slot(name)
        return entries[0] if entries else None

    @property
    def bulk_safe(self) -> bool:
        """Only earning rule sets: the sync's set-based batch path may apply orders (it runs
        earning itself); anything else (tiers, tasks, benefits, expiry, ``on_event`` care
        triggers) needs this engine."""
        if self.triggers is not None and self.triggers.on_event:
            return False
        return all(e.slot == "earning" for e in self.entries)

    @property
    def triggers(self) -> Any:
        """The ``triggers:`` section (:class:`gateway.triggers.settings.TriggerSettings`) or
        ``None``; parsed from the document once per config object."""
        if "triggers" not in self.cache:
            from gateway.triggers.settings import parse

            raw = self.document.get("triggers") if isinstance(self.document, Mapping) else None
            parsed, problems = parse(raw)
            self.cache["triggers"] = None if problems else parsed
        return self.cache["triggers"]

    @property
    def rule_names(self) -> list[str]:
        return [e.rule for e in self.entries]


# ---- parsing and validation -----------------------------------------------------------------


def parse_text(text: str) -> dict[str, Any]:
    """A YAML (or JSON, which is YAML) document → dict; syntax errors become ConfigInvalid."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "document"
        raise ConfigInvalid([(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigInvalid([("$", f"the config must be a mapping of slots; {FORMAT_HELP}")])
    return _jsonable(doc)


def _jsonable(value: Any) -> Any:
    """YAML gives dates and datetimes; the stored document is plain JSON (ISO strings)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def validate(document: Mapping[str, Any], registry: RuleRegistry) -> RuleConfig:
    """Check ``document`` against the installed rule sets; raise ConfigInvalid with every
    problem, or return the parsed config (version 0 — :func:`save` numbers it)."""
    from gateway.mall.catalog import parse_catalog

    problems: list[tuple[str, str]] = []
    entries: list[Entry] = []
    if not isinstance(document, Mapping):
        raise ConfigInvalid([("$", "the config must be a mapping of slots")])
    for key in document:
        if key not in TOP_KEYS:
            problems.append((key, f"unknown slot {key!r} (slots: {', '.join(TOP_KEYS)})"))
    seen: set[str] = set()
    for slot in SLOTS:
        raw = document.get(slot)
        if raw is None:
            continue
        items = [raw] if isinstance(raw, Mapping) else raw
        if not isinstance(items, list):
            problems.append((slot, "must be a list of {rule, config} entries"))
            continue
        if slot in EXCLUSIVE_SLOTS and len(items) > 1:
            names = ", ".join(str(i.get("rule")) for i in items if isinstance(i, Mapping))
            problems.append((slot, f"slot {slot!r} is exclusive: one rule set, got {names}"))
            continue
        for i, item in enumerate(items):
            path = slot if slot in EXCLUSIVE_SLOTS else f"{slot}[{i}]"
            entry = _entry(slot, path, item, registry, problems)
            if entry is None:
                continue
            if entry.rule in seen:
                problems.append((path, f"rule set {entry.rule!r} is enabled twice"))
                continue
            seen.add(entry.rule)
            entries.append(entry)
    policy = None
    tiers = next((e for e in entries if e.slot == "tiers"), None)
    if tiers is not None:
        try:
            policy = _policy(registry.get(tiers.rule), tiers.config)  # type: ignore[arg-type]
        except ValueError as exc:
            problems.append(("tiers.config", str(exc)))
        else:
            problems.extend(("tiers.config", m) for m in _gift_problems(policy, registry))
    problems.extend(_task_problems(entries, registry))
    tier_codes = [t.code for t in policy.tiers] if policy else []
    problems.extend(_reference_problems(document, entries, registry, tier_codes, policy))
    mall, mall_problems = parse_catalog(document.get("mall"), registry, tier_codes)
    problems.extend(mall_problems)
    problems.extend(_trigger_problems(document.get("triggers"), registry))
    if problems:
        raise ConfigInvalid(problems)
    return RuleConfig(0, tuple(entries), dict(document), mall, policy)


def _trigger_problems(raw: Any, registry: RuleRegistry) -> list[tuple[str, str]]:
    """The care triggers section (``gateway.triggers.settings``), checked like a slot."""
    from gateway.triggers.settings import parse

    return parse(raw, registry)[1]


def _entry(
    slot: str, path: str, item: Any, registry: RuleRegistry, problems: list[tuple[str, str]]
) -> Entry | None:
    if isinstance(item, str):
        item = {"rule": item}
    if not isinstance(item, Mapping):
        problems.append((path, "an entry is {rule: <name>, config: {...}, priority: <int>}"))
        return None
    extra = set(item) - {"rule", "config", "priority"}
    if extra:
        problems.append((path, f"unknown keys {sorted(extra)} (allowed: rule, config, priority)"))
    name = item.get("rule")
    rs = registry.get(name) if isinstance(name, str) else None
    if rs is None:
        installed = ", ".join(registry.names(slot)) or "none installed"
        problems.append((f"{path}.rule", f"no installed rule set {name!r} ({slot}: {installed})"))
        return None
    if rs.slot != slot:
        problems.append((f"{path}.rule", f"{name!r} is a {rs.slot!r} rule set, not {slot!r}"))
        return None
    config = item.get("config") or {}
    if not isinstance(config, Mapping):
        problems.append((f"{path}.config", "must be a mapping"))
        return None
    before = len(problems)
    schema = getattr(rs, "config_schema", None)
    if schema:
        validator = jsonschema.Draft202012Validator(schema)
        for err in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(p) for p in err.absolute_path)
            problems.append((f"{path}.config{'.' + where if where else ''}", err.message))
    if len(problems) == before:
        check = getattr(rs, "check", None)
        if callable(check):
            for message in check(dict(config)) or []:
                problems.append((f"{path}.config", str(message)))
    priority = item.get("priority", getattr(rs, "priority", 0))
    if not isinstance(priority, int) or isinstance(priority, bool):
        problems.append((f"{path}.priority", "must be an integer"))
        priority = 0
    if len(problems) > before:
        return None
    return Entry(name, slot, dict(config), priority)


def _policy(rs: RuleSet, config: Mapping[str, Any]) -> TierPolicy:
    from gateway.rules.tiers import check_policy

    policy = rs.policy(dict(config))  # type: ignore[attr-defined]
    if not isinstance(policy, TierPolicy):
        raise ValueError(f"{rs.name}.policy() must return a TierPolicy")
    check_policy(policy)
    return policy


def _task_problems(entries: list[Entry], registry: RuleRegistry) -> list[tuple[str, str]]:
    """Every task definition is checked, and task codes are unique across the tenant's tasks
    rule sets (progress and completions are keyed by code)."""
    from gateway.rules.tasks import check_task

    out: list[tuple[str, str]] = []
    owner: dict[str, str] = {}
    for i, e in enumerate(x for x in entries if x.slot == "tasks"):
        path = f"tasks[{i}]"
        try:
            defs = list(registry.get(e.rule).tasks(dict(e.config)))  # type: ignore[union-attr]
        except Exception as exc:  # a plugin bug must surface as a config problem, not a 500
            out.append((path, f"{e.rule}.tasks() failed: {exc}"))
            continue
        known = ", ".join(sorted(registry.reward_kinds))
        for t in defs:
            out.extend((f"{path}.config", m) for m in check_task(t))
            for reward in (*t.rewards, *(r for b in t.streak for r in b.rewards)):
                kind, _, code = reward.partition(":")
                if kind not in registry.reward_kinds or not code:
                    out.append(
                        (
                            f"{path}.config",
                            f"task {t.code}: reward {reward!r} is not '<kind>:<code>' with a "
                            f"known reward kind ({known})",
                        )
                    )
            if t.code in owner:
                out.append(
                    (
                        f"{path}.config",
                        f"task code {t.code!r} is also defined by "
                        f"{owner[t.code]!r}; task codes must be unique",
                    )
                )
            owner.setdefault(t.code, e.rule)
    return out


def _gift_problems(policy: TierPolicy, registry: RuleRegistry) -> list[str]:
    out = []
    for t in policy.tiers:
        for gift in t.gifts:
            kind, _, code = gift.partition(":")
            if kind not in registry.reward_kinds or not code:
                known = ", ".join(sorted(registry.reward_kinds))
                out.append(
                    f"tier {t.code}: gift {gift!r} is not '<kind>:<code>' with a known "
                    f"reward kind ({known})"
                )
    return out


def _reference_problems(
    document: Mapping[str, Any],
    entries: list[Entry],
    registry: RuleRegistry,
    tier_codes: list[str],
    policy: TierPolicy | None,
) -> list[tuple[str, str]]:
    """What a rule set's config names outside itself, checked against the tenant: its optional
    ``rewards(config)`` against the registered reward kinds, its optional ``tier_codes(config)``
    against the tenant's ladder (which ``check(config)`` alone cannot see)."""
    out: list[tuple[str, str]] = []
    for e in entries:
        rs = registry.get(e.rule)
        path = _entry_path(document, e)
        rewards = getattr(rs, "rewards", None)
        if callable(rewards):
            known = ", ".join(sorted(registry.reward_kinds))
            for reward in rewards(dict(e.config)) or []:
                kind, _, code = str(reward).partition(":")
                if kind not in registry.reward_kinds or not code:
                    out.append(
                        (
                            f"{path}.config",
                            f"reward {reward!r} is not '<kind>:<code>' with a known reward kind "
                            f"({known})",
                        )
                    )
        named = getattr(rs, "tier_codes", None)
        if callable(named) and e.slot != "tiers":
            for code in named(dict(e.config)) or []:
                if policy is None:
                    out.append((f"{path}.config", f"names tier {code!r} but no tiers rule set"))
                elif code not in tier_codes:
                    out.append(
                        (
                            f"{path}.config",
                            f"unknown tier {code!r} (tiers: {', '.join(tier_codes)})",
                        )
                    )
    return out


def _entry_path(document: Mapping[str, Any], e: Entry) -> str:
    """``benefits[2]``: where an enabled rule set's entry is in the document."""
    if e.slot in EXCLUSIVE_SLOTS:
        return e.slot
    items = document.get(e.slot) or []
    for i, item in enumerate(items if isinstance(items, list) else []):
        if item == e.rule or (isinstance(item, Mapping) and item.get("rule") == e.rule):
            return f"{e.slot}[{i}]"
    return e.slot


def digest(document: Mapping[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# ---- storage --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigVersion:
    """A stored version and its audit line."""

    version: int
    document: Mapping[str, Any]
    digest: str
    created_at: datetime
    created_by: str
    comment: str


async def save(
    tx: Tx,
    document: Mapping[str, Any],
    registry: RuleRegistry,
    *,
    actor: str,
    comment: str = "",
    now: datetime | None = None,
) -> tuple[ConfigVersion, bool]:
    """Validate and store ``document`` as the tenant's next version and activate it.

    Returns ``(version, created)``; saving a document identical to the active one creates
    nothing (a re-run ``rules apply`` is a no-op). The tenant row is locked, so two concurrent
    saves get consecutive versions and the later one wins.
    """
    document = _jsonable(dict(document))
    parsed = validate(document, registry)
    now = now or utcnow()
    row = (
        await tx.conn.execute(
            select(T.c.rules_version).where(T.c.id == tx.tenant_id).with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound("tenant not found")
    await _check_trigger_templates(tx, parsed)
    dig = digest(document)
    if row.rules_version:
        active = await get_version(tx, row.rules_version)
        if active.digest == dig:
            return active, False
    last = (
        await tx.conn.execute(
            select(func.coalesce(func.max(RC.c.version), 0)).where(RC.c.tenant_id == tx.tenant_id)
        )
    ).scalar_one()
    version = int(last) + 1
    await tx.conn.execute(
        insert(RC).values(
            tenant_id=tx.tenant_id,
            version=version,
            document=document,
            digest=dig,
            created_at=now,
            created_by=actor[:200],
            comment=comment[:500],
        )
    )
    await tx.conn.execute(
        update(T)
        .where(T.c.id == tx.tenant_id)
        .values(rules_version=version, enabled_rules=parsed.rule_names)
    )
    await _sync_stock(tx, parsed, now)
    stored = ConfigVersion(version, document, dig, now, actor[:200], comment[:500])
    return stored, True


async def _check_trigger_templates(tx: Tx, parsed: RuleConfig) -> None:
    """Coupon templates named by care trigger actions must exist (they live in the database,
    so ``validate`` cannot see them)."""
    if parsed.triggers is not None:
        from gateway.triggers.actions import check_templates

        await check_templates(tx, parsed.triggers)


async def _sync_stock(tx: Tx, parsed: RuleConfig, now: datetime) -> None:
    from gateway.mall.stock import ensure_stock_rows

    if parsed.mall is not None:
        await ensure_stock_rows(tx, parsed.mall, now)


async def get_version(tx: Tx, version: int) -> ConfigVersion:
    row = (
        await tx.conn.execute(
            select(RC).where(RC.c.tenant_id == tx.tenant_id, RC.c.version == version)
        )
    ).first()
    if row is None:
        raise NotFound("rule config version not found", version=version)
    return ConfigVersion(
        row.version, row.document, row.digest, row.created_at, row.created_by, row.comment
    )


async def history(tx: Tx, *, limit: int = 50) -> list[ConfigVersion]:
    rows = (
        await tx.conn.execute(
            select(RC)
            .where(RC.c.tenant_id == tx.tenant_id)
            .order_by(RC.c.version.desc())
            .limit(limit)
        )
    ).all()
    return [
        ConfigVersion(r.version, r.document, r.digest, r.created_at, r.created_by, r.comment)
        for r in rows
    ]


# Read on every member event: built once (see gateway.sql.BatchRead).
_TENANT_ROW = BatchRead(
    lambda _d: select(T.c.rules_version, T.c.enabled_rules, T.c.timezone).where(
        T.c.id == bindparam("id")
    )
)


async def active(tx: Tx, registry: RuleRegistry) -> tuple[RuleConfig, str]:
    """The tenant's active config (parsed, cached by version) and its timezone.

    A tenant that never saved a config runs its legacy ``enabled_rules`` with empty configs
    (version 0). A stored version that no longer validates — a plugin was uninstalled or
    changed its schema — runs the entries that still load and logs the rest, rather than
    refusing to record orders.
    """
    rows = await _TENANT_ROW.fetch(tx, id=tx.tenant_id)
    if not rows:
        return RuleConfig(0, (), {}), "Asia/Shanghai"
    version, enabled, timezone = rows[0][0] or 0, rows[0][1], rows[0][2]
    if isinstance(enabled, str):  # JSON text straight from the asyncpg driver
        enabled = json.loads(enabled)
    cache = registry.config_cache
    key = (tx.tenant_id, version)
    cached = cache.get(key)
    if isinstance(cached, RuleConfig):
        # The legacy config (version 0) follows ``enabled_rules``, which may change in place.
        if version or cached.rule_names == _legacy_names(enabled, registry):
            return cached, timezone
    if version == 0:
        parsed = _legacy(list(enabled or []), registry)
    else:
        stored = await get_version(tx, version)
        parsed = _tolerant(stored.document, registry, version)
    if len(cache) > 4096:
        cache.clear()
    cache[key] = parsed
    return parsed, timezone


def _legacy_names(enabled: Any, registry: RuleRegistry) -> list[str]:
    return [e.rule for e in _legacy(list(enabled or []), registry).entries]


def _legacy(enabled: list[str], registry: RuleRegistry) -> RuleConfig:
    import logging

    entries = []
    for name in dict.fromkeys(enabled):
        rs = registry.get(name)
        if rs is None:
            logging.getLogger(__name__).warning("enabled rule set %r is not installed", name)
            continue
        if rs.slot in ("earning", "benefits"):
            entries.append(Entry(name, rs.slot, {}, getattr(rs, "priority", 0)))
    return RuleConfig(0, tuple(entries), {})


def _tolerant(document: Mapping[str, Any], registry: RuleRegistry, version: int) -> RuleConfig:
    import logging

    try:
        parsed = validate(document, registry)
    except ConfigInvalid as exc:
        logging.getLogger(__name__).error(
            "stored rule config v%s no longer validates (%s); running what still loads",
            version,
            exc.message,
        )
        doc = {k: v for k, v in document.items() if k in TOP_KEYS}
        kept: dict[str, Any] = {}
        for slot in SLOTS:
            raw = doc.get(slot)
            items = [raw] if isinstance(raw, Mapping) else (raw or [])
            good = []
            for item in items:
                try:
                    validate({slot: [item]}, registry)
                    good.append(item)
                except ConfigInvalid:
                    continue
            if good:
                kept[slot] = good
        try:
            parsed = validate({**kept, "mall": doc.get("mall")}, registry)
        except ConfigInvalid:
            parsed = validate(kept, registry)
        if not _trigger_problems(doc.get("triggers"), registry):
            parsed = validate({**parsed.document, "triggers": doc.get("triggers")}, registry)
    return RuleConfig(version, parsed.entries, parsed.document, parsed.mall, parsed.tier_policy)
