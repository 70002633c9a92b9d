"""Pospal-style cloud POS open API client (pull side of the ``pos`` connector).

Request (PLATFORMS.md §8, ``pospal.cn/openplatform/ticketapi.html``): ``POST
{base_url}/pospal-api2/openapi/v1/ticketOpenApi/queryTicketPages`` with a JSON body
``{"appId", "startTime", "endTime", "postBackParameter"?}`` (times ``yyyy-MM-dd HH:mm:ss`` store
local time, GMT+8, both ends inclusive), headers ``time-stamp`` (ms) and ``data-signature``
(:func:`connectors.pos.signing.pospal_signature`).

Answer: ``{"status": "success", "data": {"postBackParameter": {"parameterType",
"parameterValue"}, "result": [tickets], "pageSize": n}}``; the next page is requested with the
returned ``postBackParameter`` and the listing ends with a page of fewer than ``pageSize`` rows.

Errors come as ``{"status": "error", "messages": [...], "errorCode": n}``. Pospal's public docs do
not list the codes, so the connector defines (and the fake speaks) this table — an assumption to
confirm against a real account:

======  ===========================================  ========================================
code    meaning                                      raised as
======  ===========================================  ========================================
1001    unknown ``appId``                            ``AuthFailed``
1002    ``data-signature`` does not verify            ``AuthFailed``
1003    ``time-stamp`` missing or > 5 min off         ``PlatformError`` (fix the clock)
1005    call rate exceeded, "retry after N seconds"   ``RateLimited(retry_after=N)``
1006    bad time range (end before start, > 24 h)     ``PlatformError``
1010    system busy                                  ``TransientError``
other   business refusal                             ``PlatformError``
======  ===========================================  ========================================

HTTP 429 (with ``Retry-After``) and 5xx are handled by :class:`gateway.sync.http.PlatformHttp`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connectors.pos.mapping import format_local
from connectors.pos.signing import pospal_signature
from gateway.sync import Request, Response
from gateway.sync.errors import AuthFailed, PlatformError, RateLimited, TransientError

if TYPE_CHECKING:
    from connectors.pos.connector import PosConnector

TICKET_PAGES_PATH = "/pospal-api2/openapi/v1/ticketOpenApi/queryTicketPages"
AUTH_CODES = {1001, 1002}
CLOCK_CODE, RATE_CODE, RANGE_CODE, BUSY_CODE = 1003, 1005, 1006, 1010
MAX_PAGES = 2000
"""Pages per window before we give up (Pospal serves 100 rows a page: 200k receipts a day)."""
_SECONDS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:秒|s\b|sec)", re.IGNORECASE)


@dataclass(frozen=True)
class TicketPage:
    tickets: list[dict[str, Any]]
    post_back: dict[str, Any] | None
    page_size: int


def load_json(body: bytes) -> Any:
    """The body as JSON with exact decimals; truncated / non-JSON bodies are transient."""
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TransientError(f"malformed or truncated response body ({len(body)} bytes)") from exc


def parse_envelope(resp: Response) -> Any:
    """Map a Pospal answer onto ``data`` or a typed error."""
    if resp.status in (401, 403):
        raise AuthFailed(
            f"Pospal refused the credentials (HTTP {resp.status})", code=str(resp.status)
        )
    if resp.status >= 400:
        raise PlatformError(f"Pospal answered HTTP {resp.status}", code=str(resp.status))
    body = load_json(resp.body)
    if not isinstance(body, dict):
        raise TransientError("Pospal answered something that is not a JSON object")
    if body.get("status") == "success":
        return body.get("data") or {}
    try:
        code = int(body.get("errorCode"))
    except (TypeError, ValueError):
        code = None
    messages = body.get("messages") or []
    text = "; ".join(str(m) for m in messages) if isinstance(messages, list) else str(messages)
    message = f"Pospal error {code}: {text or 'no message'}"
    if code in AUTH_CODES:
        raise AuthFailed(message, code=str(code))
    if code == RATE_CODE:
        match = _SECONDS.search(text)
        raise RateLimited(
            message, retry_after=float(match.group(1)) if match else None, code=str(code)
        )
    if code == BUSY_CODE:
        raise TransientError(message, code=str(code))
    raise PlatformError(message, code=str(code) if code is not None else None)


class PospalClient:
    def __init__(self, connector: PosConnector) -> None:
        self.connector = connector

    def _build(self, path: str, payload: dict[str, Any]) -> Callable[[], Request]:
        config = self.connector.config
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        url = str(config["base_url"]).rstrip("/") + path

        def build() -> Request:  # called per attempt: a fresh time-stamp every time
            stamp = str(int(self.connector.now().timestamp() * 1000))
            return Request(
                "POST",
                url,
                data=body,
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "User-Agent": "openApi",
                    "time-stamp": stamp,
                    "data-signature": pospal_signature(str(config["app_key"]), body),
                },
            )

        return build

    async def ticket_page(
        self, start: datetime, end: datetime, post_back: dict[str, Any] | None = None
    ) -> TicketPage:
        """One page of tickets closed in ``[start, end]`` (whole seconds, inclusive)."""
        payload: dict[str, Any] = {
            "appId": str(self.connector.config["app_id"]),
            "startTime": format_local(start),
            "endTime": format_local(end),
        }
        if post_back:
            payload["postBackParameter"] = post_back
        data = await self.connector.http.call(
            self._build(TICKET_PAGES_PATH, payload), parse_envelope
        )
        result = data.get("result") or []
        if not isinstance(result, list):
            raise TransientError("Pospal data.result is not a list")
        try:
            page_size = int(data.get("pageSize") or 100)
        except (TypeError, ValueError):
            page_size = 100
        pb = data.get("postBackParameter")
        return TicketPage(result, pb if isinstance(pb, dict) else None, max(1, page_size))

    async def tickets(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Every ticket in ``[start, end]``, paging with ``postBackParameter``; a ticket served
        twice (a replayed page) is kept once (last copy wins)."""
        by_sn: dict[str, dict[str, Any]] = {}
        post_back: dict[str, Any] | None = None
        for _ in range(MAX_PAGES):
            page = await self.ticket_page(start, end, post_back)
            for ticket in page.tickets:
                if isinstance(ticket, dict):
                    by_sn[str(ticket.get("sn"))] = ticket
            if len(page.tickets) < page.page_size:
                return list(by_sn.values())
            if page.post_back is None:
                raise PlatformError("Pospal returned a full page without a postBackParameter")
            post_back = page.post_back
        raise PlatformError(f"more than {MAX_PAGES} pages between {start} and {end}")
