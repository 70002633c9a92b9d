"""TOP gateway client: signed requests in the official SDK's shape, TOP error envelopes mapped
onto the runner's typed errors, and the OAuth refresh-token exchange.

Transport (official Python SDK ``RestApi.getResponse``): ``POST /router/rest`` with the system
parameters (``method``, ``app_key``, ``session``, ``timestamp``, ``format``, ``v``,
``sign_method``, ``sign``) in the URL query and the application parameters in an
``application/x-www-form-urlencoded`` body; the signature covers both.

Errors arrive as ``{"error_response": {"code", "msg", "sub_code", "sub_msg", "request_id"}}``
with HTTP 200 (PLATFORMS.md §1.6):

===============================================  ==========================================
TOP                                              here
===============================================  ==========================================
code 4-8, ``accesscontrol.*``, "ban … N …"       ``RateLimited(retry_after=N + margin)``
code 25 (invalid signature), 24, 28, 29, 11, 12  ``AuthFailed``
code 26 / 27, ``invalid-sessionkey`` & co.       ``TokenExpired`` (refresh once, retry)
code 31 (timestamp > 10 min off)                 ``AuthFailed`` naming the clock skew
sub-code ``isp.*``, code 10 / -1 / 15 w/o isv    ``TransientError``
sub-code ``isv.*`` and everything else           ``PlatformError``
===============================================  ==========================================

The ban margin: TOP's message says "This ban will last for N more seconds" with N in whole
seconds; the documented client practice is to sleep N + 1. ``ban_margin_seconds`` (config,
default 1) is that "+ 1"; tests lower it because the fake's bans are 0-1 s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connectors.tmall.signing import format_time, sign
from gateway.sync.errors import (
    AuthFailed,
    PlatformError,
    RateLimited,
    TokenExpired,
    TransientError,
)
from gateway.sync.http import Request, Response

if TYPE_CHECKING:
    from connectors.tmall.connector import TmallConnector

DEFAULT_GATEWAY = "https://gw.api.taobao.com/router/rest"
DEFAULT_OAUTH = "https://oauth.taobao.com"
_BAN = re.compile(r"ban will last for (\d+) more seconds", re.IGNORECASE)
_RATE_CODES = frozenset({"4", "5", "6", "7", "8"})
_SESSION_SUBCODES = frozenset(
    {"invalid-sessionkey", "session-expired", "sessionkey-not-generated-by-server"}
)
_AUTH_CODES = frozenset({"11", "12", "24", "25", "28", "29"})
_BUSY_CODES = frozenset({"-1", "10", "15"})


def response_key(method: str) -> str:
    """``taobao.trades.sold.increment.get`` → ``trades_sold_increment_get_response``."""
    name = method[len("taobao.") :] if method.startswith("taobao.") else method
    return name.replace(".", "_") + "_response"


def error_from_envelope(err: Mapping[str, Any], *, ban_margin: float = 1.0) -> Exception:
    """Map one TOP ``error_response`` onto a typed connector error."""
    code = str(err.get("code", ""))
    msg = str(err.get("msg") or "")
    sub_code = str(err.get("sub_code") or "")
    sub_msg = str(err.get("sub_msg") or "")
    text = f"TOP error {code} {msg}".strip()
    if sub_code or sub_msg:
        text += f" [{sub_code}] {sub_msg}".rstrip()
    if code in _RATE_CODES or sub_code.startswith("accesscontrol."):
        found = _BAN.search(sub_msg) or _BAN.search(msg)
        retry_after = int(found.group(1)) + ban_margin if found else None
        return RateLimited(text, retry_after=retry_after, code=code)
    if code in ("26", "27") or sub_code in _SESSION_SUBCODES:
        return TokenExpired(text, code=code)
    if code == "31":
        return AuthFailed(
            f"{text}: the request timestamp is more than 10 minutes away from TOP's clock; "
            "check this server's clock (NTP)",
            code=code,
        )
    if code in _AUTH_CODES:
        return AuthFailed(text, code=code)
    if sub_code.startswith("isp."):
        return TransientError(text, code=code)
    if sub_code.startswith("isv."):
        return PlatformError(text, code=code)
    if code in _BUSY_CODES:
        return TransientError(text, code=code)
    return PlatformError(text, code=code)


class TopClient:
    """Calls TOP APIs for one connector instance (its config holds keys and tokens)."""

    def __init__(self, connector: TmallConnector) -> None:
        self.connector = connector

    @property
    def config(self) -> Mapping[str, Any]:
        return self.connector.config

    def build(self, method: str, app_params: Mapping[str, Any], *, session: bool) -> Request:
        """One signed request; called again per attempt so the timestamp and sign are fresh."""
        cfg = self.config
        sign_method = cfg.get("sign_method", "hmac-sha256")
        system = {
            "method": method,
            "app_key": str(cfg["app_key"]),
            "timestamp": format_time(self.connector.now()),
            "format": "json",
            "v": "2.0",
            "sign_method": sign_method,
        }
        if session:
            system["session"] = str(cfg["access_token"])
        body = {k: _stringify(v) for k, v in app_params.items() if v is not None}
        system["sign"] = sign({**system, **body}, str(cfg["app_secret"]), sign_method)
        return Request(
            "POST",
            str(cfg.get("base_url") or DEFAULT_GATEWAY),
            params=system,
            data=body,
            headers={"Accept": "application/json"},
        )

    def parse(self, method: str, resp: Response) -> dict[str, Any]:
        payload = resp.json()
        if not isinstance(payload, dict):
            raise TransientError(f"unexpected TOP answer for {method}: not a JSON object")
        err = payload.get("error_response")
        if isinstance(err, dict):
            raise error_from_envelope(
                err, ban_margin=float(self.config.get("ban_margin_seconds", 1.0))
            )
        body = payload.get(response_key(method))
        if not isinstance(body, dict):
            if resp.status >= 400:
                raise PlatformError(f"TOP answered HTTP {resp.status} for {method}")
            raise TransientError(f"TOP answer for {method} lacks {response_key(method)}")
        return body

    async def call(
        self, method: str, app_params: Mapping[str, Any] | None = None, *, session: bool = True
    ) -> dict[str, Any]:
        """Call ``method`` and return the body under its ``<name>_response`` key."""
        params = dict(app_params or {})
        return await self.connector.http.call(
            lambda: self.build(method, params, session=session),
            lambda resp: self.parse(method, resp),
            refresh=self.connector.refresh_token if session else None,
        )

    # -- OAuth ---------------------------------------------------------------------------------

    def build_refresh(self) -> Request:
        cfg = self.config
        return Request(
            "POST",
            str(cfg.get("oauth_url") or DEFAULT_OAUTH).rstrip("/") + "/token",
            data={
                "grant_type": "refresh_token",
                "client_id": str(cfg["app_key"]),
                "client_secret": str(cfg["app_secret"]),
                "refresh_token": str(cfg.get("refresh_token") or ""),
                "view": "web",
            },
            headers={"Accept": "application/json"},
        )

    @staticmethod
    def parse_refresh(resp: Response) -> dict[str, Any]:
        payload = resp.json()
        if not isinstance(payload, dict):
            raise TransientError("unexpected answer from the TOP OAuth endpoint")
        if payload.get("error") or resp.status >= 400:
            # invalid_grant (refresh token expired/revoked), invalid_client (wrong secret): the
            # seller must authorise the app again; retrying cannot help.
            raise AuthFailed(
                f"TOP OAuth refused the refresh: {payload.get('error')} "
                f"{payload.get('error_description', '')}".strip(),
                code=str(payload.get("error") or resp.status),
            )
        if not payload.get("access_token"):
            raise TransientError("TOP OAuth answer has no access_token")
        return payload

    async def refresh(self) -> dict[str, Any]:
        return await self.connector.http.call(self.build_refresh, self.parse_refresh)


def _stringify(value: Any) -> str:
    """Application params exactly as they are signed and sent."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
