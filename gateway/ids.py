"""Identifier helpers: time-ordered UUIDv7 for new rows and uuid5 for derived, replay-safe ids.

UUIDv7 keeps primary keys roughly insertion-ordered (good B-tree locality and a natural keyset
cursor); uuid5 lets a replayed event derive exactly the same transfer id and idempotency key.
"""

from __future__ import annotations

import os
import time
import uuid

NAMESPACE = uuid.UUID("6b1c3f4e-8a52-4d0e-9a3e-2f6d9c1b7e10")


def uuid7() -> uuid.UUID:
    """A RFC 9562 version-7 UUID: 48-bit Unix milliseconds, then random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def derived_id(tenant_id: uuid.UUID, *parts: object) -> uuid.UUID:
    """A deterministic id for (tenant, parts...), e.g. (tenant, source, event_id, intent)."""
    name = "\x1f".join([str(tenant_id), *(str(p) for p in parts)])
    return uuid.uuid5(NAMESPACE, name)
