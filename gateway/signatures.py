"""The one HMAC signature format memberhub speaks, inbound and outbound.

::

    X-Memberhub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>." + raw body)>

Stripe-style, so payment and integration engineers recognise it. The timestamp is signed with the
body and a signature more than ``tolerance`` seconds from the verifier's clock is refused (a
captured request cannot be replayed later). Several ``v1=`` entries may be sent (key rotation);
any one matching is enough; other schemes are ignored; comparison is constant-time. The mall's
payment callback verifies it (``gateway.mall.payments``) and outbound webhooks carry it
(``gateway.webhooks.signing``), so a brand implements one check for both.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

HEADER = "X-Memberhub-Signature"
TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The signature is missing, malformed, stale or does not match the body."""


def _key(key: str | bytes) -> bytes:
    raw = key.encode() if isinstance(key, str) else key
    if not raw:
        raise ValueError("the signing key is empty")
    return raw


def _mac(key: bytes, body: bytes, timestamp: int) -> str:
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(key: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Memberhub-Signature`` value for ``body`` sent at ``timestamp``."""
    return f"t={int(timestamp)},v1={_mac(_key(key), body, int(timestamp))}"


def verify(
    key: str | bytes,
    header: str | None,
    body: bytes,
    now: int | float | datetime,
    tolerance: int = TOLERANCE_SECONDS,
) -> int:
    """Check ``header`` against the raw ``body``; returns the signed timestamp or raises
    :class:`SignatureError` saying what is wrong."""
    if not header or not header.strip():
        raise SignatureError(f"missing {HEADER} header")
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {HEADER} header: expected t=<unix>,v1=<hex>")
        if name == "t":
            if not (value.isascii() and value.isdigit()) or len(value) > 12:
                raise SignatureError(f"malformed {HEADER} header: t must be unix seconds")
            timestamp = int(value)
        elif name == "v1":
            macs.append(value.lower())
        # other schemes (v0, a future v2) are ignored, as Stripe does
    if timestamp is None or not macs:
        raise SignatureError(f"malformed {HEADER} header: expected t=<unix>,v1=<hex>")
    at = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(at - timestamp) > tolerance:
        raise SignatureError(
            f"stale signature: signed at {timestamp}, {int(abs(at - timestamp))} s from now "
            f"(tolerance {tolerance} s)"
        )
    expected = _mac(_key(key), body, timestamp)
    ok = False
    for candidate in macs:  # no early exit: time does not depend on which one matched
        ok |= hmac.compare_digest(expected, candidate)
    if not ok:
        raise SignatureError("bad signature")
    return timestamp
