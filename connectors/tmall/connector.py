"""The Tmall/Taobao connector class: configuration, check, token refresh, streams."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from connectors.tmall.client import DEFAULT_GATEWAY, DEFAULT_OAUTH, TopClient
from connectors.tmall.signing import SIGN_METHODS
from connectors.tmall.streams import MembersStream, OrdersStream, RefundsStream
from gateway.identifiers import IdentifierKind
from gateway.sync.contract import CheckResult, Connector, ConnectorContext, Stream
from gateway.sync.errors import ConnectorError

TAOBAO_OPEN_UID = IdentifierKind(
    "taobao_open_uid",
    False,
    False,
    "",
    "Taobao buyer_open_uid: stable per appkey across nick changes (weak; scope = app_key)",
)

CONFIG_SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Tmall / Taobao (TOP) connection",
    "type": "object",
    "additionalProperties": False,
    "required": ["app_key", "app_secret", "access_token", "shop_id"],
    "properties": {
        "app_key": {"type": "string", "minLength": 1, "description": "TOP appkey"},
        "app_secret": {
            "type": "string",
            "minLength": 1,
            "writeOnly": True,
            "description": "TOP app secret (signs every request and verifies SPI callbacks)",
        },
        "access_token": {
            "type": "string",
            "minLength": 1,
            "writeOnly": True,
            "description": "The seller's session key (OAuth access_token)",
        },
        "refresh_token": {
            "type": "string",
            "writeOnly": True,
            "description": "OAuth refresh_token; lets the connector renew the session itself",
        },
        "shop_id": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_.:@/+=-]{1,64}$",
            "description": "The seller's user id (taobao_user_id); the scope of ouids",
        },
        "sign_method": {"enum": list(SIGN_METHODS), "default": "hmac-sha256"},
        "base_url": {
            "type": "string",
            "format": "uri",
            "default": DEFAULT_GATEWAY,
            "description": "TOP gateway (https://api.taobao.com/router/rest overseas)",
        },
        "oauth_url": {"type": "string", "format": "uri", "default": DEFAULT_OAUTH},
        "start_date": {
            "type": "string",
            "format": "date-time",
            "description": "Backfill horizon (trades are only listed for the last 3 months)",
        },
        "window_minutes": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1440,
            "default": 1440,
            "description": "Sync window; TOP allows at most one day and recommends 30 minutes",
        },
        "page_size": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100},
        "ban_margin_seconds": {
            "type": "number",
            "minimum": 0,
            "maximum": 60,
            "default": 1,
            "description": "Added to TOP's 'ban will last for N more seconds' before retrying",
        },
    },
}


class TmallConnector(Connector):
    """Tmall/Taobao shop: CRM members, trades and refunds over TOP; 会员通 SPI via webhooks."""

    name = "tmall"
    title = "Tmall / Taobao"
    version = "1"
    config_schema = CONFIG_SCHEMA
    rate_limit = 10.0
    identifier_kinds: ClassVar[Sequence[IdentifierKind]] = (TAOBAO_OPEN_UID,)

    def __init__(self, config: Mapping[str, Any], context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.client = TopClient(self)

    @property
    def shop_id(self) -> str:
        return str(self.config["shop_id"])

    @property
    def app_key(self) -> str:
        return str(self.config["app_key"])

    async def check(self) -> CheckResult:
        try:
            body = await self.client.call("taobao.user.seller.get", {"fields": "user_id,nick"})
        except ConnectorError as exc:
            code = f" (code {exc.code})" if exc.code else ""
            return CheckResult(False, f"{exc}{code}")
        except Exception as exc:  # check() must never raise
            return CheckResult(False, f"cannot reach TOP: {exc.__class__.__name__}: {exc}")
        user = body.get("user") or {}
        user_id = str(user.get("user_id") or "")
        if user_id and user_id != self.shop_id:
            return CheckResult(
                False,
                f"the session belongs to seller {user_id}, but shop_id is {self.shop_id}",
            )
        return CheckResult(True, f"connected to TOP as seller {user.get('nick') or user_id}")

    async def refresh_token(self) -> None:
        """``POST {oauth_url}/token`` with ``grant_type=refresh_token``; persist both tokens."""
        if not self.config.get("refresh_token"):
            from gateway.sync.errors import AuthFailed

            raise AuthFailed("TOP session expired and no refresh_token is configured")
        answer = await self.client.refresh()
        secrets = {"access_token": str(answer["access_token"])}
        if answer.get("refresh_token"):
            secrets["refresh_token"] = str(answer["refresh_token"])
        self.config.update(secrets)
        await self.context.save_secrets(secrets)

    def streams(self) -> Sequence[Stream]:
        return (MembersStream(self), OrdersStream(self), RefundsStream(self))
