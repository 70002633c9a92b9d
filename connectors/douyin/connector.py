"""The Douyin shop (抖店) connector."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from connectors.douyin.client import DouyinClient
from connectors.douyin.signing import SIGN_METHODS
from connectors.douyin.streams import MembersStream, OrdersStream, RefundsStream
from gateway.identifiers import IdentifierKind
from gateway.sync.contract import CheckResult, Connector, ConnectorContext, Stream
from gateway.sync.errors import AuthFailed

log = logging.getLogger("memberhub.connectors.douyin")

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Douyin shop (抖店)",
    "type": "object",
    "additionalProperties": False,
    "required": ["app_key", "app_secret", "shop_id", "app_id"],
    "properties": {
        "base_url": {
            "type": "string",
            "format": "uri",
            "default": "https://openapi-fxg.jinritemai.com",
            "description": "Open platform gateway (sandbox: https://openapi-sandbox.jinritemai.com)",
        },
        "app_key": {"type": "string", "minLength": 1, "description": "抖店开放平台 app_key"},
        "app_secret": {"type": "string", "minLength": 1, "writeOnly": True},
        "access_token": {"type": "string", "writeOnly": True},
        "refresh_token": {"type": "string", "writeOnly": True},
        "shop_id": {"type": "string", "pattern": "^[0-9A-Za-z_-]{1,32}$"},
        "app_id": {
            "type": "string",
            "pattern": "^[0-9A-Za-z_.-]{1,64}$",
            "description": "会员通 app_id for member.* APIs; also the scope of buyer open ids",
        },
        "brand_id": {
            "type": "string",
            "pattern": "^[0-9A-Za-z_.-]{1,64}$",
            "description": "Brand id (scope of union ids); defaults to the shop id",
        },
        "sign_method": {"enum": list(SIGN_METHODS), "default": "hmac-sha256"},
        "self_built": {
            "type": "boolean",
            "default": False,
            "description": "自用型 app: mint tokens with grant_type=authorization_self + shop_id",
        },
        "sync_members": {
            "type": "boolean",
            "default": True,
            "description": "Look buyers up in 会员通 (member.mGetMemberInfoByOpenIdList)",
        },
        "page_size": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100},
        "start_date": {
            "type": "string",
            "format": "date-time",
            "description": "Backfill horizon for the first sync",
        },
    },
}


class DouyinConnector(Connector):
    """会员通 members of the shop's buyers, orders and refunds from a Douyin shop."""

    name: ClassVar[str] = "douyin"
    title: ClassVar[str] = "Douyin shop 抖店"
    version: ClassVar[str] = "1"
    config_schema: ClassVar[dict[str, Any]] = CONFIG_SCHEMA
    rate_limit: ClassVar[float] = 10.0
    # douyin_open_id (weak) and douyin_union_id (strong) are built-in kinds.
    identifier_kinds: ClassVar[Sequence[IdentifierKind]] = ()

    def __init__(self, config: dict[str, Any], context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.client = DouyinClient(self)

    @property
    def shop_id(self) -> str:
        return str(self.config["shop_id"])

    @property
    def member_app_id(self) -> int | str:
        """``app_id`` as the member APIs take it (an integer when it is numeric)."""
        value = str(self.config["app_id"])
        return int(value) if value.isdigit() else value

    @property
    def open_id_scope(self) -> str:
        return str(self.config["app_id"])

    @property
    def union_id_scope(self) -> str:
        return str(self.config.get("brand_id") or self.config["shop_id"])

    def streams(self) -> Sequence[Stream]:
        members: tuple[Stream, ...] = (MembersStream(self),) if self.sync_members else ()
        return (*members, OrdersStream(self), RefundsStream(self))

    @property
    def sync_members(self) -> bool:
        return bool(self.config.get("sync_members", True))

    async def check(self) -> CheckResult:
        """One cheap authenticated call: the first order updated in the last hour."""
        try:
            end = int(self.now().timestamp())
            await self.client.call(
                "order.searchList",
                {
                    "update_time_start": end - 3600,
                    "update_time_end": end,
                    "order_by": "update_time",
                    "order_asc": True,
                    "page": 0,
                    "size": 1,
                },
                page=0,
            )
        except Exception as exc:  # check() never raises
            return CheckResult(False, f"Douyin shop {self.config.get('shop_id')}: {exc}")
        return CheckResult(True, f"Douyin shop {self.shop_id}: orders readable")

    async def refresh_token(self) -> None:
        """``/token/refresh`` with the refresh token (Doudian rotates it); a 自用型 app without a
        usable refresh token mints a new one with ``/token/create`` (authorization_self)."""
        data: dict[str, Any] | None = None
        refresh = str(self.config.get("refresh_token") or "")
        if refresh:
            try:
                data = await self.client.token_call(
                    "token.refresh", {"grant_type": "refresh_token", "refresh_token": refresh}
                )
            except AuthFailed:
                if not self.config.get("self_built"):
                    raise
                log.info("douyin refresh token refused; creating a token (authorization_self)")
        if data is None:
            if not self.config.get("self_built"):
                raise AuthFailed(
                    "douyin access token expired and there is no refresh token: re-authorise "
                    "the app for this shop"
                )
            data = await self.client.token_call(
                "token.create", {"grant_type": "authorization_self", "shop_id": self.shop_id}
            )
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise AuthFailed("douyin token endpoint answered without an access_token")
        secrets = {"access_token": access}
        if isinstance(data.get("refresh_token"), str) and data["refresh_token"]:
            secrets["refresh_token"] = data["refresh_token"]
        self.config.update(secrets)
        await self.context.save_secrets(secrets)
