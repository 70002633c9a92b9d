"""The ``triggers:`` section of a tenant's rule config: which care triggers fire, what they give.

A brand without a custom benefits rule set still wants "a coupon on the birthday" or "100 points
when someone reaches gold"; the section says so directly, next to the rule sets::

    triggers:
      birthday: {actions: {coupon: BDAY-2026}}
      member_day: {day: 18, actions: {points: 50}}
      points_expiring: {days_ahead: 14}              # no actions: the event (webhooks) is the point
      dormant: {days: 90, actions: {coupon: COMEBACK}}
      purchase_slowing: {factor: 2.0, min_orders: 3}
      on_event:
        - {event: tier.changed, where: {change: upgrade, to: gold}, actions: {points: 100}}

Parsing is pure (no database): :func:`parse` returns the settings and every problem as a
``(path, message)`` pair for :class:`~gateway.errors.ConfigInvalid`. The coupon templates named in
actions are checked against the tenant's templates when the config is saved
(:func:`gateway.triggers.actions.check_templates`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.ledger.accounts import ACCOUNTS, MAX_AMOUNT

SCHEDULED = ("birthday", "member_day", "points_expiring", "dormant", "purchase_slowing")
"""The scheduled triggers, in the order ``memberhub triggers run`` fires them."""
CALENDAR = ("birthday", "member_day")
"""Scheduled triggers that also fire without configuration when the tenant runs rule sets that
react to member events (tiers, tasks, benefits): they predate the ``triggers:`` section."""
NOT_PROCESSED = frozenset(
    {
        "points.changed",
        "order.refunded",
        "coupon.issued",
        "coupon.redeemed",
        "coupon.returned",
        "coupon.expiring",
        "coupon.expired",
        "member.merged",
        "member.unmerged",
    }
)
"""Event types recorded without running the engine: an ``on_event`` entry for them never fires."""
MAX_ON_EVENT = 50
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_ACTION_KEYS = ("coupon", "points", "account", "reason")
_DEFAULTS: dict[str, dict[str, Any]] = {
    "birthday": {},
    "member_day": {"day": 8},
    "points_expiring": {"days_ahead": 7, "accounts": ["points"]},
    "dormant": {"days": 90, "never_ordered": True},
    "purchase_slowing": {"factor": 2.0, "min_orders": 3},
}

Problems = list[tuple[str, str]]


@dataclass(frozen=True)
class Actions:
    """What a trigger gives besides its event: coupons (template codes) and/or a credit."""

    coupons: tuple[str, ...] = ()
    points: int = 0
    account: str = "points"
    reason: str | None = None


@dataclass(frozen=True)
class Scheduled:
    """One configured scheduled trigger: its options (defaults filled in) and actions."""

    name: str
    options: Mapping[str, Any]
    actions: Actions | None = None


@dataclass(frozen=True)
class OnEvent:
    """``on_event`` entry: when an event of ``event`` whose payload matches ``where`` is processed
    by the engine, run ``actions``. ``where`` maps payload keys to the accepted values."""

    name: str
    event: str
    where: Mapping[str, tuple[Any, ...]]
    actions: Actions

    def matches(self, event_type: str, payload: Mapping[str, Any]) -> bool:
        if event_type != self.event:
            return False
        return all(payload.get(k) in values for k, values in self.where.items())


@dataclass(frozen=True)
class TriggerSettings:
    """The parsed section. ``disabled`` holds calendar triggers switched off with ``false``."""

    scheduled: Mapping[str, Scheduled] = field(default_factory=dict)
    disabled: frozenset[str] = frozenset()
    on_event: tuple[OnEvent, ...] = ()

    @property
    def coupon_codes(self) -> dict[str, str]:
        """Every coupon template code named in actions → the path naming it (first one)."""
        out: dict[str, str] = {}
        for s in self.scheduled.values():
            for code in s.actions.coupons if s.actions else ():
                out.setdefault(code, f"triggers.{s.name}.actions.coupon")
        for i, e in enumerate(self.on_event):
            for code in e.actions.coupons:
                out.setdefault(code, f"triggers.on_event[{i}].actions.coupon")
        return out


def parse(raw: Any, registry: Any = None) -> tuple[TriggerSettings | None, Problems]:
    """The ``triggers:`` value → settings (``None`` when absent or empty) and problems.

    ``registry`` (a :class:`~gateway.rules.manager.RuleRegistry`) checks ``on_event`` types and
    ``where`` keys against the installed event types; without one (re-reading a stored,
    already validated document) those checks are skipped."""
    problems: Problems = []
    if raw is None:
        return None, problems
    if not isinstance(raw, Mapping):
        return None, [("triggers", "must be a mapping of trigger names to their settings")]
    scheduled: dict[str, Scheduled] = {}
    disabled: set[str] = set()
    for key, value in raw.items():
        path = f"triggers.{key}"
        if key == "on_event":
            continue
        if key not in SCHEDULED:
            allowed = ", ".join((*SCHEDULED, "on_event"))
            problems.append((path, f"unknown trigger {key!r} (known: {allowed})"))
            continue
        if value is False:
            if key in CALENDAR:
                disabled.add(key)
            continue  # the others are off unless configured: false says the same
        s = _scheduled(key, {} if value is None or value is True else value, path, problems)
        if s is not None:
            scheduled[key] = s
    on_event = _on_event(raw.get("on_event"), registry, problems)
    if not scheduled and not disabled and not on_event:
        return None, problems
    return TriggerSettings(scheduled, frozenset(disabled), tuple(on_event)), problems


def _int(
    value: Any, path: str, low: int, high: int, problems: Problems, what: str = "an integer"
) -> int | None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        problems.append((path, f"must be {what} from {low} to {high}"))
        return None
    return value


def _scheduled(name: str, value: Any, path: str, problems: Problems) -> Scheduled | None:
    if not isinstance(value, Mapping):
        problems.append((path, "must be a mapping of options ({} for the defaults) or false"))
        return None
    before = len(problems)
    options = dict(_DEFAULTS[name])
    allowed = (*options, "actions")
    for key in value:
        if key not in allowed:
            problems.append((f"{path}.{key}", f"unknown option (allowed: {', '.join(allowed)})"))
    given = {k: v for k, v in value.items() if k in options}
    if name == "member_day" and "day" in given:
        options["day"] = _int(given["day"], f"{path}.day", 1, 28, problems, "a day of month")
    if name == "points_expiring":
        if "days_ahead" in given:
            options["days_ahead"] = _int(
                given["days_ahead"], f"{path}.days_ahead", 1, 366, problems
            )
        if "accounts" in given:
            options["accounts"] = _accounts(given["accounts"], f"{path}.accounts", problems)
    if name == "dormant":
        if "days" in given:
            options["days"] = _int(given["days"], f"{path}.days", 1, 3660, problems)
        if "never_ordered" in given:
            if not isinstance(given["never_ordered"], bool):
                problems.append((f"{path}.never_ordered", "must be true or false"))
            options["never_ordered"] = given["never_ordered"]
    if name == "purchase_slowing":
        if "factor" in given:
            f = given["factor"]
            if not isinstance(f, int | float) or isinstance(f, bool) or not 1 < f <= 100:
                problems.append((f"{path}.factor", "must be a number above 1 and at most 100"))
            options["factor"] = f
        if "min_orders" in given:
            options["min_orders"] = _int(
                given["min_orders"], f"{path}.min_orders", 2, 1000, problems
            )
    actions = None
    if value.get("actions") is not None:
        actions = _actions(value["actions"], f"{path}.actions", problems)
    if len(problems) > before:
        return None
    return Scheduled(name, options, actions)


def _accounts(value: Any, path: str, problems: Problems) -> list[str]:
    expiring = sorted(a for a, k in ACCOUNTS.items() if k.expiring)
    if not isinstance(value, list) or not value:
        problems.append((path, f"must be a non-empty list of expiring accounts ({expiring})"))
        return []
    for i, a in enumerate(value):
        if a not in expiring:
            problems.append((f"{path}[{i}]", f"{a!r} is not an expiring account ({expiring})"))
    return list(dict.fromkeys(value))


def _actions(value: Any, path: str, problems: Problems) -> Actions | None:
    if not isinstance(value, Mapping):
        problems.append((path, "must be a mapping: {coupon: CODE, points: N, account, reason}"))
        return None
    before = len(problems)
    for key in value:
        if key not in _ACTION_KEYS:
            problems.append(
                (f"{path}.{key}", f"unknown action (allowed: {', '.join(_ACTION_KEYS)})")
            )
    raw = value.get("coupon")
    codes = [raw] if isinstance(raw, str) else raw
    if raw is not None and (
        not isinstance(codes, list)
        or not codes
        or any(not isinstance(c, str) or not 1 <= len(c) <= 64 for c in codes)
    ):
        problems.append((f"{path}.coupon", "must be a coupon template code or a list of them"))
        codes = []
    points = value.get("points", 0)
    if "points" in value:
        points = _int(points, f"{path}.points", 1, MAX_AMOUNT, problems) or 0
    account = value.get("account", "points")
    kind = ACCOUNTS.get(account) if isinstance(account, str) else None
    if kind is None:
        problems.append((f"{path}.account", f"unknown account {account!r} ({sorted(ACCOUNTS)})"))
    elif kind.tier_qualifying:
        problems.append(
            (f"{path}.account", f"{account!r} moves tiers: give it with a rule set, not an action")
        )
    reason = value.get("reason")
    if reason is not None and (not isinstance(reason, str) or not 1 <= len(reason) <= 200):
        problems.append((f"{path}.reason", "must be a text of 1-200 characters"))
    if not codes and not points and len(problems) == before:
        problems.append((path, "give at least a coupon or points"))
    if len(problems) > before:
        return None
    return Actions(tuple(dict.fromkeys(codes or ())), points, account, reason)


def _on_event(raw: Any, registry: Any, problems: Problems) -> list[OnEvent]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(("triggers.on_event", "must be a list of {event, where, actions}"))
        return []
    if len(raw) > MAX_ON_EVENT:
        problems.append(("triggers.on_event", f"at most {MAX_ON_EVENT} entries"))
        return []
    out: list[OnEvent] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        path = f"triggers.on_event[{i}]"
        if not isinstance(item, Mapping):
            problems.append((path, "an entry is {event, where, actions, name}"))
            continue
        before = len(problems)
        for key in item:
            if key not in ("event", "where", "actions", "name"):
                problems.append(
                    (f"{path}.{key}", "unknown key (allowed: event, where, actions, name)")
                )
        name = item.get("name", f"on_event_{i}")
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append((f"{path}.name", "must be lower-case letters, digits, _ (≤ 40)"))
        elif name in names:
            problems.append((f"{path}.name", f"{name!r} names another entry too"))
        elif name in SCHEDULED:  # their action keys would collide with the scheduled trigger's
            problems.append((f"{path}.name", f"{name!r} is a scheduled trigger's name"))
        names.add(str(name))
        etype = item.get("event")
        et = _event_type(etype, f"{path}.event", registry, problems)
        where = _where(item.get("where"), f"{path}.where", et, problems)
        if item.get("actions") is None:
            problems.append((f"{path}.actions", "required: what to give when the event happens"))
            actions = None
        else:
            actions = _actions(item["actions"], f"{path}.actions", problems)
        if len(problems) == before and actions is not None:
            out.append(OnEvent(str(name), str(etype), where, actions))
    return out


def _event_type(etype: Any, path: str, registry: Any, problems: Problems) -> Any:
    if not isinstance(etype, str) or not etype:
        problems.append((path, "required: an event type (e.g. tier.changed)"))
        return None
    if etype in NOT_PROCESSED:
        problems.append((path, f"{etype} is recorded without running rules: it never triggers"))
        return None
    if registry is None:
        return None
    et = registry.event_types.get(etype)
    if et is None:
        problems.append((path, f"unknown event type {etype!r}"))
    return et


def _where(raw: Any, path: str, et: Any, problems: Problems) -> dict[str, tuple[Any, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append((path, "must be a mapping of payload keys to a value or a list of values"))
        return {}
    known = list(getattr(et, "payload", None) or ())
    out: dict[str, tuple[Any, ...]] = {}
    for key, value in raw.items():
        if known and key not in known:
            problems.append((f"{path}.{key}", f"{et.name} has no payload key {key!r} ({known})"))
            continue
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(v, dict | list) for v in values):
            problems.append((f"{path}.{key}", "must be a value or a non-empty list of values"))
            continue
        out[str(key)] = tuple(values)
    return out


# ---- what fires for a tenant -------------------------------------------------------------------


def scheduled_for(cfg: Any) -> dict[str, Scheduled]:
    """The scheduled triggers that fire for a tenant's config, by name.

    Configured ones fire. Birthday and member day also fire unconfigured (with their defaults and
    no actions) when the config has a rule set reacting to member events — a benefits rule set may
    answer ``member.birthday`` — unless the section switches them off with ``false``. Nothing
    else fires: a tenant with only earning rules and no section costs one config read."""
    settings: TriggerSettings | None = cfg.triggers
    out: dict[str, Scheduled] = dict(settings.scheduled) if settings else {}
    reacting = any(e.slot != "earning" for e in cfg.entries)
    for name in CALENDAR:
        if name not in out and reacting and not (settings and name in settings.disabled):
            out[name] = Scheduled(name, dict(_DEFAULTS[name]))
    return {n: out[n] for n in SCHEDULED if n in out}


def actions_for(cfg: Any, event_type: str, payload: Mapping[str, Any]) -> list[tuple[str, Actions]]:
    """``(label, actions)`` to run for an event the engine processes: the scheduled trigger that
    records this event type (if configured with actions), then every matching ``on_event``."""
    settings: TriggerSettings | None = cfg.triggers
    if settings is None:
        return []
    out: list[tuple[str, Actions]] = []
    for s in settings.scheduled.values():
        if s.actions is not None and EVENT_OF.get(s.name) == event_type:
            out.append((s.name, s.actions))
    out.extend((e.name, e.actions) for e in settings.on_event if e.matches(event_type, payload))
    return out


EVENT_OF = {
    "birthday": "member.birthday",
    "member_day": "member.member_day",
    "points_expiring": "points.expiring",
    "dormant": "member.dormant",
    "purchase_slowing": "member.purchase_slowing",
}
"""The event type each scheduled trigger records."""
