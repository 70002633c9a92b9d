"""Tmall / Taobao connector (Taobao Open Platform, TOP).

Syncs a seller's shop CRM members (``taobao.crm.members.increment.get.privy``: ouid per shop),
trades (``taobao.trades.sold.increment.get`` in ≤ 1-day ``modified`` windows paged from the last
page backwards, then ``taobao.trade.fullinfo.get`` per trade) and successful refunds
(``taobao.refunds.receive.get``), and serves the Tmall 品牌会员通 SPI callbacks (member query,
bind, register) as webhooks.

Platform facts relied on (PLATFORMS.md §1): TOP signing (md5 / HMAC-MD5 / HMAC-SHA256 over the
sorted ``name+value`` params, upper-case hex), system params in the query of
``POST /router/rest`` and application params in the form body, GMT+8 timestamps within 10
minutes of TOP's clock, the ``error_response`` envelope (7 ban seconds, 25 signature, 27 session,
31 timestamp, ``isp.*`` retryable), OAuth refresh at ``oauth.taobao.com/token``; identifiers
``ouid`` (strong per shop), ``omid`` (strong, brand-wide), ``buyer_open_uid`` (weak, per appkey).
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors.tmall.connector import TAOBAO_OPEN_UID, TmallConnector
from connectors.tmall.webhooks import WEBHOOKS
from gateway.identifiers import IdentifierKind
from gateway.sync import Webhook, hookimpl
from gateway.sync.contract import Connector

__all__ = ["TmallConnector"]


@hookimpl
def register_connectors() -> Sequence[type[Connector]]:
    return [TmallConnector]


@hookimpl
def register_identifier_kinds() -> Sequence[IdentifierKind]:
    return [TAOBAO_OPEN_UID]


@hookimpl
def register_webhooks() -> Sequence[Webhook]:
    return list(WEBHOOKS)
