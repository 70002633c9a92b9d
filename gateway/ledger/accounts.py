"""Account kinds: what each ledger account may do.

The ledger itself treats every account the same (lots, holds, allocations); these flags are the
policy the callers and the ledger's own guards consult: a member may only *spend* from a spendable
account, only expiring accounts get a default expiry, and tier rules count tier-qualifying ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from gateway.settings import Settings

MAX_AMOUNT = 1_000_000_000
"""Largest single amount (points, growth or fen) one write may move: far above any real award,
small enough that no sum of a member's lots can overflow a BIGINT."""


@dataclass(frozen=True)
class AccountKind:
    name: str
    spendable: bool
    expiring: bool
    tier_qualifying: bool
    default_ttl_days: int | None


def _points_ttl_days() -> int:
    # Read the same variable as ``Settings.from_env`` without requiring the rest of the settings
    # (e.g. the secret key) at import time; ``configure`` applies a loaded ``Settings`` later.
    raw = os.environ.get("MEMBERHUB_POINTS_TTL_DAYS")
    return int(raw) if raw else Settings.default_points_ttl_days


ACCOUNTS: dict[str, AccountKind] = {
    "points": AccountKind("points", True, True, False, _points_ttl_days()),
    # Growth value only qualifies tiers: members cannot spend it, but refund reversal and merges
    # may still debit it (those are not member spends).
    "growth": AccountKind("growth", False, False, True, None),
    # Stored value in fen: spendable, never expires.
    "stored_value": AccountKind("stored_value", True, False, False, None),
}


def configure(settings: Settings) -> None:
    """Apply runtime settings (the points TTL) to the account table; the app calls this once."""
    ttl = settings.default_points_ttl_days
    ACCOUNTS["points"] = replace(ACCOUNTS["points"], default_ttl_days=ttl)
