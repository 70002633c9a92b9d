"""WeChat connector: the official account's followers (pull) and the mini-program login relay
plus official-account / member-card server callbacks (push).

WeChat offers no order list for a brand's own mini-program orders, so this connector yields
members and points events only. Platform facts it relies on (PLATFORMS.md §4):

- ``/cgi-bin/token`` access tokens (7200 s; errcode 40001/40014/42001 → refresh), the
  ``{errcode, errmsg}`` envelope with HTTP 200, 45009/45011 rate limits, -1 busy;
- ``/cgi-bin/user/get`` (next_openid paging, 10 000 a page) + ``/cgi-bin/user/info/batchget``
  (100 a call) for followers, with unionid when the apps are bound to one Open Platform account;
- ``/sns/jscode2session`` and ``/wxa/business/getuserphonenumber`` for login (single-use codes);
- server-callback signatures ``sha1(sorted(token, timestamp, nonce[, Encrypt]))`` and the
  AES-256-CBC message envelope; member-card events ``user_get_card`` / ``update_member_card``.

Identifiers: ``wechat_openid`` (weak, per appid), ``wechat_unionid`` (strong, per Open Platform
account), ``phone`` (strong, consented via getPhoneNumber) and the new ``wechat_card_code``
(strong, per card_id).
"""

from __future__ import annotations

from connectors.wechat.connector import CARD_CODE, WechatConnector
from connectors.wechat.webhooks import WEBHOOKS
from gateway.sync import hookimpl


@hookimpl
def register_connectors():  # type: ignore[no-untyped-def]
    return [WechatConnector]


@hookimpl
def register_identifier_kinds():  # type: ignore[no-untyped-def]
    return [CARD_CODE]


@hookimpl
def register_webhooks():  # type: ignore[no-untyped-def]
    return list(WEBHOOKS)


__all__ = ["CARD_CODE", "WechatConnector"]
