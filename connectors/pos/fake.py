"""Fake cloud POS (Pospal-style open API) and a fake POS middleware that pushes signed tickets.

:class:`PospalFake` serves ``queryTicketPages`` over ``world.orders["pos"]`` (rendered by
:mod:`connectors.pos.render`) and behaves like the platform as the connector assumes it:

- recomputes ``data-signature`` = upper MD5(appKey + raw body) from the received bytes and answers
  ``errorCode 1002`` when it differs (``1001`` for an unknown appId);
- checks ``time-stamp`` (milliseconds, or seconds as some clients send) against its clock:
  more than 5 minutes off → ``1003``;
- refuses ranges over 24 hours or ending before they start (``1006``);
- rate limits with ``1005`` "retry after N seconds" and *enforces* the ban: calls before it ends
  are refused again (``faults.ban_seconds``; :meth:`PospalFake.limit_next` forces it);
- pages ``page_size`` rows at a time ordered by ticket ``uid``, the ``postBackParameter`` carrying
  the last uid served (``LAST_RESULT_MAX_ID``); a ``duplicate`` fault replays the previous page
  (with its postBackParameter) in place of the requested one.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from connectors.pos.client import (
    BUSY_CODE,
    CLOCK_CODE,
    RANGE_CODE,
    RATE_CODE,
    TICKET_PAGES_PATH,
)
from connectors.pos.mapping import TicketError, parse_local
from connectors.pos.render import world_tickets
from connectors.pos.signing import pospal_signature_ok, push_signature_header
from connectors.testing.fake import FakePlatform, Faults
from connectors.testing.world import World
from gateway.sync import WebhookRequest

SKEW = timedelta(minutes=5)
MAX_RANGE = timedelta(hours=24)
POST_BACK_TYPE = "LAST_RESULT_MAX_ID"

__all__ = ["BUSY_CODE", "PosMiddleware", "PospalFake", "signed_push"]


def error_body(code: int, message: str) -> dict[str, Any]:
    return {"status": "error", "messages": [message], "errorCode": code}


class PospalFake(FakePlatform):
    name = "pos"

    def __init__(
        self, world: World, *, page_size: int = 20, faults: Faults | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("app_key", "pospal-app-id")
        kwargs.setdefault("app_secret", "pospal-app-key-0123456789")
        super().__init__(world, faults=faults, **kwargs)
        self.page_size = page_size
        self._banned_until = 0.0
        self._limit_next = 0
        self._cache_key: tuple[Any, ...] | None = None
        self._tickets: list[tuple[datetime, dict[str, Any]]] = []
        self._times: list[datetime] = []
        # page served for (window, postBack value it returned): replayed by "duplicate"
        self._served: dict[tuple[str, str, str], dict[str, Any]] = {}

    @property
    def app_id(self) -> str:
        return self.app_key

    @property
    def pospal_app_key(self) -> str:
        return self.app_secret

    def routes(self) -> list[web.RouteDef]:
        return [web.post(TICKET_PAGES_PATH, self._query_ticket_pages)]

    def api_name(self, request: web.Request) -> str:
        return request.path.rsplit("/", 1)[-1]

    def limit_next(self, calls: int = 1) -> None:
        """Answer the next ``calls`` API calls with the rate-limit error (and its ban)."""
        self._limit_next += calls

    def rate_limited(self, ban_seconds: int) -> web.Response:
        self._banned_until = max(self._banned_until, time.monotonic() + ban_seconds)
        return web.json_response(
            error_body(
                RATE_CODE,
                f"访问过于频繁, 请{ban_seconds}秒后重试 (rate limit exceeded, "
                f"retry after {ban_seconds} seconds)",
            )
        )

    # -- world ---------------------------------------------------------------------------------

    def tickets(self) -> list[tuple[datetime, dict[str, Any]]]:
        """The rendered tickets, re-rendered when the world changed."""
        orders = self.world.orders.get("pos", [])
        key = (
            self.world._serial,
            self.world.end,
            len(orders),
            sum(1 for o in orders if o.status == "created"),
            sum(len(o.refunds) for o in orders),
        )
        if key != self._cache_key:
            self._tickets = world_tickets(self.world)
            self._times = [moment for moment, _ in self._tickets]
            self._cache_key = key
        return self._tickets

    # -- API -----------------------------------------------------------------------------------

    def _error(self, code: int, message: str) -> web.Response:
        return web.json_response(error_body(code, message))

    async def _query_ticket_pages(self, request: web.Request) -> web.Response:
        try:
            raw = await request.read()
        except ConnectionResetError:  # the client gave up (timeout fault): nobody to answer
            return web.Response(status=499)
        remaining = self._banned_until - time.monotonic()
        if remaining > 0:
            return self.rate_limited(math.ceil(remaining))
        if self._limit_next > 0:
            self._limit_next -= 1
            return self.rate_limited(self.faults.ban_seconds)
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            return self._error(1000, "请求参数不是合法的JSON (request body is not JSON)")
        if body.get("appId") != self.app_id:
            return self._error(1001, "appId不存在 (unknown appId)")
        if not pospal_signature_ok(
            self.pospal_app_key, raw, request.headers.get("data-signature", "")
        ):
            return self._error(1002, "数据签名错误 (data-signature verify failed)")
        stamp = request.headers.get("time-stamp", "")
        if not stamp.isdigit():
            return self._error(CLOCK_CODE, "缺少time-stamp (time-stamp missing)")
        seconds = int(stamp) / 1000 if len(stamp) >= 13 else int(stamp)
        if abs(self.clock().timestamp() - seconds) > SKEW.total_seconds():
            return self._error(
                CLOCK_CODE, "time-stamp与服务器时间相差超过5分钟 (time-stamp expired)"
            )
        try:
            start = parse_local(body.get("startTime"))
            end = parse_local(body.get("endTime"))
        except TicketError:
            return self._error(RANGE_CODE, "startTime/endTime格式错误 (bad time format)")
        if end < start or end - start > MAX_RANGE:
            return self._error(RANGE_CODE, "查询时间跨度不能超过24小时 (range over 24 hours)")
        post_back = body.get("postBackParameter") or {}
        after = str(post_back.get("parameterValue") or "") if isinstance(post_back, dict) else ""
        window = (str(body["startTime"]), str(body["endTime"]))
        if self.duplicate_page(request.path) and (*window, after) in self._served:
            return web.json_response(self._served[(*window, after)])
        tickets = self.tickets()
        lo = bisect.bisect_left(self._times, start)
        hi = bisect.bisect_right(self._times, end)
        rows = sorted((t for _, t in tickets[lo:hi]), key=lambda t: t["uid"])
        if after:
            rows = [t for t in rows if t["uid"] > int(after)]
        page = rows[: self.page_size]
        value = str(page[-1]["uid"]) if page else after
        answer = {
            "status": "success",
            "messages": [],
            "data": {
                "postBackParameter": {"parameterType": POST_BACK_TYPE, "parameterValue": value},
                "result": page,
                "pageSize": self.page_size,
            },
        }
        self._served[(*window, value)] = answer
        return web.json_response(answer)


# -- push side ----------------------------------------------------------------------------------


def signed_push(
    ticket: Mapping[str, Any], secret: str, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers a POS middleware sends for one ticket."""
    body = json.dumps(ticket, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-MH-Timestamp": ts,
        "X-MH-Signature": push_signature_header(secret, ts, body),
    }
    return body, headers


