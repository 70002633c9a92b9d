"""Youzan 有赞云 connector: orders and refunds of one shop (kdt_id).

Syncs ``orders`` from ``youzan.trades.sold.get/4.0.4`` (one-day ``update_time`` windows,
``page_no`` ≤ 100 handled by splitting windows, page-shift duplicates removed by ``tid``) and
``refunds`` from ``youzan.trade.refund.search/3.0.0`` (response shape assumed). There is no
request signature: a token from the silent grant (``/auth/token``, PLATFORMS.md §5.1) goes in
the URL query and is renewed on gateway error 4203. Buyers are identified by ``yz_open_id``
(strong ``youzan_open_id``), the bound ``buyer_phone`` (strong ``phone``) and ``outer_user_id``
(weak ``wechat_openid`` when a WeChat appid is configured).
"""

from __future__ import annotations

from connectors.youzan.connector import YouzanConnector
from gateway.sync import hookimpl

__all__ = ["YouzanConnector"]


@hookimpl
def register_connectors():
    return [YouzanConnector]
