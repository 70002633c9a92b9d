"""The WeChat connector: official-account followers (pull) plus mini-program login and
official-account / member-card callbacks (push, see :mod:`connectors.wechat.webhooks`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from connectors.wechat.client import WechatClient
from connectors.wechat.streams import FollowersStream
from gateway.identifiers import IdentifierKind
from gateway.sync import CheckResult, Connector, Stream
from gateway.sync.errors import AuthFailed, ConnectorError

CARD_CODE = IdentifierKind(
    "wechat_card_code",
    True,
    False,
    "",
    "WeChat member card code (UserCardCode) within one card_id",
)

_APPID = {"type": "string", "pattern": "^wx[0-9a-f]{16}$"}
# Secret fields carry no pattern: they may be given as references ("env:WECHAT_SECRET") that are
# resolved when the connector is built, and are checked by WeChat (or by the AES code) at use.
_SCOPE_PATTERN = "^[A-Za-z0-9_.:@/+=-]{1,64}$"
# Refresh a cached token this long before WeChat says it expires (expires_in is 7200 s).
TOKEN_MARGIN = 300.0


class WechatConnector(Connector):
    name = "wechat"
    title = "WeChat mini-program, official account and member card"
    version = "1"
    rate_limit = 20.0
    identifier_kinds: ClassVar[Sequence[IdentifierKind]] = (CARD_CODE,)
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["appid", "secret", "token", "open_platform_id"],
        "properties": {
            "appid": {**_APPID, "title": "Mini-program AppID"},
            "secret": {
                "type": "string",
                "minLength": 1,
                "writeOnly": True,
                "title": "Mini-program AppSecret",
            },
            "oa_appid": {**_APPID, "title": "Official account AppID (for the followers sync)"},
            "oa_secret": {
                "type": "string",
                "minLength": 1,
                "writeOnly": True,
                "title": "Official account AppSecret",
            },
            "token": {
                "type": "string",
                "minLength": 1,
                "writeOnly": True,
                "title": "Server-callback Token (服务器配置 Token)",
            },
            "encoding_aes_key": {
                "type": "string",
                "minLength": 1,
                "writeOnly": True,
                "title": "EncodingAESKey: when set, only encrypted (安全模式) callbacks pass",
            },
            "open_platform_id": {
                "type": "string",
                "pattern": _SCOPE_PATTERN,
                "title": "Open Platform account the apps are bound to (scope of unionids)",
            },
            "import_card_bonus_changes": {
                "type": "boolean",
                "default": True,
                "title": "Count member-card bonus changes made on the WeChat side as points "
                "events (turn off when the hub itself writes bonus to the card)",
            },
            "base_url": {
                "type": "string",
                "format": "uri",
                "default": "https://api.weixin.qq.com",
            },
            "access_token": {
                "type": "string",
                "writeOnly": True,
                "title": "Cached mini-program access_token (managed)",
            },
            "oa_access_token": {
                "type": "string",
                "writeOnly": True,
                "title": "Cached official-account access_token (managed)",
            },
        },
        "dependentRequired": {"oa_appid": ["oa_secret"], "oa_secret": ["oa_appid"]},
    }

    _APPS: ClassVar[dict[str, tuple[str, str, str]]] = {
        # app: (appid key, secret key, cached token key)
        "mp": ("appid", "secret", "access_token"),
        "oa": ("oa_appid", "oa_secret", "oa_access_token"),
    }

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self.client = WechatClient(self)
        self._expires: dict[str, float] = {}
        self._locks = {app: asyncio.Lock() for app in self._APPS}

    # -- tokens --------------------------------------------------------------------------------

    def has_app(self, app: str) -> bool:
        appid_key, secret_key, _ = self._APPS[app]
        return bool(self.config.get(appid_key) and self.config.get(secret_key))

    def token_of(self, app: str) -> str:
        return str(self.config.get(self._APPS[app][2]) or "")

    def _fresh(self, app: str) -> bool:
        if not self.token_of(app):
            return False
        expires = self._expires.get(app)
        return expires is None or time.monotonic() < expires - TOKEN_MARGIN

    async def ensure_token(self, app: str) -> None:
        if not self._fresh(app):
            await self.refresh_app_token(app, stale=self.token_of(app) or None)

    async def refresh_app_token(self, app: str, *, stale: str | None = None) -> None:
        """Fetch a new access token for ``app`` unless another task already replaced ``stale``
        (WeChat invalidates the previous token on every fetch, so fetch once, not per caller)."""
        if not self.has_app(app):
            raise AuthFailed(f"wechat: the {app} app is not configured")
        appid_key, secret_key, token_key = self._APPS[app]
        async with self._locks[app]:
            current = self.token_of(app)
            if current and current != stale and self._fresh(app):
                return
            data = await self.client.fetch_token(
                str(self.config[appid_key]), str(self.config[secret_key])
            )
            token = str(data["access_token"])
            try:
                lifetime = float(data.get("expires_in") or 7200)
            except (TypeError, ValueError):
                lifetime = 7200.0
            self.config[token_key] = token
            self._expires[app] = time.monotonic() + lifetime
            await self.context.save_secrets({token_key: token})

    async def refresh_token(self) -> None:
        """Refresh every configured app's access token."""
        for app in self._APPS:
            if self.has_app(app):
                await self.refresh_app_token(app, stale=self.token_of(app) or None)

    # -- contract ------------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        apps = [app for app in self._APPS if self.has_app(app)]
        which = ""
        try:
            for app in apps:
                which = str(self.config[self._APPS[app][0]])
                await self.client.ping(app)
        except ConnectorError as exc:
            return CheckResult(False, f"WeChat refused app {which}: {exc}")
        except Exception as exc:  # never raise from check()
            return CheckResult(False, f"WeChat unreachable: {exc.__class__.__name__}: {exc}")
        names = {"mp": "mini-program", "oa": "official account"}
        ok = ", ".join(f"{names[a]} {self.config[self._APPS[a][0]]}" for a in apps)
        return CheckResult(True, f"authorised: {ok}")

    def streams(self) -> Sequence[Stream]:
        # The follower list belongs to the official account; without one there is nothing to
        # pull (mini-program members arrive through the login push).
        return (FollowersStream(self),) if self.has_app("oa") else ()
