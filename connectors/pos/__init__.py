"""Offline POS connector (``pos``): a brand's store receipts → orders, refunds and members.

Three ways in, one mapping (:mod:`connectors.pos.mapping`), so a receipt is one order whichever
way (and however often) it arrives:

1. **Pull** — stream ``tickets``: a Pospal/银豹-style cloud POS open API
   (``ticketOpenApi/queryTicketPages``, MD5 ``data-signature`` over appKey + body, ≤ 1-day windows,
   ``postBackParameter`` paging; :mod:`connectors.pos.client`).
2. **Push** — webhook ``tickets``: POS middleware POSTs each closed receipt, HMAC-SHA256 signed
   with a timestamp; the receipt no. is the idempotency key (:mod:`connectors.pos.webhooks`).
3. **Batch files** — stream ``csv_files``: T+1 CSV drops (header + lines files and a ``.done``
   marker, UTF-8 or GBK; :mod:`connectors.pos.csv_format`).

Platform facts relied on (PLATFORMS.md §8): Pospal ticket fields (``sn``, ``datetime`` in GMT+8,
``customerUid`` 0 = walk-in, ``ticketType`` SELL / SELL_RETURN, ``invalid`` = voided, yuan
amounts, ``items[]``) and its paging rule (stop on a short page). Assumed and documented here: the
signature composition, the error-code table, the 24-hour window limit and our field additions
(``storeCode``, ``guideCode``, ``memberCardNo``, ``memberPhone``, ``originalSn``,
``productBarcode``). Identifiers: member card → strong ``pos_card`` (scope ``brand_scope``), full
phone → ``phone``; masked phones are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors.pos.connector import PosConnector
from connectors.pos.webhooks import TICKETS_WEBHOOK
from gateway.sync import Connector, Webhook, hookimpl


@hookimpl
def register_connectors() -> Sequence[type[Connector]]:
    return [PosConnector]


@hookimpl
def register_webhooks() -> Sequence[Webhook]:
    return [TICKETS_WEBHOOK]


__all__ = ["PosConnector", "register_connectors", "register_webhooks"]
