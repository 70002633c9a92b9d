"""A synthetic, deterministic world of shoppers for the fake platforms, the kit, the demo and
the backfill benchmark.

One :class:`World` holds people (each with a phone and a stable id on every channel they use)
and their orders and refunds on each channel. Every fake platform renders *its* slice of the same
world in its own wire format, so a test can assert that one person who bought on Tmall, in the
mini-program and in a store ends up as one member, and compare a sync's result with the truth.

Generation is seeded and cheap (a 200k-order world builds in a couple of seconds) and the world
can :meth:`World.touch` orders and add new ones to exercise incremental syncs.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

CHANNELS = ("tmall", "jd", "douyin", "youzan", "wechat", "pos")
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"
_CITIES = ("上海", "杭州", "北京", "广州", "深圳", "成都", "苏州", "南京")
_PRODUCTS = (
    ("TEA-LJ-250", "龙井 250g", "tea", 16800),
    ("TEA-PE-357", "普洱饼 357g", "tea", 29900),
    ("TEA-BL-100", "白茶 100g", "tea", 9900),
    ("CUP-GL-01", "玻璃杯", "teaware", 4500),
    ("POT-ZS-02", "紫砂壶", "teaware", 38800),
    ("SNK-MO-12", "抹茶曲奇 12枚", "snacks", 3600),
    ("GFT-BX-01", "节日礼盒", "gifts", 58800),
)
# Mobile prefixes libphonenumber accepts for mainland China (a random 1xx is often invalid).
_MOBILE = tuple(f"13{d}" for d in range(10)) + tuple(
    f"1{p}" for p in "50 51 52 55 57 58 59 80 81 82 85 86 87 88 89".split()
)
_STORES = ("SH001", "SH002", "HZ001", "BJ003")
_GUIDES = ("G001", "G002", "G017", "G042", None)


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


@dataclass
class Person:
    """One real shopper. Channel ids are stable functions of the person's index and the seed."""

    index: int
    phone: str  # national form, as platforms return it: "13812345678"
    name: str
    birthday: date | None
    city: str
    channels: tuple[str, ...]
    seed: int = 0

    def _id(self, kind: str, n: int = 24) -> str:
        return _hex(f"{self.seed}:{kind}:{self.index}", n)

    # Stable per-channel identifiers (each platform exposes its own subset).
    @property
    def wechat_unionid(self) -> str:
        return "o6_b" + self._id("unionid", 24)

    @property
    def wechat_openid(self) -> str:
        return "oQ9m" + self._id("openid", 24)

    @property
    def tmall_ouid(self) -> str:
        return "AAH" + self._id("ouid", 21)

    @property
    def tmall_open_uid(self) -> str:
        return "AAE" + self._id("open_uid", 21)

    @property
    def tmall_omid(self) -> str:
        return "om" + self._id("omid", 22)

    @property
    def douyin_open_id(self) -> str:
        return "dy" + self._id("dy_open", 26)

    @property
    def douyin_union_id(self) -> str:
        return "du" + self._id("dy_union", 26)

    @property
    def jd_open_id(self) -> str:
        return "jd" + self._id("jd_open", 26)

    @property
    def youzan_open_id(self) -> str:
        return "yz" + self._id("yz_open", 22)

    @property
    def pos_card(self) -> str:
        return f"8{self.index:09d}"

    @property
    def masked_phone(self) -> str:
        return f"{self.phone[:3]}****{self.phone[-4:]}"


@dataclass
class Line:
    sku: str
    name: str
    category: str
    quantity: int
    unit_fen: int

    @property
    def amount_fen(self) -> int:
        return self.quantity * self.unit_fen


@dataclass
class Refund:
    refund_id: str
    amount_fen: int
    at: datetime


@dataclass
class WorldOrder:
    """An order as it really happened; ``status`` is canonical (created / paid / completed /
    cancelled). ``receiver_phone`` differs from the buyer's for gifts."""

    channel: str
    external_id: str
    person: Person
    created: datetime
    modified: datetime
    status: str
    lines: list[Line]
    paid_at: datetime | None
    receiver_phone: str
    store_code: str | None = None
    guide_code: str | None = None
    refunds: list[Refund] = field(default_factory=list)

    @property
    def total_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines)

    @property
    def paid_fen(self) -> int:
        return self.total_fen if self.status in ("paid", "completed") else 0

    @property
    def refunded_fen(self) -> int:
        return sum(r.amount_fen for r in self.refunds)


