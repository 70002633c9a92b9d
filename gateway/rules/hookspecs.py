"""The rule-plugin contract: pluggy project ``memberhub``, three hooks, pure rule sets per slot.

A rule plugin is any importable module or object registered under the ``memberhub.rules``
entry-point group that implements one or more of the hooks in :class:`RuleSpecs` with the
``hookimpl`` marker below. The gateway never imports a plugin by name: it loads entry points,
then dispatches per tenant to the rule sets that tenant's stored config enables
(:mod:`gateway.rules.config`).

Rule sets are **pure**: a frozen :class:`MemberSnapshot`, an :class:`EventView` and the tenant's
validated config for the rule set in, intents out, no I/O. Purity is what makes replaying an
event safe, a dry run trivial and plugin tests fast; the gateway turns intents into idempotent
ledger writes and grants itself. Each slot asks a different question (see ``plugins/README.md``):

========  =========  ======================================================================
slot      kind       a rule set in it provides
========  =========  ======================================================================
tiers     exclusive  ``policy(config) -> TierPolicy`` (levels, keep-level, downgrade)
expiry    exclusive  ``expires_at(earned_at, account, timezone, config) -> datetime | None``
earning   additive   ``evaluate(snapshot, event, config) -> [Intent | Grant]``
tasks     additive   ``tasks(config) -> [TaskDef]`` (the gateway's task engine runs them)
exchange  additive   ``quote(snapshot, quote, config) -> Quote`` (price / eligibility)
benefits  additive   ``evaluate(snapshot, event, config) -> [Intent | Grant]``, with
                     ``priority`` and ``stacking``
========  =========  ======================================================================
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

import pluggy

PROJECT = "memberhub"
ENTRY_POINT_GROUP = "memberhub.rules"
SLOTS = ("tiers", "expiry", "earning", "tasks", "exchange", "benefits")
"""Every slot, in the order the engine runs them for an event (tiers last, after the writes)."""
EXCLUSIVE_SLOTS = frozenset({"tiers", "expiry"})
"""At most one rule set per tenant may fill these; the others are additive."""
STACKING = ("stack", "exclusive")
"""Benefit stacking policies: ``stack`` always applies; of the ``exclusive`` benefit rule sets
that answer one event, only the one with the highest priority applies."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Intent:
    """What a rule wants to happen: credit ``amount`` (> 0) to ``account`` for ``reason``.

    ``rule`` names the rule that produced it (ledger lines show it as their source and reason);
    together with the event id and the account it forms the idempotency key of the resulting
    ledger write, so a rule set must not emit two intents with the same ``(rule, account)`` for
    one event.
    """

    account: str
    amount: int
    reason: str
    rule: str
    kind: str = "earn"


@dataclass(frozen=True)
class Grant:
    """Give the member ``quantity`` of a reward (a coupon, a gift, a plugin-defined kind).

    ``reward`` is ``"<kind>:<code>"`` where kind is a registered reward kind (``coupon``,
    ``gift``, ``physical`` or one a plugin registers with ``register_reward_kinds``) and code
    names the item in the brand's systems (a coupon template, a gift SKU). Grants are recorded
    per member, idempotently per (event, rule, reward), and fulfilled by the owning system.
    """

    reward: str
    reason: str
    rule: str
    quantity: int = 1

    @property
    def kind(self) -> str:
        return self.reward.split(":", 1)[0]

    @property
    def code(self) -> str:
        return self.reward.split(":", 1)[1] if ":" in self.reward else ""


Outcome = Intent | Grant


@dataclass(frozen=True)
class TierView:
    """The member's effective tier as rules see it (an active manual override wins)."""

    code: str
    name: str
    rank: int
    multiplier_pct: int = 100
    discount_bp: int = 10_000


