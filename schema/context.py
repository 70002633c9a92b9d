"""Per-request context: the principal, one lazily opened read transaction, and the DataLoaders.

Reads of one request share ONE tenant-scoped read transaction (opened on first use, closed when the
request ends): a member query then costs one pool checkout and one BEGIN, not one per relation.
DataLoader batches run as concurrent tasks, so statements on the shared connection are serialised
with a lock (a connection runs one statement at a time on every driver).

After a mutation commits, :meth:`RequestContext.after_write` drops the read transaction and the
loader caches so the payload is read fresh (SQLite snapshots start at the first read).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from strawberry.types import Info

from gateway.errors import PermissionDenied
from gateway.storage.db import Tx
from gateway.tenancy import Principal, Scope

if TYPE_CHECKING:
    from gateway.hub import Hub
    from schema.loaders import Loaders

P = ParamSpec("P")
R = TypeVar("R")


class RequestContext:
    """Everything a resolver needs for one HTTP request (``info.context``)."""

    def __init__(self, hub: Hub, principal: Principal) -> None:
        from schema.loaders import Loaders

        self.hub = hub
        self.principal = principal
        self.tenant_id: uuid.UUID = principal.tenant_id
        self._lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None
        self._tx: Tx | None = None
        self.loaders: Loaders = Loaders(self)

    async def read(self, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> R:
        """Run ``fn(tx, *args, **kwargs)`` on the request's shared read transaction."""
        async with self._lock:
            if self._tx is None:
                stack = AsyncExitStack()
                self._tx = await stack.enter_async_context(
                    self.hub.db.tenant_tx(self.tenant_id, write=False)
                )
                self._stack = stack
            return await fn(self._tx, *args, **kwargs)

    async def close(self) -> None:
        """End the read transaction (idempotent); the app calls this when the request ends."""
        async with self._lock:
            stack, self._stack, self._tx = self._stack, None, None
            if stack is not None:
                await stack.aclose()

    async def after_write(self) -> None:
        """Forget everything read so far: the next read sees the committed write."""
        from schema.loaders import Loaders

        await self.close()
        self.loaders = Loaders(self)

    def require(self, *scopes: Scope) -> None:
        """Raise :class:`PermissionDenied` unless the key has one of ``scopes`` (admin: all)."""
        if not self.principal.can(*scopes):
            needed = " or ".join(s.value for s in (Scope.ADMIN, *scopes))
            raise PermissionDenied(f"this API key needs the {needed} scope")


def ctx_of(info: Info) -> RequestContext:
    ctx = info.context
    assert isinstance(ctx, RequestContext)
    return ctx
