"""Per-request DataLoaders over the services' batch reads: one statement per relation per tick.

Every loader wraps a ``gateway`` batch function (``members.get_members``,
``ledger.balances_for``, ``orders.latest_orders_for``, ...). Field resolvers call :func:`peek`:
when a parent list resolver has already primed the loader (see ``schema.lookahead``) the value
comes back synchronously, so a page of 100 members does not create 100 awaitables per relation —
per-item async resolution roughly doubles the cost of a list in graphql-core.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from strawberry.dataloader import DataLoader

from gateway import ledger, members, orders
from gateway.ledger.models import BalanceView

if TYPE_CHECKING:
    from schema.context import RequestContext

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def peek(loader: DataLoader[K, V], key: K) -> V | Awaitable[V]:
    """The loaded value when it is already in the loader's cache, else the pending load."""
    fut = loader.cache_map.get(key)
    if fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None:
        return fut.result()
    return loader.load(key)


def _by_key(
    fn: Callable[..., Awaitable[dict[Any, Any]]],
    ctx: RequestContext,
    default: Callable[[], Any],
    **kwargs: Any,
) -> Callable[[list[Any]], Awaitable[list[Any]]]:
    """A batch function: one service call for all keys, answers in key order."""

    async def load(keys: list[Any]) -> list[Any]:
        found = await ctx.read(fn, keys, **kwargs)
        return [found.get(k, default()) if default is not None else found.get(k) for k in keys]

    return load


def _none() -> None:
    return None


def _empty() -> list[Any]:
    return []


class Loaders:
    """The loaders of one request. Parametrised loaders (balances per expiry window, latest orders
    per limit, history pages) are created on first use and keyed by their parameters."""

    def __init__(self, ctx: RequestContext) -> None:
        self._ctx = ctx
        self.member: DataLoader[uuid.UUID, members.MemberRow | None] = DataLoader(
            _by_key(members.get_members, ctx, _none)
        )
        self.identities: DataLoader[uuid.UUID, list[members.IdentityRow]] = DataLoader(
            _by_key(members.identities_for, ctx, _empty)
        )
        self.attributes: DataLoader[uuid.UUID, list[members.AttributeRow]] = DataLoader(
            _by_key(members.attributes_for, ctx, _empty)
        )
        self.merges: DataLoader[uuid.UUID, list[members.MergeInfo]] = DataLoader(
            _by_key(members.merges_for, ctx, _empty)
        )
        self.order: DataLoader[uuid.UUID, Any] = DataLoader(_by_key(orders.get_orders, ctx, _none))
        self.lines: DataLoader[uuid.UUID, list[Any]] = DataLoader(
            _by_key(orders.lines_for, ctx, _empty)
        )
        self.hold: DataLoader[uuid.UUID, ledger.HoldResult | None] = DataLoader(
            _by_key(ledger.get_holds, ctx, _none)
        )
        self.transfer: DataLoader[uuid.UUID, ledger.TransferResult | None] = DataLoader(
            _by_key(ledger.get_transfers, ctx, _none)
        )
        self._balances: dict[int, DataLoader[uuid.UUID, list[BalanceView]]] = {}
        self._latest: dict[int, DataLoader[uuid.UUID, list[Any]]] = {}
        self._history: dict[tuple[str | None, int, Any], DataLoader[uuid.UUID, list[Any]]] = {}
        self._named: dict[Hashable, Any] = {}

    def named(self, key: Hashable, factory: Callable[[RequestContext], V]) -> V:
        """A loader (or any per-request memo) owned by a feature module, e.g. the tier loader of
        ``schema.rules``: created by ``factory(ctx)`` on first use, then the same object for
        the rest of the request (and dropped with the others after a write)."""
        found = self._named.get(key)
        if found is None:
            found = self._named[key] = factory(self._ctx)
        return found  # type: ignore[no-any-return]

    def balances(self, days: int) -> DataLoader[uuid.UUID, list[BalanceView]]:
        loader = self._balances.get(days)
        if loader is None:
            ctx, window = self._ctx, timedelta(days=days)

            async def load(keys: list[uuid.UUID]) -> list[list[BalanceView]]:
                found = await ctx.read(ledger.balances_for, keys, expiring_within=window)
                return [
                    [found.get((k, a)) or BalanceView(k, a, 0, 0, 0, None) for a in ledger.ACCOUNTS]
                    for k in keys
                ]

            loader = self._balances[days] = DataLoader(load)
        return loader

    def latest_orders(self, limit: int) -> DataLoader[uuid.UUID, list[Any]]:
        loader = self._latest.get(limit)
        if loader is None:
            loader = self._latest[limit] = DataLoader(
                _by_key(orders.latest_orders_for, self._ctx, _empty, limit_per_member=limit)
            )
        return loader

    def history(
        self, account: str | None, first: int, before: datetime | uuid.UUID | None
    ) -> DataLoader[uuid.UUID, list[Any]]:
        """Transfers newest first, ``first + 1`` per member (the extra one flags a next page)."""
        key = (account, first, before)
        loader = self._history.get(key)
        if loader is None:
            loader = self._history[key] = DataLoader(
                _by_key(
                    ledger.transfers_for,
                    self._ctx,
                    _empty,
                    account=account,
                    limit_per_member=first + 1,
                    before=before,
                )
            )
        return loader


async def prime(
    loader: DataLoader[K, V], keys: Sequence[K], batch: Callable[[list[K]], Awaitable[list[V]]]
) -> None:
    """Load ``keys`` with one call of ``batch`` and store the answers in ``loader``'s cache."""
    missing = [k for k in dict.fromkeys(keys) if loader.cache_map.get(k) is None]
    if missing:
        values = await batch(missing)
        loader.prime_many(dict(zip(missing, values, strict=True)))


def batch_of(loader: DataLoader[K, V]) -> Callable[[list[K]], Awaitable[list[V]]]:
    return loader.load_fn  # type: ignore[return-value]


def unique(ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(ids))
