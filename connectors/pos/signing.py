"""Signatures used by the POS connector (pure functions).

Pull API (Pospal/银豹 open platform, PLATFORMS.md §8)
    Every call is a JSON ``POST`` with two headers: ``time-stamp`` (unix milliseconds) and
    ``data-signature``. PLATFORMS.md lists the composition as *unverified*; we use
    ``upper(hex(MD5(appKey + raw_json_body)))`` over the UTF-8 bytes of the exact body sent, which
    is what independent public Pospal clients do (e.g. the PHP package ``hanson/pospal``:
    ``strtoupper(md5($appKey . json_encode($params)))``; a Ruby client sends the same digest in
    lower case, so verification here is case-insensitive). The timestamp is *not* covered by the
    signature; the server only bounds its skew.

Signed push (our contract for POS middleware, see :mod:`connectors.pos.webhooks`)
    ``X-MH-Timestamp: <unix seconds>`` and
    ``X-MH-Signature: v1=<hex HMAC-SHA256(webhook_secret, "<timestamp>.<raw body>")>``. Several
    comma-separated ``v1=`` values may be sent during a secret rotation; any match is accepted.
    Requests more than :data:`PUSH_TOLERANCE` seconds away from our clock are refused (replay
    protection); the receipt number makes a replay inside the window harmless (idempotent).
"""

from __future__ import annotations

import hashlib
import hmac

PUSH_TOLERANCE = 300
"""Seconds a push timestamp may differ from our clock."""


def pospal_signature(app_key: str, body: str | bytes) -> str:
    """``data-signature`` for a Pospal open-API call: upper-case hex MD5 of ``appKey`` followed by
    the raw JSON body, as UTF-8 bytes."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return hashlib.md5(app_key.encode("utf-8") + raw).hexdigest().upper()


def pospal_signature_ok(app_key: str, body: str | bytes, signature: str) -> bool:
    """Constant-time, case-insensitive check of a ``data-signature`` header."""
    expected = pospal_signature(app_key, body)
    return hmac.compare_digest(expected.encode(), signature.strip().upper().encode())


def push_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 over ``"<timestamp>.<raw body>"`` keyed with the webhook secret."""
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def push_signature_header(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-MH-Signature`` header value: ``v1=<hex>``."""
    return f"v1={push_signature(secret, timestamp, body)}"


class PushSignatureError(Exception):
    """A push failed verification (the message says why; safe to return to the sender)."""


def verify_push(
    secret: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float,
    tolerance: int = PUSH_TOLERANCE,
) -> int:
    """Verify a signed push; returns its timestamp or raises :class:`PushSignatureError`.

    The timestamp is checked first (so a stale replay is refused even with a valid signature),
    then every ``v1=`` signature in the header is compared in constant time.
    """
    if not secret:
        raise PushSignatureError("webhook secret is not configured for this connection")
    if not timestamp or not timestamp.strip().isdigit():
        raise PushSignatureError("missing or malformed X-MH-Timestamp")
    ts = int(timestamp.strip())
    if abs(now - ts) > tolerance:
        raise PushSignatureError(f"X-MH-Timestamp is more than {tolerance}s from server time")
    if not signature:
        raise PushSignatureError("missing X-MH-Signature")
    expected = push_signature(secret, timestamp.strip(), body).encode()
    for part in signature.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == "v1" and hmac.compare_digest(expected, value.strip().lower().encode()):
            return ts
    raise PushSignatureError("X-MH-Signature does not match the body")
