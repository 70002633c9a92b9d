"""WeChat API calls through :class:`gateway.sync.http.PlatformHttp`, and the error envelope.

Every WeChat server API answers HTTP 200 with ``{"errcode": N, "errmsg": "…"}`` on failure
(PLATFORMS.md §4.5); successful answers omit ``errcode`` or carry ``0``. :func:`raise_for_errcode`
maps the codes onto the runner's typed errors:

=================================  ===============================================================
errcode                            error
=================================  ===============================================================
40001, 40014, 42001, 41001         :class:`TokenExpired` (invalid / expired / missing access_token)
                                   — refreshed once and retried by ``PlatformHttp.call``; on the
                                   token endpoint itself 40001 means bad credentials → AuthFailed
40013, 40125, 40164, 41002, 41004  :class:`AuthFailed` (invalid appid / appsecret, caller IP not
48001                              whitelisted, missing appid/secret, API not authorised)
45011                              :class:`RateLimited` (minute quota); ``retry_after`` = the ban
                                   seconds when the message states them, else backoff
45009                              :class:`RateLimited` (daily quota) with ``retry_after`` = seconds
                                   to the quota reset at 00:00 Beijing time, so the run stops with
                                   its bookmarks safe instead of hammering the API
-1                                 :class:`TransientError` (system busy)
anything else                      :class:`PlatformError` (e.g. 40029 invalid code)
=================================  ===============================================================
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from gateway.sync import Request, Response
from gateway.sync.errors import (
    AuthFailed,
    PlatformError,
    RateLimited,
    TokenExpired,
    TransientError,
)

if TYPE_CHECKING:
    from connectors.wechat.connector import WechatConnector

CST = timezone(timedelta(hours=8), "Asia/Shanghai")
TOKEN_CODES = frozenset({40001, 40014, 42001, 41001})
AUTH_CODES = frozenset({40013, 40125, 40164, 41002, 41004, 48001})
INVALID_CODE_CODES = frozenset({40029, 40163})
_BAN = re.compile(r"ban(?:\s+will\s+last\s+for)?\s+(\d+)\s*(?:more\s+)?s", re.IGNORECASE)


def _ban_seconds(message: str) -> float | None:
    m = _BAN.search(message)
    return float(m.group(1)) if m else None


def _seconds_to_quota_reset(now: datetime) -> float:
    local = now.astimezone(CST)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1.0, (midnight - local).total_seconds())


def raise_for_errcode(
    data: Any, *, token_endpoint: bool = False, now: datetime | None = None
) -> dict[str, Any]:
    """Return the answer object, or raise the typed error its ``errcode`` stands for."""
    if not isinstance(data, dict):
        raise TransientError(f"unexpected WeChat answer of type {type(data).__name__}")
    try:
        code = int(data.get("errcode") or 0)
    except (TypeError, ValueError):
        raise TransientError(f"unreadable errcode {data.get('errcode')!r}") from None
    if code == 0:
        return data
    msg = str(data.get("errmsg") or "")
    text = f"WeChat errcode {code}: {msg}"
    if code in TOKEN_CODES:
        if token_endpoint:
            raise AuthFailed(text, code=str(code))
        raise TokenExpired(text, code=str(code))
    if code in AUTH_CODES:
        raise AuthFailed(text, code=str(code))
    if code == 45011:
        raise RateLimited(text, retry_after=_ban_seconds(msg), code=str(code))
    if code == 45009:
        reset = _seconds_to_quota_reset(now or datetime.now(CST))
        raise RateLimited(text, retry_after=reset, code=str(code))
    if code == -1:
        raise TransientError(text, code=str(code))
    raise PlatformError(text, code=str(code))


def _parse_json(resp: Response, *, token_endpoint: bool = False) -> dict[str, Any]:
    if resp.status >= 400:
        raise PlatformError(f"WeChat answered HTTP {resp.status}", code=str(resp.status))
    return raise_for_errcode(resp.json(), token_endpoint=token_endpoint)


class WechatClient:
    """The calls the connector makes. ``app`` is ``"mp"`` (mini-program) or ``"oa"`` (official
    account): each has its own appid, secret and access token."""

    def __init__(self, connector: WechatConnector) -> None:
        self.connector = connector

    @property
    def base_url(self) -> str:
        return str(self.connector.config.get("base_url") or "https://api.weixin.qq.com").rstrip("/")

    async def fetch_token(self, appid: str, secret: str) -> dict[str, Any]:
        """``GET /cgi-bin/token?grant_type=client_credential&appid&secret``."""
        url = f"{self.base_url}/cgi-bin/token"
        params = {"grant_type": "client_credential", "appid": appid, "secret": secret}
        data = await self.connector.http.call(
            lambda: Request("GET", url, params=params),
            lambda r: _parse_json(r, token_endpoint=True),
        )
        if not data.get("access_token"):
            raise PlatformError("WeChat token answer without access_token")
        return data

    async def _authed(
        self,
        app: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        conn = self.connector
        await conn.ensure_token(app)
        used: list[str] = []
        url = f"{self.base_url}{path}"

        def build() -> Request:
            token = conn.token_of(app)
            used.append(token)
            q = {"access_token": token, **(params or {})}
            return Request(method, url, params=q, json_body=body)

        def refresh() -> Awaitable[None]:
            return conn.refresh_app_token(app, stale=used[-1] if used else None)

        return await conn.http.call(build, _parse_json, refresh=refresh)

    # -- mini-program --------------------------------------------------------------------------

    async def code2session(self, js_code: str) -> dict[str, Any]:
        """``GET /sns/jscode2session`` → ``{openid, session_key, unionid?}`` (no access token)."""
        cfg = self.connector.config
        url = f"{self.base_url}/sns/jscode2session"
        params = {
            "appid": cfg["appid"],
            "secret": cfg["secret"],
            "js_code": js_code,
            "grant_type": "authorization_code",
        }
        return await self.connector.http.call(
            lambda: Request("GET", url, params=params), _parse_json
        )

    async def phone_number(self, phone_code: str) -> dict[str, Any]:
        """``POST /wxa/business/getuserphonenumber`` → ``phone_info``."""
        return await self._authed(
            "mp", "POST", "/wxa/business/getuserphonenumber", body={"code": phone_code}
        )

    # -- official account ----------------------------------------------------------------------

    async def followers(self, next_openid: str) -> dict[str, Any]:
        """``GET /cgi-bin/user/get?next_openid`` (up to 10 000 openids a page)."""
        return await self._authed(
            "oa", "GET", "/cgi-bin/user/get", params={"next_openid": next_openid}
        )

    async def users_info(self, openids: list[str]) -> list[dict[str, Any]]:
        """``POST /cgi-bin/user/info/batchget`` for at most 100 openids."""
        if not 1 <= len(openids) <= 100:
            raise ValueError("batchget takes 1-100 openids")
        body = {"user_list": [{"openid": o, "lang": "zh_CN"} for o in openids]}
        data = await self._authed("oa", "POST", "/cgi-bin/user/info/batchget", body=body)
        infos = data.get("user_info_list")
        if not isinstance(infos, list):
            raise TransientError("batchget answer without user_info_list")
        return infos

    async def ping(self, app: str) -> dict[str, Any]:
        """``GET /cgi-bin/get_api_domain_ip``: the cheapest authenticated call."""
        return await self._authed(app, "GET", "/cgi-bin/get_api_domain_ip")
