"""Webhook signatures: what memberhub sends, and the check a receiver runs.

Every delivery carries::

    X-Memberhub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

where ``secret`` is the subscription's signing secret (``whsec_…``, shown once when the
subscription is created) used as UTF-8 bytes. The format is the one the mall's payment callback
accepts (``gateway.mall.payments``), so a brand verifies both the same way. The timestamp is signed
with the body; receivers should refuse signatures more than ``tolerance`` seconds from their clock
(a captured request cannot be replayed later) and de-duplicate on ``X-Memberhub-Delivery``.
"""

from __future__ import annotations

import base64
import os

from gateway.signatures import HEADER, TOLERANCE_SECONDS, SignatureError, sign, verify

EVENT_HEADER = "X-Memberhub-Event"
DELIVERY_HEADER = "X-Memberhub-Delivery"
SECRET_PREFIX = "whsec_"
__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "HEADER",
    "SECRET_PREFIX",
    "TOLERANCE_SECONDS",
    "SignatureError",
    "new_secret",
    "sign",
    "verify",
]


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + 32 random bytes (URL-safe base64, no padding)."""
    return SECRET_PREFIX + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
