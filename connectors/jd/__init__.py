"""JD 京东 (JOS 宙斯) connector: orders and refunds of one POP shop (vendor).

Syncs ``orders`` from ``jingdong.pop.order.search`` (one-day windows on the modified time, JD's
300-page cap handled by splitting windows) and ``refunds`` from
``jingdong.pop.afs.soa.refundapply.queryPageList``. Requests are signed with the JOS md5 rule
(PLATFORMS.md §2.1, vector T8, UTF-8); errors follow the ``error_response`` envelope (§2.3);
expired tokens are refreshed through JD OAuth 2. Buyers are identified by ``xid_buyer``
(strong ``jd_xid``, registered here) and ``open_id_buyer`` (weak ``jd_open_id``); the parcel
receiver's mobile is only ever a weak ``receiver_phone``.
"""

from __future__ import annotations

from connectors.jd.connector import JD_XID, JdConnector
from gateway.sync import hookimpl

__all__ = ["JD_XID", "JdConnector"]


@hookimpl
def register_connectors():
    return [JdConnector]


@hookimpl
def register_identifier_kinds():
    return [JD_XID]
