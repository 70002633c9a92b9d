"""The signed payment callback: ``POST /mall/{tenant}/payments``.

A points + cash or cash redemption waits in ``awaiting_payment`` until the brand's payment
service reports the cash part. That report moves money-like value (it captures held points and
issues the reward), so it must come from the payment service and no one else: it is signed with
a key only the deployment and that service share.

**The key** is derived per tenant from the deployment secret (``MEMBERHUB_SECRET_KEY``), like the
identifier-hashing key (``gateway.identifiers.tenant_key``): nothing is stored, each brand gets a
different key, and a leaked key exposes one brand only. ``memberhub mall payment-key --tenant T``
prints it (hex) for the brand's payment service.

**The signature** is memberhub's one format (``gateway.signatures``, Stripe-style)::

    X-Memberhub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>." + raw body)>

The timestamp is signed with the body, and a signature older (or newer) than ``tolerance``
seconds is refused, so a captured request cannot be replayed later; within the window a replay
is harmless because ``confirm_payment`` is idempotent on ``payment_ref``. Several ``v1=`` entries
may be sent (key rotation); any one matching is enough. Comparison is constant-time.

**The body** is JSON ``{"redemption_id", "payment_ref", "amount_fen", "status": "paid"|"failed"}``.
Answers: 200 ``{"redemption_id", "status", "replayed"}``; 400 malformed body or wrong amount;
401 missing / bad / stale signature (nothing is read or changed); 404 unknown tenant or
redemption (another tenant's redemption is indistinguishable from a missing one); 409 the
redemption can no longer be paid (cancelled, expired, paid by another payment) — refund it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import InvalidInput, InvalidTransition, NotFound
from gateway.signatures import HEADER, TOLERANCE_SECONDS, SignatureError, sign, verify

if TYPE_CHECKING:
    from gateway.hub import Hub
    from gateway.storage.db import Tx

log = logging.getLogger("memberhub.mall.payments")
# The signature format is shared with outbound webhooks; re-exported for the payment side.
__all__ = [
    "HEADER",
    "TOLERANCE_SECONDS",
    "SignatureError",
    "apply",
    "handle",
    "payment_key",
    "sign",
    "verify",
]
MAX_BODY = 64 * 1024
_KEY_CONTEXT = b"memberhub/mall-payments/v1/"


def payment_key(secret_key: bytes | str, tenant_id: uuid.UUID) -> bytes:
    """The tenant's callback key: HMAC-SHA256(deployment secret, context ‖ tenant id).

    A different context string from the identifier key's, so the two keys are unrelated even
    though both come from the same secret."""
    secret = secret_key.encode() if isinstance(secret_key, str) else secret_key
    if not secret:
        raise ValueError("the deployment secret key is empty")
    return hmac.new(secret, _KEY_CONTEXT + tenant_id.bytes, hashlib.sha256).digest()


def _error(status: int, message: str, code: str) -> Response:
    return JSONResponse({"error": message, "code": code}, status_code=status)


def _parse(body: bytes) -> tuple[uuid.UUID, str, int, str]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InvalidInput("body must be JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInput("body must be a JSON object")
    try:
        rid = uuid.UUID(str(data.get("redemption_id")))
    except ValueError as exc:
        raise InvalidInput("redemption_id must be a UUID", field="redemption_id") from exc
    ref = data.get("payment_ref")
    if not isinstance(ref, str) or not ref.strip() or len(ref) > 128:
        raise InvalidInput("payment_ref must be 1-128 characters", field="payment_ref")
    amount = data.get("amount_fen")
    if type(amount) is not int or amount < 0:
        raise InvalidInput("amount_fen must be a non-negative integer (fen)", field="amount_fen")
    status = data.get("status")
    if status not in ("paid", "failed"):
        raise InvalidInput('status must be "paid" or "failed"', field="status")
    return rid, ref, amount, status


async def apply(tx: Tx, body: bytes) -> dict[str, Any]:
    """Apply a verified callback body inside ``tx``: ``paid`` confirms, ``failed`` cancels."""
    from gateway.mall import service

    rid, ref, amount, status = _parse(body)
    if status == "paid":
        r = await service.confirm_payment(tx, redemption_id=rid, payment_ref=ref, amount_fen=amount)
    else:
        r = await service.cancel(tx, redemption_id=rid, reason=f"payment {ref[:100]} failed")
    return {"redemption_id": str(r.id), "status": r.status, "replayed": r.replayed}


async def handle(hub: Hub, request: Request) -> Response:
    """The starlette endpoint (see the module docstring for the answers)."""
    from gateway.tenants import get_tenant

    tenant = await get_tenant(hub.db, request.path_params["tenant"])
    if tenant is None:
        return _error(404, "not found", "NOT_FOUND")
    body = await request.body()
    if len(body) > MAX_BODY:
        return _error(413, "body too large", "TOO_LARGE")
    try:
        verify(
            payment_key(hub.settings.secret_key, tenant.id),
            request.headers.get(HEADER),
            body,
            time.time(),
        )
    except SignatureError as exc:
        log.warning("mall payment callback for %s refused: %s", tenant.slug, exc)
        return _error(401, str(exc), "BAD_SIGNATURE")
    try:
        async with hub.db.tenant_tx(tenant.id) as tx:
            result = await apply(tx, body)
    except InvalidInput as exc:
        return _error(400, exc.message, exc.code)
    except NotFound:
        return _error(404, "not found", "NOT_FOUND")
    except InvalidTransition as exc:
        return _error(409, exc.message, exc.code)
    return JSONResponse(result)
