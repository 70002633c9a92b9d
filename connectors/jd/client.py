"""Signed calls to the JOS router (``POST {base_url}/routerjson``) and the JD OAuth token
endpoint, with the JOS error envelope mapped onto the typed sync errors (PLATFORMS.md §2.3)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectors.jd.signing import PARAM_JSON, param_json, sign
from connectors.wire import format_time
from gateway.sync.errors import (
    AuthFailed,
    PlatformError,
    RateLimited,
    TokenExpired,
    TransientError,
)
from gateway.sync.http import Request, Response

if TYPE_CHECKING:
    from connectors.jd.connector import JdConnector

API_VERSION = "2.0"
_RETRY_AFTER = re.compile(r"(\d+(?:\.\d+)?)\s*(?:more\s+)?s(?:ec(?:ond)?s?)?\b", re.IGNORECASE)
_TRANSIENT_HINTS = ("busy", "unavailable", "timeout", "time out", "system error", "繁忙")


def system_params(
    *, method: str, app_key: str, access_token: str, app_params: Mapping[str, Any], now: datetime
) -> dict[str, str]:
    """The system parameters of one call, before signing."""
    return {
        "method": method,
        "app_key": app_key,
        "access_token": access_token,
        "timestamp": format_time(now),
        "v": API_VERSION,
        "format": "json",
        PARAM_JSON: param_json({k: str(v) for k, v in app_params.items()}),
    }


def retry_after_seconds(text: str) -> float | None:
    """The ban length in a JOS rate-limit message ("… retry after 30 seconds"), if any."""
    m = _RETRY_AFTER.search(text or "")
    return float(m.group(1)) if m else None


def raise_for_error(body: Any) -> None:
    """Map a top-level ``error_response`` onto the typed errors (PLATFORMS.md §2.3)."""
    if not isinstance(body, dict):
        raise TransientError("JD answered with a non-object JSON body")
    err = body.get("error_response")
    if not err:
        return
    code = str(err.get("code", ""))
    en = str(err.get("en_desc") or "")
    zh = str(err.get("zh_desc") or "")
    message = f"JD error {code}: {en or zh}" + (f" ({zh})" if en and zh else "")
    if code == "19":
        raise TokenExpired(message, code=code)
    if code in ("12", "11"):
        raise AuthFailed(message, code=code)
    if code in ("8", "7"):
        raise AuthFailed(
            message + " — the request timestamp is outside JD's ±6 minute window; "
            "check this server's clock",
            code=code,
        )
    if code == "2" or "limit" in en.lower():
        raise RateLimited(message, retry_after=retry_after_seconds(en), code=code)
    if any(hint in f"{en} {zh}".lower() for hint in _TRANSIENT_HINTS):
        raise TransientError(message, code=code)
    raise PlatformError(message, code=code)


class JdClient:
    """Builds signed router requests for one connection and parses their answers."""

    def __init__(self, connector: JdConnector) -> None:
        self.connector = connector

    @property
    def config(self) -> Mapping[str, Any]:
        return self.connector.config

    def build(self, method: str, app_params: Mapping[str, Any]) -> Request:
        """A fresh request (new timestamp and signature for every attempt). Everything goes
        in the query string of a POST, as the official SDK does."""
        params = system_params(
            method=method,
            app_key=self.config["app_key"],
            access_token=self.config.get("access_token", ""),
            app_params=app_params,
            now=self.connector.now(),
        )
        params["sign"] = sign(params, self.config["app_secret"])
        url = self.config.get("base_url", "https://api.jd.com").rstrip("/") + "/routerjson"
        return Request("POST", url, params=params)

    async def call(self, method: str, app_params: Mapping[str, Any]) -> dict[str, Any]:
        """Call ``method`` and return the ``…_responce`` object (JD's own spelling)."""
        root = method.replace(".", "_") + "_responce"

        def parse(resp: Response) -> dict[str, Any]:
            body = resp.json()
            raise_for_error(body)
            payload = body.get(root)
            if not isinstance(payload, dict):
                raise PlatformError(f"JD answer to {method} has no {root!r} object")
            return payload

        return await self.connector.http.call(
            lambda: self.build(method, app_params), parse, refresh=self.connector.refresh_token
        )

    async def refresh(self) -> dict[str, Any]:
        """``GET {oauth_url}/oauth2/refresh_token`` (JD OAuth 2): new access and refresh
        tokens. Failures are :class:`AuthFailed` (the refresh token or app secret is bad)."""
        refresh_token = self.config.get("refresh_token")
        if not refresh_token:
            raise AuthFailed("JD access token expired and no refresh_token is configured")
        url = self.config.get("oauth_url", "https://open-oauth.jd.com").rstrip("/")
        params = {
            "app_key": self.config["app_key"],
            "app_secret": self.config["app_secret"],
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }

        def parse(resp: Response) -> dict[str, Any]:
            body = resp.json()
            if not isinstance(body, dict) or not body.get("access_token"):
                code = str(body.get("code", resp.status)) if isinstance(body, dict) else ""
                msg = body.get("msg") or body.get("message") if isinstance(body, dict) else ""
                raise AuthFailed(f"JD token refresh refused ({code}): {msg}", code=code)
            return body

        return await self.connector.http.call(
            lambda: Request("GET", url + "/oauth2/refresh_token", params=params), parse
        )
