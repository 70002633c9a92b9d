"""Sending webhooks: the request each delivery becomes, and the dispatcher loop.

``Dispatcher.run_once()`` does one pass over the tenants: fan out every active subscription,
then claim, send and record due deliveries in rounds until none is due (each round sends at most
one delivery per member and subscription — the oldest pending one — so a member's events arrive
in order). ``Dispatcher.run()`` repeats passes every ``poll_interval`` seconds
(``memberhub webhooks deliver``).

The request: ``POST <url>`` with the JSON body ``{"id", "type", "occurred_at", "member_id",
"tenant", "payload"}`` (compact, UTF-8) and the headers ``X-Memberhub-Event`` (the type),
``X-Memberhub-Delivery`` (a stable id: the same on every retry and replay — receivers de-duplicate
on it) and ``X-Memberhub-Signature`` (see :mod:`gateway.webhooks.signing`). A 2xx answer is
success; anything else, a timeout or a connection error is a failed attempt. Redirects are not
followed (a receiver moving must update its subscription).

Failed attempts are retried durably (the delivery row's ``next_attempt_at``, with backoff), never
in a loop here — with one exception: a pooled keep-alive connection the receiver already closed
fails the request before the receiver saw it (``ServerDisconnectedError`` / connection reset).
That is our stale socket, not the receiver failing, so tenacity re-sends it at once on a fresh
connection (one extra try) instead of costing the member's queue a backoff period.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from gateway.storage.db import Database
from gateway.storage.types import utcnow
from gateway.webhooks import dispatch, signing, subscriptions
from gateway.webhooks.dispatch import DeliveryPolicy, Due

log = logging.getLogger("memberhub.webhooks")
STALE_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError)
"""A kept-alive socket the receiver had closed: re-sent at once on a new connection."""
USER_AGENT = "memberhub-webhooks/1"


def body_of(tenant_id: uuid.UUID, due: Due) -> bytes:
    d = due.delivery
    doc = {
        "id": str(d.event_id),
        "type": d.event_type,
        "occurred_at": due.occurred_at.isoformat(),
        "member_id": str(d.member_id),
        "tenant": str(tenant_id),
        "payload": due.payload,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def headers_for(secret: str, due: Due, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.EVENT_HEADER: due.delivery.event_type,
        signing.DELIVERY_HEADER: str(due.delivery.id),
        signing.HEADER: signing.sign(secret, body, timestamp),
    }


@dataclass
class PassStats:
    """What one pass did."""

    fanned_out: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0

    def add(self, other: PassStats) -> None:
        self.fanned_out += other.fanned_out
        self.delivered += other.delivered
        self.failed += other.failed
        self.dead += other.dead


@dataclass
class Dispatcher:
    """Fans out and delivers webhooks for some or all tenants."""

    db: Database
    master: bytes
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    session: aiohttp.ClientSession | None = None
    max_rounds: int = 1000

    async def run_once(self, tenant_ids: Iterable[uuid.UUID] | None = None) -> PassStats:
        """One pass: fan out and deliver everything due now (for ``tenant_ids``, default all)."""
        if tenant_ids is None:
            from gateway.tenants import list_tenants

            tenant_ids = [t.id for t in await list_tenants(self.db)]
        own = self.session is None
        session = self.session or aiohttp.ClientSession()
        try:
            total = PassStats()
            for tid in tenant_ids:
                total.add(await self._tenant_pass(session, tid))
            return total
        finally:
            if own:
                await session.close()

    async def run(
        self, tenant_ids: Iterable[uuid.UUID] | None = None, *, poll_interval: float = 2.0
    ) -> None:
        """Pass after pass until cancelled; a failing pass is logged and retried."""
        fixed = None if tenant_ids is None else list(tenant_ids)
        own = self.session is None
        if own:
            self.session = aiohttp.ClientSession()
        try:
            while True:
                try:
                    stats = await self.run_once(fixed)
                    if stats.fanned_out or stats.delivered or stats.failed:
                        log.info("webhooks: %s", stats)
                except Exception:
                    log.exception("webhook pass failed")
                await asyncio.sleep(poll_interval)
        finally:
            if own and self.session is not None:
                await self.session.close()
                self.session = None

    async def _tenant_pass(self, session: aiohttp.ClientSession, tid: uuid.UUID) -> PassStats:
        stats = PassStats()
        async with self.db.tenant_tx(tid, write=False) as tx:
            subs = await subscriptions.list_subscriptions(tx, active_only=True)
        for sub in subs:
            async with self.db.tenant_tx(tid) as tx:
                stats.fanned_out += await dispatch.fan_out(tx, sub.id, settle=self.policy.settle)
        secrets: dict[uuid.UUID, str] = {}
        for _ in range(self.max_rounds):
            async with self.db.tenant_tx(tid) as tx:
                due = await dispatch.claim_due(tx, policy=self.policy)
                missing = {d.delivery.subscription_id for d in due} - set(secrets)
                if missing:
                    secrets |= await subscriptions.signing_secrets(tx, self.master, missing)
            if not due:
                break
            results = await self._send_all(session, tid, secrets, due)
            async with self.db.tenant_tx(tid) as tx:
                now = utcnow()
                for d, ok, code, error in results:
                    status = await dispatch.record_result(
                        tx,
                        d.delivery,
                        ok=ok,
                        status_code=code,
                        error=error,
                        now=now,
                        policy=self.policy,
                    )
                    if ok:
                        stats.delivered += 1
                    else:
                        stats.failed += 1
                        if status == "dead":
                            stats.dead += 1
                            log.warning(
                                "webhook delivery %s to %s is dead after %d attempts: %s",
                                d.delivery.id,
                                d.url,
                                d.delivery.attempts + 1,
                                error,
                            )
        return stats

    async def _send_all(
        self,
        session: aiohttp.ClientSession,
        tid: uuid.UUID,
        secrets: dict[uuid.UUID, str],
        due: list[Due],
    ) -> list[tuple[Due, bool, int | None, str | None]]:
        gate = asyncio.Semaphore(self.policy.concurrency)

        async def one(d: Due) -> tuple[Due, bool, int | None, str | None]:
            async with gate:
                secret = secrets[d.delivery.subscription_id]
                return (d, *await self._send(session, tid, secret, d))

        return list(await asyncio.gather(*(one(d) for d in due)))

    async def _send(
        self, session: aiohttp.ClientSession, tid: uuid.UUID, secret: str, due: Due
    ) -> tuple[bool, int | None, str | None]:
        body = body_of(tid, due)
        headers = headers_for(secret, due, body, int(time.time()))
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(STALE_CONNECTION),
                stop=stop_after_attempt(2),
                reraise=True,
            ):
                with attempt:
                    async with session.post(
                        due.url,
                        data=body,
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
                        allow_redirects=False,
                    ) as resp:
                        await resp.read()
                        if 200 <= resp.status < 300:
                            return True, resp.status, None
                        return False, resp.status, f"HTTP {resp.status}"
            raise AssertionError("unreachable: tenacity re-raises the last error")
        except TimeoutError:
            return False, None, f"timeout after {self.policy.timeout:g} s"
        except aiohttp.ClientError as exc:
            return False, None, f"{type(exc).__name__}: {exc}"[:500]


async def deliver_once(
    db: Database,
    master: bytes,
    tenant_ids: Iterable[uuid.UUID] | None = None,
    *,
    policy: DeliveryPolicy | None = None,
    session: Any = None,
) -> PassStats:
    """One pass of :class:`Dispatcher` (convenience for jobs and tests)."""
    return await Dispatcher(db, master, policy or DeliveryPolicy(), session).run_once(tenant_ids)