@dataclass(frozen=True)
class MemberSnapshot:
    """What a rule may know about the member when the event is evaluated (read-only).

    ``balances`` maps account → available amount; ``timezone`` is the tenant's, for calendar
    rules (birthday, member day, "today"); ``tier`` is the effective tier (``None`` when the
    tenant runs no tier rule set); ``profile`` holds ``name``, ``gender``, ``birthday``,
    ``city`` (``None`` when unknown); ``at`` is when the question is asked — the event's
    ``occurred_at`` on the event path, the mall's "now" for exchange quotes — so calendar rules
    never read the wall clock (replays and dry runs stay deterministic).
    """

    member_id: uuid.UUID
    created_at: datetime
    balances: Mapping[str, int] = field(default_factory=dict)
    timezone: str = "Asia/Shanghai"
    tier: TierView | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)
    at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "balances", _frozen(self.balances))
        object.__setattr__(self, "profile", _frozen(self.profile))

    @property
    def birthday(self) -> date | None:
        value = self.profile.get("birthday")
        return value if isinstance(value, date) else None


@dataclass(frozen=True)
class EventView:
    """A member event as rules see it.

    Order events (``order.paid``) carry ``order_id``, ``channel``, ``external_id``, ``paid_fen``,
    ``total_fen``, ``store_code``, ``guide_code`` and ``lines`` (``sku``, ``category``,
    ``quantity``, ``amount_fen``) in ``payload``; see :data:`EVENT_TYPES` for the others.
    """

    id: uuid.UUID
    type: str
    member_id: uuid.UUID
    occurred_at: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "payload", _frozen(self.payload))

    @property
    def channel(self) -> str | None:
        value = self.payload.get("channel")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class EventType:
    """A member event type rules can react to. ``payload`` documents the keys it carries.

    ``recorded_by`` says which API scopes may record it through GraphQL ``recordActivity``:
    ``None`` — any writing scope (a check-in from the app); a tuple of scopes — only those (a
    referral is the brand backend's word, not a frontend's); ``()`` — only the gateway itself
    (a paid order, a join, a tier change: a frontend must never be able to fake them).
    """

    name: str
    description: str
    payload: Mapping[str, str] = field(default_factory=dict)
    recorded_by: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RewardKind:
    """A kind of reward the points mall can sell and benefits can grant.

    ``fulfilment`` says who delivers it: ``coupon`` (the coupon system issues it), ``ship``
    (a physical item the brand ships), ``store`` (collected in store) or ``plugin``.
    """

    name: str
    description: str
    fulfilment: str = "plugin"


# ---- tiers ---------------------------------------------------------------------------------

Period = Literal["calendar_year", "anniversary", "rolling"]
Downgrade = Literal["one_step", "recalculate"]
Measure = Literal["lifetime", "period"]


@dataclass(frozen=True)
class TierDef:
    """One level. ``threshold``: growth that reaches it; ``keep``: growth within a qualifying
    period that keeps it (defaults to ``threshold``). Benefits: ``multiplier_pct`` (points
    multiplier, 150 = ×1.5), ``discount_bp`` (price rate in basis points, 9_500 = 95 %),
    ``gifts`` granted on entering the tier (``"coupon:GOLD-WELCOME"``)."""

    code: str
    name: str
    threshold: int
    keep: int | None = None
    multiplier_pct: int = 100
    discount_bp: int = 10_000
    gifts: tuple[str, ...] = ()

    @property
    def keep_threshold(self) -> int:
        return self.threshold if self.keep is None else self.keep


@dataclass(frozen=True)
class TierPolicy:
    """A tenant's tier ladder and how it is kept.

    - ``measure``: what upgrades compare to thresholds — ``lifetime`` growth (the growth
      balance) or growth earned in the current qualifying ``period``;
    - ``period``: when keep-level (保级) is reviewed — ``calendar_year`` (every 1 January in the
      tenant's timezone, on that year's growth), ``anniversary`` (12 months after the tier was
      reached or last kept) or ``rolling`` (every ``months`` months, on the last ``months``);
    - ``downgrade``: a member who missed ``keep`` drops ``one_step`` or is ``recalculate``-d to
      the highest tier whose ``keep`` the period's growth meets.
    """

    tiers: tuple[TierDef, ...]
    measure: Measure = "period"
    period: Period = "calendar_year"
    months: int = 12
    downgrade: Downgrade = "one_step"


