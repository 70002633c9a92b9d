"""Signed ticket push: ``POST /channels/{tenant}/{channel}/hooks/tickets``.

The contract a POS (or its middleware) implements to push each closed receipt as it happens:

- body: **one** ticket as JSON, in the same shape the pull API returns (Pospal-style ``sn``,
  ``datetime``, ``ticketType`` ``SELL``/``SELL_RETURN``, ``invalid``, ``customerUid``,
  ``totalAmount``, ``items[]`` … plus ``storeCode``, ``guideCode``, ``memberCardNo``,
  ``memberPhone``, ``originalSn``; see :mod:`connectors.pos.mapping`), UTF-8;
- headers: ``X-MH-Timestamp`` (unix seconds, within ±5 minutes of our clock) and
  ``X-MH-Signature: v1=<hex HMAC-SHA256(webhook_secret, "<timestamp>.<raw body>")>``
  (:mod:`connectors.pos.signing`);
- delivery is at least once: the receipt number is the idempotency key, so a retried push changes
  nothing, and the same receipt arriving later by API or CSV is the same order.

Answers: ``200 {"ok": true, "order": <order receipt no.>, "receipt": <sn>, "records": [...]}``;
``401 {"ok": false, "error": ...}`` for a bad signature or stale timestamp (nothing applied — do
not retry without fixing the clock or secret); ``400`` for a malformed ticket and ``422`` when the
hub rejects it (both permanent); anything else (5xx) may be retried.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from connectors.pos.mapping import (
    RETURN,
    VOID_RETURN,
    TicketError,
    records_in_order,
    ticket_from_json,
    ticket_records,
)
from connectors.pos.signing import PushSignatureError, verify_push
from gateway.sync import Connector, PushContext, RecordError, Webhook, WebhookReply, WebhookRequest

TIMESTAMP_HEADER = "x-mh-timestamp"
SIGNATURE_HEADER = "x-mh-signature"


def _reply(status: int, body: dict[str, Any]) -> WebhookReply:
    return WebhookReply(status=status, body=json.dumps(body, ensure_ascii=False).encode("utf-8"))


async def handle_ticket_push(
    connector: Connector, request: WebhookRequest, push: PushContext
) -> WebhookReply:
    """Verify, map and apply one pushed ticket."""
    if request.method.upper() != "POST":
        return _reply(405, {"ok": False, "error": "use POST"})
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        verify_push(
            connector.config.get("webhook_secret"),
            headers.get(TIMESTAMP_HEADER),
            headers.get(SIGNATURE_HEADER),
            request.body,
            now=connector.now().timestamp(),
        )
    except PushSignatureError as exc:
        return _reply(401, {"ok": False, "error": str(exc)})
    try:
        ticket = ticket_from_json(json.loads(request.body, parse_float=Decimal))
        records = ticket_records(ticket, str(connector.config["brand_scope"]))
    except (ValueError, UnicodeDecodeError, RecordError) as exc:
        # TicketError (incl. blind returns) and JSON errors are ValueErrors
        message = str(exc) if isinstance(exc, TicketError) else f"body is not a ticket: {exc}"
        return _reply(400, {"ok": False, "error": message})
    returned = ticket.kind in (RETURN, VOID_RETURN)
    order = ticket.original_receipt_no if returned else ticket.receipt_no
    outcomes = await push.apply(records_in_order(records)) if records else []
    rejected = [o for o in outcomes if o.action == "rejected"]
    if rejected:
        error = "; ".join(f"{o.record_type} {o.key}: {o.error}" for o in rejected)
        return _reply(422, {"ok": False, "error": error})
    return _reply(
        200,
        {
            "ok": True,
            "order": order,
            "receipt": ticket.receipt_no,
            "records": [
                {"type": o.record_type, "key": o.key, "action": o.action} for o in outcomes
            ],
        },
    )


TICKETS_WEBHOOK = Webhook(
    connector="pos",
    name="tickets",
    handler=handle_ticket_push,
    description="Signed push of one closed POS receipt (sale, return or void) as JSON.",
)