@dataclass
class World:
    seed: int
    start: datetime
    end: datetime
    people: list[Person]
    orders: dict[str, list[WorldOrder]]
    _rng: random.Random = field(repr=False, default_factory=random.Random)
    _serial: int = 0

    @classmethod
    def generate(
        cls,
        *,
        seed: int = 7,
        people: int = 50,
        orders: int = 200,
        channels: Sequence[str] = CHANNELS,
        start: datetime | None = None,
        days: int = 30,
        refund_rate: float = 0.05,
        gift_rate: float = 0.1,
    ) -> World:
        """``people`` shoppers spread over ``channels`` (most use two or three), ``orders``
        orders over ``days`` days ending at ``start + days``."""
        rng = random.Random(seed)
        start = start or datetime(2026, 10, 1, tzinfo=UTC)
        end = start + timedelta(days=days)
        persons: list[Person] = []
        for i in range(people):
            k = min(len(channels), 1 + int(rng.random() * 3))
            used = tuple(sorted(rng.sample(list(channels), k), key=list(channels).index))
            phone = f"{rng.choice(_MOBILE)}{rng.randrange(10**8):08d}"
            persons.append(
                Person(
                    index=i,
                    phone=phone,
                    name=rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(("", *_GIVEN)),
                    birthday=date(
                        1970 + rng.randrange(35), 1 + rng.randrange(12), 1 + rng.randrange(28)
                    )
                    if rng.random() < 0.7
                    else None,
                    city=rng.choice(_CITIES),
                    channels=used,
                    seed=seed,
                )
            )
        world = cls(seed, start, end, persons, {c: [] for c in channels}, rng)
        for _ in range(orders):
            world._new_order(rng.uniform(0, days * 86400), gift_rate, refund_rate)
        for lst in world.orders.values():
            lst.sort(key=lambda o: (o.modified, o.external_id))
        return world

    def _new_order(self, offset_s: float, gift_rate: float, refund_rate: float) -> WorldOrder:
        rng = self._rng
        person = rng.choice(self.people)
        channel = rng.choice(person.channels)
        self._serial += 1
        created = (self.start + timedelta(seconds=offset_s)).replace(microsecond=0)
        lines = [
            Line(sku, name, cat, 1 + int(rng.random() * 2.5), price)
            for sku, name, cat, price in rng.sample(_PRODUCTS, 1 + int(rng.random() * 2.2))
        ]
        roll = rng.random()
        status = (
            "completed"
            if roll < 0.55
            else "paid"
            if roll < 0.9
            else "cancelled"
            if roll < 0.96
            else "created"
        )
        paid_at = (
            created + timedelta(seconds=rng.randrange(5, 600))
            if status in ("paid", "completed")
            else None
        )
        modified = (paid_at or created) + timedelta(seconds=rng.randrange(0, 3600))
        modified = min(modified, self.end - timedelta(seconds=1))
        order = WorldOrder(
            channel=channel,
            external_id=self._external_id(channel),
            person=person,
            created=created,
            modified=max(modified, created),
            status=status,
            lines=lines,
            paid_at=paid_at,
            receiver_phone=person.phone
            if rng.random() >= gift_rate
            else f"{rng.choice(_MOBILE)}{rng.randrange(10**8):08d}",
            store_code=rng.choice(_STORES) if channel == "pos" else None,
            guide_code=rng.choice(_GUIDES) if channel == "pos" else None,
        )
        if status in ("paid", "completed") and rng.random() < refund_rate:
            line = order.lines[0]
            at = min(
                self.end - timedelta(seconds=1),
                order.modified + timedelta(hours=rng.randrange(1, 48)),
            )
            order.refunds.append(Refund(f"RF{order.external_id}", line.unit_fen, at))
            order.modified = max(order.modified, at)
        self.orders[channel].append(order)
        return order

    def _external_id(self, channel: str) -> str:
        """Numeric on platforms whose ids are numbers (no leading zero), prefixed elsewhere."""
        prefix = self._external_prefix(channel)
        if not prefix:
            return f"{self.seed % 9 + 1}{self._serial:011d}"
        return f"{prefix}{self.seed:02d}{self._serial:010d}"

    @staticmethod
    def _external_prefix(channel: str) -> str:
        return {"tmall": "", "jd": "", "douyin": "", "youzan": "E", "wechat": "WX", "pos": "R"}.get(
            channel, channel[:2].upper()
        )

    def people_on(self, channel: str) -> list[Person]:
        return [p for p in self.people if channel in p.channels]

    def touch(self, at: datetime, *, new: int = 5, pay: int = 3) -> list[WorldOrder]:
        """Simulate activity at ``at``: pay some unpaid orders and add ``new`` orders, all
        modified at ``at`` (so an incremental sync after ``at`` must pick up exactly these)."""
        at = at.replace(microsecond=0)
        changed: list[WorldOrder] = []
        for lst in self.orders.values():
            for o in lst:
                if pay and o.status == "created":
                    o.status, o.paid_at, o.modified = "paid", at, at
                    changed.append(o)
                    pay -= 1
        self.end = max(self.end, at + timedelta(seconds=1))
        for _ in range(new):
            o = self._new_order((at - self.start).total_seconds(), 0.0, 0.0)
            o.created = o.modified = at
            if o.paid_at is not None:
                o.paid_at = at
            o.refunds.clear()
            changed.append(o)
        for lst in self.orders.values():
            lst.sort(key=lambda o: (o.modified, o.external_id))
        return changed

    def all_orders(self) -> Iterable[WorldOrder]:
        for lst in self.orders.values():
            yield from lst
