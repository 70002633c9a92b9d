"""The mall catalog: parsed and validated from the ``mall`` section of a tenant's rule config.

The catalog is configuration (versioned and audited with the rules, priced per tier); only the
stock counter is mutable state (``gateway/mall/stock.py``)::

    mall:
      payment_minutes: 15          # how long a points + cash / cash exchange waits for payment
      rewards:
        - code: MUG                # unique; what redemptions and stock refer to
          title: Ceramic mug
          kind: physical           # a registered reward kind (coupon, gift, physical, …)
          item: MUG-2026           # the fulfilling system's code (default: code)
          stock: 100               # omit for unlimited
          per_member: 2            # per member, ever
          per_period: 1            # per member per `period` (day | week | month | year)
          period: month
          valid_from: 2026-01-01T00:00:00+08:00
          valid_until: 2026-12-31T23:59:59+08:00
          tiers: [gold, platinum]  # only these tiers may exchange it
          options:
            points: {points: 2000, tier_prices: {gold: {points: 1800}}}
            points_cash: {points: 1000, cash_fen: 1990}
            cash: {cash_fen: 5990}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.rules.hookspecs import ExchangeMode
from gateway.rules.manager import RuleRegistry

MODES: tuple[ExchangeMode, ...] = ("points", "points_cash", "cash")
PERIODS = ("day", "week", "month", "year")
_REWARD_KEYS = {
    "code",
    "title",
    "kind",
    "item",
    "stock",
    "per_member",
    "per_period",
    "period",
    "valid_from",
    "valid_until",
    "tiers",
    "options",
    "description",
}


@dataclass(frozen=True)
class Price:
    points: int = 0
    cash_fen: int = 0
    tier_prices: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def for_tier(self, tier: str | None) -> tuple[int, int]:
        if tier is not None and tier in self.tier_prices:
            return self.tier_prices[tier]
        return self.points, self.cash_fen


@dataclass(frozen=True)
class Reward:
    code: str
    title: str
    kind: str
    item: str
    options: Mapping[str, Price]
    stock: int | None = None
    per_member: int | None = None
    per_period: int | None = None
    period: str = "month"
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    tiers: tuple[str, ...] | None = None
    description: str = ""

    @property
    def reward_ref(self) -> str:
        return f"{self.kind}:{self.item}"


@dataclass(frozen=True)
class Catalog:
    rewards: Mapping[str, Reward] = field(default_factory=dict)
    payment_minutes: int = 15

    def get(self, code: str) -> Reward | None:
        return self.rewards.get(code)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _when(raw: Any, path: str, problems: list[tuple[str, str]]) -> datetime | None:
    if raw is None:
        return None
    try:
        value = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    except ValueError:
        problems.append((path, f"not an ISO datetime: {raw!r}"))
        return None
    if value.tzinfo is None:
        problems.append((path, "needs a timezone offset, e.g. 2026-01-01T00:00:00+08:00"))
        return None
    return value


def _price(
    mode: str, raw: Any, path: str, tiers: list[str], problems: list[tuple[str, str]]
) -> Price | None:
    if not isinstance(raw, Mapping):
        problems.append((path, "must be a mapping {points, cash_fen, tier_prices}"))
        return None
    before = len(problems)
    unknown = set(raw) - {"points", "cash_fen", "tier_prices"}
    if unknown:
        problems.append((path, f"unknown keys {sorted(unknown)}"))

    def pair(src: Mapping[str, Any], where: str) -> tuple[int, int]:
        points, cash = src.get("points", 0), src.get("cash_fen", 0)
        for name, v in (("points", points), ("cash_fen", cash)):
            if not _int(v) or v < 0:
                problems.append((f"{where}.{name}", f"must be a non-negative integer, got {v!r}"))
        if not (_int(points) and _int(cash)):
            return 0, 0
        if mode == "points" and (points <= 0 or cash != 0):
            problems.append((where, "all-points: points > 0 and no cash_fen"))
        if mode == "points_cash" and (points <= 0 or cash <= 0):
            problems.append((where, "points + cash: both points > 0 and cash_fen > 0"))
        if mode == "cash" and (cash <= 0 or points != 0):
            problems.append((where, "cash: cash_fen > 0 and no points"))
        return points, cash

    base = pair(raw, path)
    tier_prices: dict[str, tuple[int, int]] = {}
    for tier, tp in (raw.get("tier_prices") or {}).items():
        where = f"{path}.tier_prices.{tier}"
        if tier not in tiers:
            problems.append((where, f"unknown tier {tier!r} (tiers: {', '.join(tiers) or 'none'})"))
            continue
        if not isinstance(tp, Mapping):
            problems.append((where, "must be a mapping {points, cash_fen}"))
            continue
        tier_prices[tier] = pair({"points": base[0], "cash_fen": base[1], **tp}, where)
    if len(problems) > before:
        return None
    return Price(base[0], base[1], tier_prices)


def parse_catalog(
    raw: Any, registry: RuleRegistry, tiers: list[str]
) -> tuple[Catalog | None, list[tuple[str, str]]]:
    """The catalog in ``raw`` (the config's ``mall`` section) and every problem found."""
    problems: list[tuple[str, str]] = []
    if raw is None:
        return None, problems
    if not isinstance(raw, Mapping):
        return None, [("mall", "must be a mapping {payment_minutes, rewards}")]
    extra = set(raw) - {"payment_minutes", "rewards"}
    if extra:
        problems.append(("mall", f"unknown keys {sorted(extra)}"))
    minutes = raw.get("payment_minutes", 15)
    if not _int(minutes) or not 1 <= minutes <= 24 * 60:
        problems.append(("mall.payment_minutes", "must be 1..1440"))
    rewards: dict[str, Reward] = {}
    items = raw.get("rewards") or []
    if not isinstance(items, list):
        return None, [*problems, ("mall.rewards", "must be a list")]
    for i, item in enumerate(items):
        path = f"mall.rewards[{i}]"
        reward = _reward(item, path, registry, tiers, problems)
        if reward is None:
            continue
        if reward.code in rewards:
            problems.append((f"{path}.code", f"duplicate reward code {reward.code!r}"))
            continue
        rewards[reward.code] = reward
    if problems:
        return None, problems
    return Catalog(rewards, minutes), problems


def _reward(
    item: Any, path: str, registry: RuleRegistry, tiers: list[str], problems: list[tuple[str, str]]
) -> Reward | None:
    if not isinstance(item, Mapping):
        problems.append((path, "must be a mapping"))
        return None
    before = len(problems)
    unknown = set(item) - _REWARD_KEYS
    if unknown:
        problems.append((path, f"unknown keys {sorted(unknown)}"))
    code = item.get("code")
    if not isinstance(code, str) or not 1 <= len(code) <= 64:
        problems.append((f"{path}.code", "a 1-64 character code is required"))
    title = item.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append((f"{path}.title", "a title is required"))
    kind = item.get("kind")
    if kind not in registry.reward_kinds:
        known = ", ".join(sorted(registry.reward_kinds))
        problems.append((f"{path}.kind", f"unknown reward kind {kind!r} (known: {known})"))
    for name in ("stock", "per_member", "per_period"):
        v = item.get(name)
        if v is not None and (not _int(v) or v < (0 if name == "stock" else 1)):
            problems.append(
                (
                    f"{path}.{name}",
                    "must be a non-negative integer"
                    if name == "stock"
                    else "must be a positive integer",
                )
            )
    period = item.get("period", "month")
    if period not in PERIODS:
        problems.append((f"{path}.period", f"must be one of {', '.join(PERIODS)}"))
    start = _when(item.get("valid_from"), f"{path}.valid_from", problems)
    end = _when(item.get("valid_until"), f"{path}.valid_until", problems)
    if start and end and end <= start:
        problems.append((f"{path}.valid_until", "must be after valid_from"))
    allowed = item.get("tiers")
    if allowed is not None:
        if not isinstance(allowed, list) or not all(t in tiers for t in allowed):
            problems.append(
                (f"{path}.tiers", f"must list known tiers ({', '.join(tiers) or 'none'})")
            )
    raw_options = item.get("options")
    options: dict[str, Price] = {}
    if not isinstance(raw_options, Mapping) or not raw_options:
        problems.append((f"{path}.options", "needs at least one of points, points_cash, cash"))
    else:
        for mode, raw in raw_options.items():
            if mode not in MODES:
                problems.append(
                    (f"{path}.options.{mode}", f"unknown mode (modes: {', '.join(MODES)})")
                )
                continue
            price = _price(mode, raw, f"{path}.options.{mode}", tiers, problems)
            if price is not None:
                options[mode] = price
    if len(problems) > before:
        return None
    return Reward(
        code=code,
        title=title.strip(),
        kind=kind,
        item=str(item.get("item") or code),
        options=options,
        stock=item.get("stock"),
        per_member=item.get("per_member"),
        per_period=item.get("per_period"),
        period=period,
        valid_from=start,
        valid_until=end,
        tiers=tuple(allowed) if allowed is not None else None,
        description=str(item.get("description") or ""),
    )
