"""What a webhook handler may do with a verified push: apply records, look a member up.

The gateway builds a :class:`PushContext` per request, bound to the tenant and channel the URL
names (after the handler has verified the platform's signature with that connection's secrets),
and applies pushed records through the same code path as a pull sync — so a push and a later pull
of the same order are one order, and a retried push changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.identity.model import IdentifierInput
from gateway.sync.records import Record


@dataclass(frozen=True)
class ApplyOutcome:
    """What applying one record did. ``action`` is ``created``, ``updated``, ``unchanged`` or
    ``rejected`` (then ``error`` says why; nothing of that record was written)."""

    record_type: str
    key: str
    action: str
    member_id: uuid.UUID | None = None
    error: str | None = None


@dataclass(frozen=True)
class MemberView:
    """What a platform callback may learn about a member (e.g. Tmall's member-query SPI)."""

    member_id: uuid.UUID
    points: int
    growth: int
    level: str | None = None


class PushContext(Protocol):
    channel: str

    async def apply(self, records: Sequence[Record]) -> list[ApplyOutcome]:
        """Apply records in one transaction (idempotently) and say what happened to each."""
        ...

    async def lookup(self, identifiers: Sequence[IdentifierInput]) -> MemberView | None:
        """The member any of ``identifiers`` resolves to, or ``None``."""
        ...
