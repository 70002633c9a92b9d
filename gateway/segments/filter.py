"""The segment filter language: a JSON object, validated into a typed :class:`Filter`.

Every condition present must hold (they are AND-ed); ``{}`` matches every active member::

    {
      "tiers": ["gold", "platinum"],                      # effective tier (override included)
      "tags": {"any": ["vip"], "all": ["scene:live"], "none": ["blacklist"]},
      "channels": {"any": ["tmall", "wechat"], "via": "any"},   # via: identity | order | any
      "spend": {"min_fen": 100000, "max_fen": null, "within_days": 365},
      "last_order": {"within_days": 30} | {"over_days": 90} | {"never": true},
      "order_count": {"min": 2, "max": null, "within_days": 180},
      "birthday_month": [5, 6],
      "joined": {"from": "2026-01-01T00:00:00+08:00", "to": "2026-02-01T00:00:00+08:00"}
    }

Validation reports *every* problem with its path (``tags.any[2]``, ``spend.min_fen``) in one
:class:`FilterInvalid`, so an operator's UI can mark all the wrong fields at once. ``lifecycle``
is reserved: lifecycle states (new, active, dormant, churned) are not computed yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.errors import DomainError, InvalidInput, problems_summary
from gateway.tags import normalise

MAX_DAYS = 3660
MAX_FEN = 10**12
MAX_LIST = 100
CHANNEL_VIA = ("any", "identity", "order")
KEYS = (
    "tiers",
    "tags",
    "channels",
    "spend",
    "last_order",
    "order_count",
    "birthday_month",
    "joined",
)


class FilterInvalid(DomainError):
    """A segment filter failed validation; ``problems`` lists every ``(path, message)``."""

    code = "FILTER_INVALID"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(
            f"invalid segment filter — {problems_summary(problems)}", problems=problems
        )
        self.problems = problems


@dataclass(frozen=True)
class Tags:
    any: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    none: tuple[str, ...] = ()


@dataclass(frozen=True)
class Channels:
    any: tuple[str, ...]
    via: str = "any"


@dataclass(frozen=True)
class Spend:
    """Net paid (paid − refunded) in fen, lifetime or over the last ``within_days``."""

    min_fen: int | None = None
    max_fen: int | None = None
    within_days: int | None = None


@dataclass(frozen=True)
class LastOrder:
    within_days: int | None = None
    over_days: int | None = None
    never: bool = False


@dataclass(frozen=True)
class OrderCount:
    min: int | None = None
    max: int | None = None
    within_days: int | None = None


@dataclass(frozen=True)
class Joined:
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class Filter:
    tiers: tuple[str, ...] | None = None
    tags: Tags | None = None
    channels: Channels | None = None
    spend: Spend | None = None
    last_order: LastOrder | None = None
    order_count: OrderCount | None = None
    birthday_month: tuple[int, ...] | None = None
    joined: Joined | None = None
    document: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def needs_orders(self) -> bool:
        return any(x is not None for x in (self.spend, self.last_order, self.order_count))


class _Checker:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def bad(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def obj(self, value: Any, path: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.bad(path, "must be an object")
            return None
        for k in value:
            if k not in keys:
                self.bad(f"{path}.{k}", f"unknown key (known: {', '.join(keys)})")
        return value

    def codes(self, value: Any, path: str, *, tag: bool = False) -> tuple[str, ...]:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
            self.bad(path, f"must be a list of 1-{MAX_LIST} codes")
            return ()
        out: list[str] = []
        for i, v in enumerate(value):
            p = f"{path}[{i}]"
            if tag:
                try:
                    out.append(normalise.tag(v, p))
                except InvalidInput as exc:
                    self.bad(p, exc.message)
            elif not isinstance(v, str) or not v.strip() or len(v) > 64:
                self.bad(p, "must be a 1-64 character code")
            else:
                out.append(v.strip())
        return tuple(dict.fromkeys(out))

    def int_in(self, value: Any, path: str, low: int, high: int) -> int | None:
        if value is None:
            return None
        if type(value) is not int or not low <= value <= high:
            self.bad(path, f"must be an integer in {low}..{high} or null")
            return None
        return value

    def instant(self, value: Any, path: str) -> datetime | None:
        if value is None:
            return None
        try:
            at = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            at = None
        if at is None or at.tzinfo is None or at.utcoffset() is None:
            self.bad(path, "must be an ISO-8601 instant with its UTC offset, or null")
            return None
        return at


def parse(doc: Any) -> Filter:
    """Validate a filter document; raises :class:`FilterInvalid` listing every problem."""
    c = _Checker()
    d = c.obj(doc, "filter", (*KEYS, "lifecycle"))
    if d is None:
        raise FilterInvalid(c.problems)
    if "lifecycle" in d:
        c.bad("filter.lifecycle", "lifecycle states are not available yet")
    out: dict[str, Any] = {}
    if "tiers" in d:
        out["tiers"] = c.codes(d["tiers"], "filter.tiers")
    if "tags" in d and (t := c.obj(d["tags"], "filter.tags", ("any", "all", "none"))) is not None:
        parts = {
            k: c.codes(t[k], f"filter.tags.{k}", tag=True) for k in ("any", "all", "none") if k in t
        }
        if not t:
            c.bad("filter.tags", "give at least one of any, all, none")
        out["tags"] = Tags(**parts)
    if (
        "channels" in d
        and (ch := c.obj(d["channels"], "filter.channels", ("any", "via"))) is not None
    ):
        via = ch.get("via", "any")
        if via not in CHANNEL_VIA:
            c.bad("filter.channels.via", f"must be one of {', '.join(CHANNEL_VIA)}")
        if "any" not in ch:
            c.bad("filter.channels.any", "required: the channels to match")
        out["channels"] = Channels(c.codes(ch.get("any"), "filter.channels.any"), via)
    if (
        "spend" in d
        and (s := c.obj(d["spend"], "filter.spend", ("min_fen", "max_fen", "within_days")))
        is not None
    ):
        sp = Spend(
            c.int_in(s.get("min_fen"), "filter.spend.min_fen", -MAX_FEN, MAX_FEN),
            c.int_in(s.get("max_fen"), "filter.spend.max_fen", -MAX_FEN, MAX_FEN),
            c.int_in(s.get("within_days"), "filter.spend.within_days", 1, MAX_DAYS),
        )
        if sp.min_fen is None and sp.max_fen is None:
            c.bad("filter.spend", "give min_fen and/or max_fen")
        elif sp.min_fen is not None and sp.max_fen is not None and sp.min_fen > sp.max_fen:
            c.bad("filter.spend.max_fen", "must not be below min_fen")
        out["spend"] = sp
    if (
        "last_order" in d
        and (
            lo := c.obj(d["last_order"], "filter.last_order", ("within_days", "over_days", "never"))
        )
        is not None
    ):
        given = [k for k in ("within_days", "over_days", "never") if lo.get(k) is not None]
        if len(given) != 1:
            c.bad("filter.last_order", "give exactly one of within_days, over_days, never")
        never = lo.get("never", False)
        if never is not None and never is not True and never is not False:
            c.bad("filter.last_order.never", "must be true")
        elif never is False and given == ["never"]:
            c.bad("filter.last_order.never", "must be true (leave last_order out instead)")
        out["last_order"] = LastOrder(
            c.int_in(lo.get("within_days"), "filter.last_order.within_days", 1, MAX_DAYS),
            c.int_in(lo.get("over_days"), "filter.last_order.over_days", 1, MAX_DAYS),
            bool(never),
        )
    if (
        "order_count" in d
        and (oc := c.obj(d["order_count"], "filter.order_count", ("min", "max", "within_days")))
        is not None
    ):
        cnt = OrderCount(
            c.int_in(oc.get("min"), "filter.order_count.min", 0, MAX_FEN),
            c.int_in(oc.get("max"), "filter.order_count.max", 0, MAX_FEN),
            c.int_in(oc.get("within_days"), "filter.order_count.within_days", 1, MAX_DAYS),
        )
        if cnt.min is None and cnt.max is None:
            c.bad("filter.order_count", "give min and/or max")
        elif cnt.min is not None and cnt.max is not None and cnt.min > cnt.max:
            c.bad("filter.order_count.max", "must not be below min")
        out["order_count"] = cnt
    if "birthday_month" in d:
        months = d["birthday_month"]
        if not isinstance(months, list) or not 1 <= len(months) <= 12:
            c.bad("filter.birthday_month", "must be a list of 1-12 months")
        else:
            for i, m in enumerate(months):
                if type(m) is not int or not 1 <= m <= 12:
                    c.bad(f"filter.birthday_month[{i}]", "must be a month number 1-12")
            out["birthday_month"] = tuple(sorted({m for m in months if type(m) is int}))
    if "joined" in d and (j := c.obj(d["joined"], "filter.joined", ("from", "to"))) is not None:
        jn = Joined(
            c.instant(j.get("from"), "filter.joined.from"),
            c.instant(j.get("to"), "filter.joined.to"),
        )
        if jn.start is None and jn.end is None and not c.problems:
            c.bad("filter.joined", "give from and/or to")
        elif jn.start and jn.end and jn.end <= jn.start:
            c.bad("filter.joined.to", "must be after from")
        out["joined"] = jn
    if c.problems:
        raise FilterInvalid(c.problems)
    return Filter(**out, document=dict(d))
