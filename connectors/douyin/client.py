"""Signed Doudian API calls and the error envelope (PLATFORMS.md §3.1, §3.5).

Every call is ``POST {base_url}/<method with dots as slashes>`` with the common parameters in the
query string (``app_key, method, access_token, timestamp, v=2, sign, sign_method``) and the
business parameters as the JSON body, which is byte for byte the ``param_json`` that was signed.
``timestamp`` is Unix seconds (official Go SDK). The header ``x-open-no-old-err-code: 1`` opts into
the new ``{code, msg, sub_code, sub_msg, log_id, data}`` envelope; the legacy
``{err_no, message, data}`` envelope (still answered by ``/token/*`` to old clients) is read too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connectors.douyin.signing import API_VERSION, canonical_json, sign
from gateway.sync.errors import (
    AuthFailed,
    ConnectorError,
    PlatformError,
    RateLimited,
    TokenExpired,
    TransientError,
)
from gateway.sync.http import Request, Response

if TYPE_CHECKING:
    from connectors.douyin.connector import DouyinConnector

OK = 10000
PARTIAL_OK = 10001  # batch APIs: per-item success flags in ``data``
_TOKEN_EXPIRED = frozenset(
    {"isv.access-token-expired", "isv.access-token-no-existed", "isv.access-token-missing"}
)
_TRANSIENT_CODES = frozenset({20000, 20001})
_AUTH_CODES = frozenset({30001, 30002, 50001})
_BAN = re.compile(r"(\d+(?:\.\d+)?)\s*(?:秒|s\b|sec\b|secs\b|seconds?\b)", re.IGNORECASE)


def api_path(method: str) -> str:
    """``order.searchList`` → ``/order/searchList``."""
    return "/" + method.replace(".", "/")


def ban_seconds(text: str) -> float | None:
    """Ban seconds a rate-limit message mentions (``…封禁 5 秒`` / ``ban 5 seconds``), if any."""
    match = _BAN.search(text or "")
    return float(match.group(1)) if match else None


def classify(
    code: int, sub_code: str, message: str, *, retry_after: float | None = None
) -> ConnectorError:
    """The typed error for a non-success envelope (new error scheme)."""
    label = f"douyin {code}" + (f" {sub_code}" if sub_code else "") + f": {message}"
    sub = sub_code.split(":", 1)[0]
    if sub in _TOKEN_EXPIRED:
        return TokenExpired(label, code=str(code))
    if sub == "isv.timestamp-invalid":
        return AuthFailed(
            f"{label} (the request timestamp is more than 10 minutes off the platform's clock: "
            "check this server's clock)",
            code=str(code),
        )
    if code == 60000 or sub.startswith("isp.traffic-limited"):
        return RateLimited(label, retry_after=retry_after, code=str(code))
    if code in _TRANSIENT_CODES:
        return TransientError(label, code=str(code))
    if code in _AUTH_CODES or sub.startswith(
        ("isv.signature", "isv.access-token", "isv.app", "dop.authorization-")
    ):
        # signature, app key, token, IP whitelist, permission or refresh-token problems
        return AuthFailed(label, code=str(code))
    return PlatformError(label, code=str(code))


def classify_legacy(err_no: int, message: str) -> ConnectorError:
    """Legacy ``err_no`` envelope: the numeric codes are not documented, so read the message."""
    label = f"douyin err_no {err_no}: {message}"
    low = (message or "").lower()
    if "access_token" in low and ("过期" in message or "expire" in low or "不存在" in message):
        return TokenExpired(label, code=str(err_no))
    if "限流" in message or "频繁" in message or "limit" in low:
        return RateLimited(label, retry_after=ban_seconds(message), code=str(err_no))
    if "签名" in message or "sign" in low or "token" in low or "权限" in message:
        return AuthFailed(label, code=str(err_no))
    return PlatformError(label, code=str(err_no))


def parse_envelope(resp: Response) -> dict[str, Any]:
    """``data`` of a successful answer, or the typed error (a truncated body is transient)."""
    if resp.status >= 400:
        try:
            body = resp.json()
        except TransientError:
            raise PlatformError(f"douyin HTTP {resp.status}", code=str(resp.status)) from None
    else:
        body = resp.json()
    if not isinstance(body, Mapping):
        raise PlatformError(f"douyin answered a JSON {type(body).__name__}, not an object")
    if "code" in body:
        code = _int(body.get("code"))
        if code in (OK, PARTIAL_OK):
            return _data(body)
        sub_code = str(body.get("sub_code") or "")
        message = str(body.get("sub_msg") or body.get("msg") or "")
        if body.get("log_id"):
            message += f" (log_id {body['log_id']})"
        retry_after = ban_seconds(str(body.get("sub_msg") or "")) or _header_wait(resp)
        raise classify(code, sub_code, message, retry_after=retry_after)
    if "err_no" in body:
        err_no = _int(body.get("err_no"))
        if err_no == 0:
            return _data(body)
        raise classify_legacy(err_no, str(body.get("message") or ""))
    if resp.status >= 400:
        raise PlatformError(f"douyin HTTP {resp.status}", code=str(resp.status))
    raise PlatformError("douyin answered without code or err_no")


def _data(body: Mapping[str, Any]) -> dict[str, Any]:
    data = body.get("data")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PlatformError(f"douyin data is a {type(data).__name__}, not an object")
    return data


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PlatformError(f"douyin answered a non-numeric code {value!r}") from None


def _header_wait(resp: Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class DouyinClient:
    """Builds signed requests for one connection; all HTTP goes through ``connector.http``."""

    def __init__(self, connector: DouyinConnector) -> None:
        self.connector = connector

    @property
    def config(self) -> Mapping[str, Any]:
        return self.connector.config

    def build(self, method: str, params: Mapping[str, Any], *, with_token: bool = True) -> Request:
        """One signed request; called again for every attempt so the timestamp is fresh and the
        latest access token is used."""
        param_json = canonical_json(params)
        timestamp = str(int(self.connector.now().timestamp()))
        sign_method = str(self.config.get("sign_method") or "hmac-sha256")
        app_key = str(self.config["app_key"])
        query = {
            "app_key": app_key,
            "method": method,
            "timestamp": timestamp,
            "v": API_VERSION,
            "sign": sign(
                app_key, str(self.config["app_secret"]), method, param_json, timestamp, sign_method
            ),
            "sign_method": sign_method,
        }
        if with_token:
            query["access_token"] = str(self.config.get("access_token") or "")
        base = str(self.config.get("base_url") or "https://openapi-fxg.jinritemai.com").rstrip("/")
        return Request(
            "POST",
            base + api_path(method),
            params=query,
            data=param_json.encode("utf-8"),
            headers={
                "Content-Type": "application/json;charset=UTF-8",
                "x-open-no-old-err-code": "1",
                "Accept": "application/json",
            },
        )

    async def call(
        self, method: str, params: Mapping[str, Any], *, page: int | None = None
    ) -> dict[str, Any]:
        """Call an API with the shop's access token (refreshed once when it has expired).

        With ``page``, an answer for another page (a stale page served again) is retried."""

        def parse(resp: Response) -> dict[str, Any]:
            data = parse_envelope(resp)
            if page is not None and "page" in data and _int(data["page"]) != page:
                raise TransientError(f"douyin {method} answered page {data['page']} for {page}")
            return data

        return await self.connector.http.call(
            lambda: self.build(method, params),
            parse,
            refresh=self.connector.refresh_token,
        )

    async def token_call(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """``token.create`` / ``token.refresh``: signed the same way, without an access token;
        a refusal here is final (AuthFailed), never another refresh."""

        def parse(resp: Response) -> dict[str, Any]:
            try:
                return parse_envelope(resp)
            except TokenExpired as exc:
                raise AuthFailed(str(exc), code=exc.code) from None

        return await self.connector.http.call(
            lambda: self.build(method, params, with_token=False), parse
        )
