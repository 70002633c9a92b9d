"""Douyin shop (抖店 open platform, jinritemai) connector.

Syncs, per shop (streams run in this order):

- **members** — 会员通 members of the shop's buyers: there is no member list API, so the buyers'
  ``doudian_open_id`` s are taken from ``order.searchList`` windows and looked up with
  ``member.mGetMemberInfoByOpenIdList`` (≤ 10 open ids a call): weak ``douyin_open_id``, strong
  ``douyin_union_id``, and ``phone`` only when the platform returns it in plaintext (buyers with
  a paid order in the last 90 days);
- **orders** — ``order.searchList`` by update time (Unix seconds, ``page`` from 0, ≤ 100 rows,
  one-day windows), amounts already in fen, buyer = ``doudian_open_id`` (weak
  ``douyin_open_id``; receiver phones are only masked/encrypted and are not used);
- **refunds** — succeeded after-sales from ``afterSale.List`` (response shape assumed);
- **member push** — webhook ``member_join``: member joins / points changes verified with the
  ``event-sign`` header (MD5(app_key + body + app_secret), [SDK] evidence).

Platform facts relied on (PLATFORMS.md §3): requests are ``POST /<method with / for .>`` signed
with MD5 or HMAC-SHA256 over ``secret + app_key… method… param_json… timestamp… v2 + secret``
(canonical raw-UTF-8 JSON body); errors use ``code/sub_code`` (``x-open-no-old-err-code: 1``);
``isv.access-token-expired`` is refreshed via ``/token/refresh``; 60000 is the rate limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors.douyin.connector import DouyinConnector
from connectors.douyin.webhooks import webhooks
from gateway.identifiers import IdentifierKind
from gateway.sync import hookimpl
from gateway.sync.contract import Connector
from gateway.sync.hookspecs import Webhook


@hookimpl
def register_connectors() -> Sequence[type[Connector]]:
    return [DouyinConnector]


@hookimpl
def register_identifier_kinds() -> Sequence[IdentifierKind]:
    return list(DouyinConnector.identifier_kinds)


@hookimpl
def register_webhooks() -> Sequence[Webhook]:
    return webhooks()


__all__ = ["DouyinConnector"]
