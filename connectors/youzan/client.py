"""Youzan cloud calls (PLATFORMS.md §5.1, §5.4): no request signature — the access token goes in
the URL query of ``POST {base_url}/api/{api}/{version}``; tokens come from the silent grant at
``POST {base_url}/auth/token``. Error envelopes are mapped onto the typed sync errors."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.sync.errors import (
    AuthFailed,
    PlatformError,
    RateLimited,
    TokenExpired,
    TransientError,
)
from gateway.sync.http import Request, Response

if TYPE_CHECKING:
    from connectors.youzan.connector import YouzanConnector

RETRYABLE_CODES = frozenset({"106000001", "106100118"})  # platform timeouts (§5.4)
_LIMIT_HINTS = ("limit", "限流", "频繁")


def raise_for_error(body: Any) -> Any:
    """Map Youzan's envelopes onto the typed errors; return the ``data`` of a success."""
    if not isinstance(body, dict):
        raise TransientError("Youzan answered with a non-object JSON body")
    gw = body.get("gw_err_resp")
    if gw:
        code = str(gw.get("err_code", ""))
        msg = f"Youzan gateway error {code}: {gw.get('err_msg', '')}"
        if code == "4203":
            raise TokenExpired(msg, code=code)
        if code == "4201":
            raise AuthFailed(msg, code=code)
        if any(h in str(gw.get("err_msg", "")).lower() for h in _LIMIT_HINTS):
            raise RateLimited(msg, code=code)
        raise PlatformError(msg, code=code)
    legacy = body.get("error_response")
    if legacy:  # 3.x APIs
        code = str(legacy.get("code", ""))
        msg = f"Youzan error {code}: {legacy.get('msg') or legacy.get('message', '')}"
        if code in RETRYABLE_CODES:
            raise TransientError(msg, code=code)
        raise PlatformError(msg, code=code)
    if "response" in body and "success" not in body:
        return body["response"]
    code = str(body.get("code", ""))
    if body.get("success") is False or code not in ("200", ""):
        msg = f"Youzan error {code}: {body.get('message', '')}"
        if code in RETRYABLE_CODES:
            raise TransientError(msg, code=code)
        raise PlatformError(msg, code=code)
    return body.get("data")


class YouzanClient:
    def __init__(self, connector: YouzanConnector) -> None:
        self.connector = connector
        self.expires_at: float | None = None  # epoch seconds of the current token, if known

    @property
    def config(self) -> Mapping[str, Any]:
        return self.connector.config

    @property
    def base_url(self) -> str:
        return str(self.config.get("base_url", "https://open.youzanyun.com")).rstrip("/")

    async def fetch_token(self, *, refresh: bool) -> str:
        """The silent grant: ``{client_id, client_secret, authorize_type: "silent",
        grant_id: kdt_id, refresh}`` → ``data.access_token`` (``expires`` in epoch ms).
        Any refusal is :class:`AuthFailed` (wrong client id / secret / shop)."""
        payload = {
            "client_id": self.config["client_id"],
            "client_secret": self.config["client_secret"],
            "authorize_type": "silent",
            "grant_id": str(self.config["kdt_id"]),
            "refresh": refresh,
        }

        def parse(resp: Response) -> dict[str, Any]:
            body = resp.json()
            data = body.get("data") if isinstance(body, dict) else None
            if (
                not isinstance(body, dict)
                or not body.get("success")
                or not isinstance(data, dict)
                or not data.get("access_token")
            ):
                code = str(body.get("code", resp.status)) if isinstance(body, dict) else ""
                msg = body.get("message", "") if isinstance(body, dict) else ""
                raise AuthFailed(f"Youzan token endpoint refused ({code}): {msg}", code=code)
            return data

        data = await self.connector.http.call(
            lambda: Request("POST", self.base_url + "/auth/token", json_body=payload), parse
        )
        token = str(data["access_token"])
        expires = data.get("expires")
        self.expires_at = int(expires) / 1000 if expires else None
        self.connector.config["access_token"] = token
        await self.connector.context.save_secrets({"access_token": token})
        return token

    async def ensure_token(self) -> None:
        token = self.config.get("access_token")
        soon = self.expires_at is not None and self.expires_at - 60 < time.time()
        if not token or soon:
            await self.fetch_token(refresh=bool(token))

    async def call(self, api: str, version: str, body: Mapping[str, Any]) -> Any:
        """``POST /api/{api}/{version}?access_token=…`` with a JSON body → ``data``."""
        await self.ensure_token()

        def build() -> Request:
            return Request(
                "POST",
                f"{self.base_url}/api/{api}/{version}",
                params={"access_token": str(self.config.get("access_token", ""))},
                json_body=dict(body),
            )

        return await self.connector.http.call(
            build, lambda r: raise_for_error(r.json()), refresh=self.connector.refresh_token
        )