# ---- tasks ---------------------------------------------------------------------------------

TaskKind = Literal["checkin", "once", "count", "invite", "categories", "profile"]


@dataclass(frozen=True)
class StreakBonus:
    """Extra reward on the ``days``-th consecutive check-in day (and every ``days`` after, when
    ``repeat``)."""

    days: int
    points: int = 0
    growth: int = 0
    repeat: bool = False
    rewards: tuple[str, ...] = ()
    """Rewards granted with the bonus, ``"<kind>:<code>"`` (e.g. ``coupon:STREAK7``)."""


@dataclass(frozen=True)
class TaskDef:
    """A task the gateway's task engine tracks for every member (pure, see
    :mod:`gateway.rules.tasks`).

    ``kind`` decides what completes it:

    - ``checkin``: one ``task.checkin`` per tenant-local day; ``streak`` bonuses;
    - ``once``: the first ``event`` (e.g. ``wechat.followed``) ever;
    - ``count``: every ``event`` (e.g. ``community.posted``), within the limits;
    - ``invite``: an invitee's ``referral.joined`` (or ``referral.first_order`` when
      ``on="first_order"``), rewarded to the inviter;
    - ``categories``: ``order.paid`` covering ``categories`` distinct categories in one order
      (``window="order"``) or within the current ``period`` (``window="period"``);
    - ``profile``: ``member.profile_updated`` once every field in ``fields`` is set.

    Limits: ``per_day`` (tenant-local day), ``per_period`` (per ``period``: week/month/year),
    ``lifetime``. ``channels`` restricts which channels' events count (``None``: all).
    """

    code: str
    title: str
    kind: TaskKind
    points: int = 0
    growth: int = 0
    event: str | None = None
    per_day: int | None = None
    per_period: int | None = None
    period: Literal["week", "month", "year"] = "month"
    lifetime: int | None = None
    streak: tuple[StreakBonus, ...] = ()
    categories: int = 0
    window: Literal["order", "period"] = "order"
    fields: tuple[str, ...] = ()
    on: Literal["join", "first_order"] = "join"
    channels: tuple[str, ...] | None = None
    rewards: tuple[str, ...] = ()
    """Rewards granted on every completion besides points and growth, ``"<kind>:<code>"`` (a
    coupon template, a gift SKU): written as grants of ``<rule>.<task>`` and fulfilled like any
    grant (coupons and points at once)."""


# ---- exchange ------------------------------------------------------------------------------

ExchangeMode = Literal["points", "points_cash", "cash"]


@dataclass(frozen=True)
class Quote:
    """The price of one unit of a reward in one exchange mode for one member.

    The gateway starts from the catalog (per-tier price when the member's tier has one) and
    passes the quote through the tenant's exchange rule sets in priority order; a rule set may
    change the price or refuse with ``eligible=False`` and a ``reason`` the member will read.
    """

    reward: str
    mode: ExchangeMode
    points: int
    cash_fen: int
    eligible: bool = True
    reason: str | None = None
    rule: str | None = None
    tags: tuple[str, ...] = ()


@runtime_checkable
class RuleSet(Protocol):
    """A named, versioned rule set for one slot.

    Besides the slot's method (module docstring), a rule set may define ``description`` (shown
    to brand admins), ``config_schema`` (JSON Schema 2020-12 for its config, checked on save),
    ``check(config) -> list[str]`` (semantic errors, e.g. overlapping thresholds), and, for
    benefits, ``priority`` (default order; the config may override it) and ``stacking``.
    """

    name: str
    slot: str
    version: str


