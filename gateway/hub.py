"""The composition object every entry point shares: settings, database, rules and auth cache.

The ASGI app, the CLI and the demo each build one :class:`Hub`; GraphQL resolvers reach it through
the request context. Keeping these together means one place decides how a tenant's hashing key is
derived and how long a verified API key is trusted without asking the database again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from gateway import identifiers
from gateway.auth import authenticate
from gateway.rules.manager import RuleRegistry, load_rules
from gateway.settings import Settings
from gateway.storage.db import Database
from gateway.tenancy import Principal

AUTH_CACHE_TTL_SECONDS = 30.0
"""How long a verified key is trusted in-process. Revoking a key therefore takes effect within
this many seconds on every worker (a deliberate trade: authentication costs two statements, which
would otherwise dominate a small query)."""

_AUTH_CACHE_MAX = 10_000


@dataclass
class AuthCache:
    """Verified API keys by the SHA-256 of the key, with a short TTL.

    Only successful verifications are cached: an unknown key always reaches the database, so a
    key created a moment ago works at once, and failures cannot fill the cache.
    """

    ttl: float = AUTH_CACHE_TTL_SECONDS
    _entries: dict[str, tuple[float, Principal]] = field(default_factory=dict)

    def get(self, digest: str) -> Principal | None:
        hit = self._entries.get(digest)
        if hit is None:
            return None
        expires, principal = hit
        if expires < time.monotonic():
            self._entries.pop(digest, None)
            return None
        return principal

    def put(self, digest: str, principal: Principal) -> None:
        if len(self._entries) >= _AUTH_CACHE_MAX:
            now = time.monotonic()
            for k in [k for k, (exp, _) in self._entries.items() if exp < now]:
                del self._entries[k]
            if len(self._entries) >= _AUTH_CACHE_MAX:
                self._entries.clear()
        self._entries[digest] = (time.monotonic() + self.ttl, principal)

    def clear(self) -> None:
        self._entries.clear()


class Hub:
    """Settings + database + rule registry + auth cache for one process."""

    def __init__(
        self,
        settings: Settings,
        database: Database | None = None,
        rules: RuleRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.db = database if database is not None else Database.from_settings(settings)
        self._rules = rules
        self.auth_cache = AuthCache()
        self._tenant_keys: dict[uuid.UUID, bytes] = {}
        self._sync: Any = None
        self.background: set[asyncio.Task[Any]] = set()

    @property
    def rules(self) -> RuleRegistry:
        """Installed rule plugins, discovered once (entry points are read on first use)."""
        if self._rules is None:
            self._rules = load_rules()
        return self._rules

    @property
    def sync(self) -> Any:
        """The process's :class:`~gateway.sync.runner.SyncRunner` (connectors load on first use;
        embedders and tests may assign their own runner)."""
        if self._sync is None:
            from gateway.sync.runner import SyncRunner

            self._sync = SyncRunner(self)
        return self._sync

    @sync.setter
    def sync(self, runner: Any) -> None:
        self._sync = runner

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a background task (a sync started over the API) until it ends."""
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def tenant_key(self, tenant_id: uuid.UUID) -> bytes:
        """The tenant's identifier-hashing key (derived, never stored; memoised per process)."""
        key = self._tenant_keys.get(tenant_id)
        if key is None:
            key = identifiers.tenant_key(self.settings.secret_key, tenant_id)
            self._tenant_keys[tenant_id] = key
        return key

    async def authenticate(self, plaintext: str) -> Principal | None:
        """The principal for a bearer key, served from the short-lived cache when possible."""
        digest = hashlib.sha256(plaintext.strip().encode()).hexdigest()
        principal = self.auth_cache.get(digest)
        if principal is not None:
            return principal
        principal = await authenticate(self.db, plaintext)
        if principal is not None:
            self.auth_cache.put(digest, principal)
        return principal

    async def close(self) -> None:
        # A sync cut short by shutdown ends "failed" with its bookmarks kept; the next resumes.
        for task in list(self.background):
            task.cancel()
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        await self.db.dispose()
