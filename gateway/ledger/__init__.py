"""The ledger: points, growth value and stored value as append-only transfers over lots.

Every function takes a tenant-scoped ``Tx`` (the caller owns the transaction) and filters every
statement on ``tx.tenant_id``. See ``gateway/README.md`` ("The ledger") for the contract and the
invariants ``verify`` checks. Modules:

- ``accounts``: account kinds and ``MAX_AMOUNT``;
- ``credits`` / ``debits`` / ``holds``: the write paths (lots, allocations, two-phase spending);
- ``expiry``: the sweeper; ``merge``: ONE ID merge / unmerge moves;
- ``queries``: batch reads for DataLoaders; ``verify``: the invariant checker;
- ``store`` / ``validation`` / ``models``: shared steps, input checks, result types.
"""

from gateway.ledger.accounts import ACCOUNTS, MAX_AMOUNT, AccountKind, configure
from gateway.ledger.credits import DEFAULT_EXPIRY, credit
from gateway.ledger.debits import debit
from gateway.ledger.expiry import expire_due
from gateway.ledger.holds import capture, hold, release
from gateway.ledger.merge import merge_balances, unmerge_balances
from gateway.ledger.models import (
    BalanceView,
    ExpireReport,
    HoldResult,
    TransferResult,
    Violation,
)
from gateway.ledger.queries import (
    amounts_by_source,
    balances_for,
    get_holds,
    get_transfers,
    transfers_for,
)
from gateway.ledger.validation import request_hash
from gateway.ledger.verify import verify

__all__ = [
    "ACCOUNTS",
    "DEFAULT_EXPIRY",
    "MAX_AMOUNT",
    "AccountKind",
    "BalanceView",
    "ExpireReport",
    "HoldResult",
    "TransferResult",
    "Violation",
    "amounts_by_source",
    "balances_for",
    "capture",
    "configure",
    "credit",
    "debit",
    "expire_due",
    "get_holds",
    "get_transfers",
    "hold",
    "merge_balances",
    "release",
    "request_hash",
    "transfers_for",
    "unmerge_balances",
    "verify",
]