class RuleSpecs:
    """Hook specifications of the ``memberhub`` pluggy project (rule plugins)."""

    @hookspec
    def register_rule_sets(self) -> list[RuleSet]:  # type: ignore[empty-body]
        """Return the rule sets this plugin provides.

        Called once when the gateway loads plugins (``gateway.rules.manager.load_rules``). Each
        rule set needs a ``name`` unique across all installed plugins (it is what a tenant's
        config names and what ledger lines show as ``source="rule:<name>"``), a ``slot`` from
        :data:`SLOTS`, a ``version`` string and the slot's method. Installing a plugin enables
        nothing: each tenant chooses its rule sets in its rule config.
        """

    @hookspec
    def register_event_types(self) -> list[EventType]:  # type: ignore[empty-body]
        """Return the member event types this plugin's rules react to or emit, beyond the
        built-in :data:`EVENT_TYPES`.

        Activity recorded through GraphQL ``recordActivity`` (and ``memberhub`` events) must use
        a registered type, so a typo in a frontend is an error instead of a silently ignored
        event. Names are dotted lower-case words (``community.liked``).
        """

    @hookspec
    def register_reward_kinds(self) -> list[RewardKind]:  # type: ignore[empty-body]
        """Return the reward kinds this plugin adds to the built-in :data:`REWARD_KINDS`.

        The points mall catalog and ``Grant`` intents may only name registered kinds.
        """