class PosMiddleware:
    """A fake store middleware: pushes the world's POS tickets to a webhook URL (or builds the
    :class:`~gateway.sync.WebhookRequest` to call a handler directly)."""

    def __init__(self, world: World, secret: str, *, clock: Any = None) -> None:
        self.world = world
        self.secret = secret
        self.clock = clock

    def tickets(self) -> list[dict[str, Any]]:
        return [ticket for _, ticket in world_tickets(self.world)]

    def _ts(self) -> int | None:
        return int(self.clock().timestamp()) if self.clock is not None else None

    def request(self, ticket: Mapping[str, Any]) -> WebhookRequest:
        body, headers = signed_push(ticket, self.secret, timestamp=self._ts())
        return WebhookRequest(method="POST", query={}, headers=headers, body=body)

    async def push(
        self, url: str, tickets: Sequence[Mapping[str, Any]] | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """POST each ticket (default: all of the world's) to ``url``; (status, JSON reply) each."""
        out = []
        async with aiohttp.ClientSession() as session:
            for ticket in self.tickets() if tickets is None else tickets:
                body, headers = signed_push(ticket, self.secret, timestamp=self._ts())
                async with session.post(url, data=body, headers=headers) as resp:
                    out.append((resp.status, await resp.json(content_type=None)))
        return out