EVENT_TYPES: tuple[EventType, ...] = (
    EventType(
        "order.paid",
        "An order was paid (recorded once per order by the orders module).",
        {
            "order_id": "uuid",
            "channel": "channel code",
            "external_id": "the channel's order id",
            "paid_fen": "int, amount paid in fen",
            "total_fen": "int",
            "store_code": "str | None",
            "lines": "[{sku, category, quantity, amount_fen}]",
        },
        recorded_by=(),
    ),
    EventType(
        "member.joined",
        "The member was created (first identifier seen); recorded for every new member.",
        {"channel": "", "scene": "{kind, ref} of the join scene, or null"},
        recorded_by=(),
    ),
    EventType(
        "member.profile_updated",
        "Profile fields changed.",
        {"channel": "", "fields": "names of the fields now set"},
    ),
    EventType("task.checkin", "Daily check-in from an app or mini-program.", {"channel": ""}),
    EventType("wechat.followed", "The member followed the official account.", {"channel": ""}),
    EventType("community.posted", "The member posted in the brand community.", {"channel": ""}),
    EventType(
        "referral.joined",
        "A member the subject invited joined (the subject is the inviter).",
        {"invitee_id": "uuid of the new member", "channel": ""},
        recorded_by=("admin", "connector"),
    ),
    EventType(
        "referral.first_order",
        "A member the subject invited paid a first order (the subject is the inviter).",
        {"invitee_id": "uuid", "order_id": "uuid", "channel": ""},
        recorded_by=("admin", "connector"),
    ),
    EventType(
        "tier.changed",
        "The member's tier changed (emitted by the gateway; benefits react to it).",
        {"from": "tier code or None", "to": "tier code", "change": "upgrade|downgrade|…"},
        recorded_by=(),
    ),
    EventType(
        "tier.kept",
        "A keep-level (保级) review kept the member's tier for another period.",
        {"from": "tier code", "to": "tier code", "change": "kept"},
        recorded_by=(),
    ),
    EventType(
        "member.birthday",
        "The member's birthday, today in the tenant's timezone (the scheduled triggers, once a "
        "year; 29 February birthdays on 28 February in non-leap years).",
        {"year": "int, the year of this birthday", "age": "int, the age reached"},
        recorded_by=(),
    ),
    EventType(
        "member.member_day",
        "The brand's monthly member day (会员日), today in the tenant's timezone (the scheduled "
        "triggers, once a month for every active member).",
        {"month": "YYYY-MM", "day": "int, the day of month"},
        recorded_by=(),
    ),
    EventType(
        "member.merged",
        "Another member record was merged into this one (ONE ID); the subject is the survivor.",
        {"merged_id": "uuid of the member merged in", "merge_id": "uuid of the merge record"},
        recorded_by=(),
    ),
    EventType(
        "member.unmerged",
        "A merge into this member was undone; the subject is the former survivor.",
        {"restored_id": "uuid of the member split off again", "merge_id": "uuid"},
        recorded_by=(),
    ),
    EventType(
        "points.changed",
        "The member's balance on a ledger account changed (earn, spend, hold, refund, expiry, "
        "adjustment). Not processed by rules.",
        {
            "account": "ledger account",
            "delta": "int, change of the available balance",
            "available": "int, available balance after the change",
            "kind": "what moved it: the transfer kind (earn, spend, reversal, adjust, capture, "
            "expire, merge_in, merge_out, …) or hold, release, hold_expired",
            "transfer_id": "uuid of the ledger transfer or hold",
        },
        recorded_by=(),
    ),
    EventType(
        "points.expiring",
        "Points will expire soon (the scheduled triggers, once per member per expiry date).",
        {
            "account": "ledger account",
            "amount": "int, points expiring on that date",
            "expires_at": "ISO datetime",
            "days_left": "int",
        },
        recorded_by=(),
    ),
    EventType(
        "member.dormant",
        "No purchase for the tenant's configured number of days (the scheduled triggers, once "
        "per dormant spell: a new order starts a new one).",
        {"days": "int, the configured threshold", "last_order_at": "ISO datetime"},
        recorded_by=(),
    ),
    EventType(
        "member.purchase_slowing",
        "The time since the member's last order exceeds their own usual interval between "
        "orders by the configured factor (the scheduled triggers, once per spell).",
        {
            "usual_interval_days": "number, the member's median interval",
            "days_since_last": "int",
            "last_order_at": "ISO datetime",
        },
        recorded_by=(),
    ),
    EventType(
        "coupon.issued",
        "A coupon was issued to the member. Not processed by rules.",
        {
            "coupon_id": "uuid",
            "template_code": "",
            "source": "who issued it (api, bulk job, rule, mall, …)",
            "valid_from": "ISO datetime",
            "valid_until": "ISO datetime",
        },
        recorded_by=(),
    ),
    EventType(
        "coupon.redeemed",
        "The member's coupon was used on an order. Not processed by rules.",
        {
            "coupon_id": "uuid",
            "template_code": "",
            "order_ref": "",
            "discount_fen": "int",
            "channel": "",
            "store_code": "str | None",
        },
        recorded_by=(),
    ),
    EventType(
        "coupon.returned",
        "A redeemed coupon was given back after its order was refunded.",
        {"coupon_id": "uuid", "template_code": "", "order_ref": ""},
        recorded_by=(),
    ),
    EventType(
        "coupon.expiring",
        "An unused coupon expires soon (the coupon sweeper, once per coupon).",
        {
            "coupon_id": "uuid",
            "template_code": "",
            "valid_until": "ISO datetime",
            "days_left": "int",
        },
        recorded_by=(),
    ),
    EventType(
        "coupon.expired",
        "An unused coupon expired (the coupon sweeper).",
        {"coupon_id": "uuid", "template_code": "", "valid_until": "ISO datetime"},
        recorded_by=(),
    ),
    EventType(
        "segment.entered",
        "The member entered a segment (built, refreshed, or added to a static one).",
        {"segment_id": "uuid", "segment_code": ""},
        recorded_by=(),
    ),
    EventType(
        "segment.left",
        "The member left a dynamic segment on refresh (or was removed from a static one).",
        {"segment_id": "uuid", "segment_code": ""},
        recorded_by=(),
    ),
)
"""Event types every deployment knows."""

REWARD_KINDS: tuple[RewardKind, ...] = (
    RewardKind("coupon", "A coupon from a template (code = template code).", "coupon"),
    RewardKind("gift", "A gift collected in store or sent with the next order.", "store"),
    RewardKind("physical", "A physical item shipped to the member's address.", "ship"),
    RewardKind("points", "Points credited to the member (code = amount).", "ledger"),
)
"""Reward kinds every deployment knows."""
