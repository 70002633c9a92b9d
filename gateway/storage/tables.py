"""SQLModel tables.

Conventions (ARCHITECTURE §3, §5):
- Every tenant-owned table's primary key and unique keys lead with ``tenant_id`` so the schema can
  be distributed by tenant (Citus) and PostgreSQL row-level security can filter on it.
- Money is integer fen; points and growth are integers; datetimes are aware UTC (``AwareDateTime``).
- The ledger is append-only: only ``LedgerTransfer.remaining`` (a credit lot's unspent part), hold
  state and the per-(member, account) ``LedgerBalance`` row change in place.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from gateway.storage.types import AwareDateTime, utcnow


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default_factory=utcnow if not nullable else None,
        sa_type=AwareDateTime,
        nullable=nullable,
        index=index,
    )


def _money() -> Any:
    return Field(default=0, sa_type=BigInteger, nullable=False)


class Tenant(SQLModel, table=True):
    """A brand. The tenant registry itself is global (not tenant-scoped)."""

    __tablename__ = "tenant"
    id: uuid.UUID = Field(primary_key=True)
    slug: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    currency: str = Field(default="CNY", max_length=3)
    enabled_rules: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The active ``rule_config`` version (None: never configured → legacy ``enabled_rules``).
    rules_version: int | None = Field(default=None, nullable=True)
    created_at: datetime = _ts()


class ApiKey(SQLModel, table=True):
    """An API key: only its SHA-256 hash is stored; the plaintext is shown once at creation."""

    __tablename__ = "api_key"
    __table_args__ = (UniqueConstraint("tenant_id", "key_hash", name="uq_api_key_hash"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    name: str = Field(max_length=200)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64)
    scopes: str = Field(max_length=200)
    created_at: datetime = _ts()
    revoked_at: datetime | None = Field(default=None, sa_type=AwareDateTime, nullable=True)


class Member(SQLModel, table=True):
    """One person (ONE ID). A merged member keeps its row and points at its survivor."""

    __tablename__ = "member"
    # Who was merged into a member: read-through of tags and coupon limits, merge moves.
    __table_args__ = (Index("ix_member_merged_into", "tenant_id", "merged_into"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    status: str = Field(default="active", max_length=16)  # active | merged
    merged_into: uuid.UUID | None = Field(default=None, nullable=True)
    name: str | None = Field(default=None, max_length=200)
    gender: str | None = Field(default=None, max_length=16)
    birthday: date | None = Field(default=None)
    city: str | None = Field(default=None, max_length=100)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class MemberAttribute(SQLModel, table=True):
    """Provenance of a profile field: which channel said it, whether verified, and when."""

    __tablename__ = "member_attribute"
    tenant_id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID = Field(primary_key=True)
    field: str = Field(primary_key=True, max_length=32)
    value: str = Field(max_length=200)
    channel: str = Field(max_length=32)
    verified: bool = Field(default=False)
    observed_at: datetime = _ts()


class Identity(SQLModel, table=True):
    """A typed identifier ``(kind, scope, value)`` attached to a member.

    ``value`` is the matching key: a keyed hash for phones and emails, the platform id otherwise.
    ``display`` is what may be shown (masked for PII).
    """

    __tablename__ = "identity"
    __table_args__ = (Index("ix_identity_member", "tenant_id", "member_id"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    kind: str = Field(primary_key=True, max_length=32)
    scope: str = Field(primary_key=True, max_length=64)
    value: str = Field(primary_key=True, max_length=128)
    member_id: uuid.UUID
    display: str = Field(max_length=128)
    channel: str = Field(max_length=32)
    created_at: datetime = _ts()


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel", "external_id", name="uq_order_external"),
        Index("ix_order_member", "tenant_id", "member_id", "placed_at"),
    )
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    channel: str = Field(max_length=32)
    external_id: str = Field(max_length=64)
    member_id: uuid.UUID | None = Field(default=None, nullable=True)
    status: str = Field(max_length=24)
    total_fen: int = _money()
    paid_fen: int = _money()
    refunded_fen: int = _money()
    store_code: str | None = Field(default=None, max_length=64)
    guide_code: str | None = Field(default=None, max_length=64)
    placed_at: datetime = _ts()
    paid_at: datetime | None = Field(default=None, sa_type=AwareDateTime, nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_line"
    tenant_id: uuid.UUID = Field(primary_key=True)
    order_id: uuid.UUID = Field(primary_key=True)
    line_no: int = Field(primary_key=True)
    sku: str = Field(max_length=64)
    name: str = Field(max_length=200)
    category: str | None = Field(default=None, max_length=100)
    quantity: int
    unit_price_fen: int = _money()
    amount_fen: int = _money()


class OrderRefund(SQLModel, table=True):
    """One refund against an order; ``refund_id`` is the channel's (or client's) refund id."""

    __tablename__ = "order_refund"
    tenant_id: uuid.UUID = Field(primary_key=True)
    order_id: uuid.UUID = Field(primary_key=True)
    refund_id: str = Field(primary_key=True, max_length=64)
    amount_fen: int = _money()
    reason: str | None = Field(default=None, max_length=200)
    # What the refund reversed per account ({"reversed": {...}, "shortfall": {...}}), so a replayed
    # refund returns the original outcome and later refunds know what was already requested.
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()


class MemberEvent(SQLModel, table=True):
    """An immutable member event with a stable (uuid5-derived) id: replaying it is a no-op."""

    __tablename__ = "member_event"
    __table_args__ = (
        Index("ix_member_event_member", "tenant_id", "member_id", "occurred_at"),
        # The webhook outbox reads events in (created_at, id) order after a cursor.
        Index("ix_member_event_created", "tenant_id", "created_at", "id"),
    )
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID
    type: str = Field(max_length=48)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    occurred_at: datetime = _ts()
    created_at: datetime = _ts()


class LedgerBalance(SQLModel, table=True):
    """Running balance per (member, account): updated in the same transaction as each transfer."""

    __tablename__ = "ledger_balance"
    # Defence in depth: a bug in the ledger code can never commit a negative balance.
    __table_args__ = (
        CheckConstraint("available >= 0 AND held >= 0", name="ck_ledger_balance_nonneg"),
    )
    tenant_id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID = Field(primary_key=True)
    account: str = Field(primary_key=True, max_length=32)
    available: int = _money()
    held: int = _money()
    updated_at: datetime = _ts()


class LedgerTransfer(SQLModel, table=True):
    """An append-only ledger line for one member and account.

    ``amount`` is the signed change of the member's total (available + held). The implicit
    counterparty leg (``counterparty``: a ``sys:*`` account or ``member:<id>``) carries ``-amount``,
    so every transfer's legs sum to zero; member-to-member moves are two rows sharing a
    ``journal_id``. Credits are lots: ``remaining`` is their unspent part and ``expires_at`` their
    expiry.
    """

    __tablename__ = "ledger_transfer"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idem_key", name="uq_ledger_transfer_idem"),
        Index("ix_ledger_transfer_member", "tenant_id", "member_id", "account", "created_at"),
        Index("ix_ledger_transfer_lots", "tenant_id", "member_id", "account", "expires_at"),
        # Refund reversal sums what an order already earned / reversed (``amounts_by_source``).
        Index("ix_ledger_transfer_source", "tenant_id", "source_ref"),
        CheckConstraint("remaining IS NULL OR remaining >= 0", name="ck_ledger_transfer_remaining"),
    )
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    journal_id: uuid.UUID
    member_id: uuid.UUID
    account: str = Field(max_length=32)
    kind: str = Field(max_length=24)
    amount: int = Field(sa_type=BigInteger)
    counterparty: str = Field(max_length=64)
    reason: str = Field(max_length=200)
    source: str = Field(max_length=64)
    source_ref: str | None = Field(default=None, max_length=128)
    idem_key: str = Field(max_length=128)
    request_hash: str = Field(max_length=64)
    remaining: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    expires_at: datetime | None = Field(default=None, sa_type=AwareDateTime, nullable=True)
    hold_id: uuid.UUID | None = Field(default=None, nullable=True)
    related_id: uuid.UUID | None = Field(default=None, nullable=True)
    shortfall: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = _ts()


class LedgerHold(SQLModel, table=True):
    """A two-phase reservation: active → captured | released | expired, each exactly once.

    ``release_key`` / ``release_hash`` remember which idempotency key released the hold, so a
    replayed release returns the original and a reused key is refused (a capture's key lives on
    its transfer row instead).
    """

    __tablename__ = "ledger_hold"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idem_key", name="uq_ledger_hold_idem"),
        UniqueConstraint("tenant_id", "release_key", name="uq_ledger_hold_release"),
        Index("ix_ledger_hold_expiry", "tenant_id", "status", "expires_at"),
    )
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID
    account: str = Field(max_length=32)
    amount: int = Field(sa_type=BigInteger)
    captured: int = Field(default=0, sa_type=BigInteger)
    status: str = Field(default="active", max_length=16)
    reason: str = Field(max_length=200)
    idem_key: str = Field(max_length=128)
    request_hash: str = Field(max_length=64)
    expires_at: datetime = _ts()
    created_at: datetime = _ts()
    resolved_at: datetime | None = Field(default=None, sa_type=AwareDateTime, nullable=True)
    release_key: str | None = Field(default=None, max_length=128, nullable=True)
    release_hash: str | None = Field(default=None, max_length=64, nullable=True)


class LedgerAllocation(SQLModel, table=True):
    """Which lots a debit (transfer) or a hold drew from, and how much from each."""

    __tablename__ = "ledger_allocation"
    tenant_id: uuid.UUID = Field(primary_key=True)
    owner_id: uuid.UUID = Field(primary_key=True)  # debit transfer id or hold id
    lot_id: uuid.UUID = Field(primary_key=True)
    amount: int = Field(sa_type=BigInteger)


class MergeRecord(SQLModel, table=True):
    """What a merge moved, so ``unmerge`` can restore the exact prior state."""

    __tablename__ = "merge_record"
    __table_args__ = (Index("ix_merge_loser", "tenant_id", "loser_id"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    survivor_id: uuid.UUID
    loser_id: uuid.UUID
    reason: str = Field(max_length=200)
    snapshot: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="merged", max_length=16)  # merged | unmerged
    created_at: datetime = _ts()
    undone_at: datetime | None = Field(default=None, sa_type=AwareDateTime, nullable=True)


class IdempotencyRecord(SQLModel, table=True):
    """A claimed client idempotency key with the request fingerprint and the stored result."""

    __tablename__ = "idempotency_record"
    tenant_id: uuid.UUID = Field(primary_key=True)
    key: str = Field(primary_key=True, max_length=200)
    operation: str = Field(max_length=64)
    request_hash: str = Field(max_length=64)
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()


class ChannelConnection(SQLModel, table=True):
    """A channel a tenant syncs: which connector, its (non-secret) config and its secrets.

    ``channel`` is the tenant's own name for the connection (``tmall``, ``pos:sh``) — channels
    are data. ``secrets`` is a Fernet token (see ``gateway.sync.secrets``); plaintext secrets
    never reach the database, logs or the API.
    """

    __tablename__ = "channel_connection"
    tenant_id: uuid.UUID = Field(primary_key=True)
    channel: str = Field(primary_key=True, max_length=32)
    connector: str = Field(max_length=32)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    secrets: str = Field(default="")
    enabled: bool = Field(default=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class SyncState(SQLModel, table=True):
    """A stream partition's bookmark, written in the same transaction as the data it covers."""

    __tablename__ = "sync_state"
    tenant_id: uuid.UUID = Field(primary_key=True)
    channel: str = Field(primary_key=True, max_length=32)
    stream: str = Field(primary_key=True, max_length=64)
    partition: str = Field(primary_key=True, max_length=64)
    state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    run_id: uuid.UUID | None = Field(default=None)
    updated_at: datetime = _ts()


class SyncRun(SQLModel, table=True):
    """One sync of one channel: what it read and applied, its errors, and how it ended.

    ``status``: running → succeeded | failed | abandoned (a crashed run, found by its stale
    ``heartbeat_at`` when the next one starts). ``until`` is the sync start: no bookmark of
    this run passes it.
    """

    __tablename__ = "sync_run"
    __table_args__ = (Index("ix_sync_run_channel", "tenant_id", "channel", "started_at"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    channel: str = Field(max_length=32)
    connector: str = Field(max_length=32)
    status: str = Field(max_length=16)
    trigger: str = Field(max_length=16)
    started_at: datetime = _ts()
    until: datetime = _ts()
    heartbeat_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)
    stats: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    errors: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class RuleConfigVersion(SQLModel, table=True):
    """One immutable version of a tenant's rule config, with who saved it and why (the audit).
    ``tenant.rules_version`` points at the active one."""

    __tablename__ = "rule_config"
    tenant_id: uuid.UUID = Field(primary_key=True)
    version: int = Field(primary_key=True)
    document: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    digest: str = Field(max_length=64)
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)
    comment: str = Field(default="", max_length=500)


class MemberTier(SQLModel, table=True):
    """A member's tier state: the natural tier (by policy), its qualifying period, and an
    optional manual override (effective until ``override_until``)."""

    __tablename__ = "member_tier"
    tenant_id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID = Field(primary_key=True)
    tier: str = Field(max_length=32)
    since: datetime = _ts()
    period_start: datetime = _ts()
    period_end: datetime = _ts()
    override: str | None = Field(default=None, max_length=32, nullable=True)
    override_until: datetime | None = _ts(nullable=True)
    override_reason: str | None = Field(default=None, max_length=200, nullable=True)
    evaluated_at: datetime = _ts()
    updated_at: datetime = _ts()


class TierHistory(SQLModel, table=True):
    """Every tier change and keep-level review (append-only). ``id`` is derived from what caused
    it, so a replayed event or a re-run job records nothing twice."""

    __tablename__ = "tier_history"
    __table_args__ = (Index("ix_tier_history_member", "tenant_id", "member_id", "at"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID
    change: str = Field(max_length=24)
    from_tier: str | None = Field(default=None, max_length=32, nullable=True)
    to_tier: str = Field(max_length=32)
    natural: str = Field(max_length=32)
    reason: str = Field(max_length=300)
    rule: str = Field(max_length=64)
    growth: int = Field(default=0, sa_type=BigInteger)
    actor: str | None = Field(default=None, max_length=200, nullable=True)
    at: datetime = _ts()
    created_at: datetime = _ts()


class GrowthFact(SQLModel, table=True):
    """Growth value in business time (when the purchase or task happened), for tier periods.

    The ledger's ``growth`` account is the balance; this is the same movements stamped with the
    event's ``occurred_at`` (a year of orders synced in one afternoon still counts as that year).
    Facts stay on the member that earned them; a merged survivor's facts include its losers'.
    """

    __tablename__ = "growth_fact"
    __table_args__ = (Index("ix_growth_fact_member", "tenant_id", "member_id", "occurred_at"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID
    amount: int = Field(sa_type=BigInteger)
    occurred_at: datetime = _ts()
    source: str = Field(max_length=64)


class TaskProgress(SQLModel, table=True):
    """A member's progress on one task (counters per day/period/lifetime, streak, categories)."""

    __tablename__ = "task_progress"
    tenant_id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID = Field(primary_key=True)
    task: str = Field(primary_key=True, max_length=64)
    state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = _ts()


class TaskCompletion(SQLModel, table=True):
    """One paid completion; ``id`` = uuid5(tenant, member, task, occurrence) makes it once-only."""

    __tablename__ = "task_completion"
    __table_args__ = (Index("ix_task_completion_member", "tenant_id", "member_id", "at"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID
    task: str = Field(max_length=64)
    rule: str = Field(max_length=64)
    occurrence: str = Field(max_length=128)
    event_id: uuid.UUID
    points: int = Field(default=0, sa_type=BigInteger)
    growth: int = Field(default=0, sa_type=BigInteger)
    reason: str = Field(max_length=200)
    at: datetime = _ts()


class MemberGrant(SQLModel, table=True):
    """A reward granted to a member by a rule or bought in the points mall (coupon, gift, …),
    waiting for (or done with) fulfilment by the system that owns the reward kind."""

    __tablename__ = "member_grant"
    __table_args__ = (Index("ix_member_grant_member", "tenant_id", "member_id", "created_at"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID
    kind: str = Field(max_length=32)
    code: str = Field(max_length=64)
    quantity: int = Field(default=1)
    rule: str = Field(max_length=64)
    reason: str = Field(max_length=300)
    source: str = Field(max_length=128)
    status: str = Field(default="issued", max_length=16)  # issued | fulfilled | cancelled
    created_at: datetime = _ts()


class MallStock(SQLModel, table=True):
    """Units of a reward taken (held or sold). Available = the catalog's ``stock`` − ``taken``;
    ``UPDATE … SET taken = taken + n WHERE taken + n <= stock`` is the no-oversell guard."""

    __tablename__ = "mall_stock"
    tenant_id: uuid.UUID = Field(primary_key=True)
    reward: str = Field(primary_key=True, max_length=64)
    taken: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = _ts()


class MallRedemption(SQLModel, table=True):
    """One exchange in the points mall.

    ``status``: ``awaiting_payment`` (points held, stock taken, cash part unpaid) → ``completed``
    (points captured, grant issued) | ``cancelled`` | ``expired`` (hold released, stock back).
    All-points exchanges complete at once.
    """

    __tablename__ = "mall_redemption"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idem_key", name="uq_mall_redemption_key"),
        Index("ix_mall_redemption_member", "tenant_id", "member_id", "reward", "created_at"),
        Index("ix_mall_redemption_due", "tenant_id", "status", "expires_at"),
    )
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID
    reward: str = Field(max_length=64)
    # What was sold, as the catalog said at the time (the grant on payment uses it even if the
    # reward has left the catalog since).
    kind: str = Field(max_length=32)
    item: str = Field(max_length=64)
    title: str = Field(max_length=200)
    mode: str = Field(max_length=16)
    quantity: int = Field(default=1)
    points: int = Field(default=0, sa_type=BigInteger)
    cash_fen: int = Field(default=0, sa_type=BigInteger)
    status: str = Field(max_length=24)
    hold_id: uuid.UUID | None = Field(default=None, nullable=True)
    payment_ref: str | None = Field(default=None, max_length=128, nullable=True)
    idem_key: str = Field(max_length=128)
    request_hash: str = Field(max_length=64)
    period: str = Field(max_length=16)
    created_at: datetime = _ts()
    expires_at: datetime | None = _ts(nullable=True)
    resolved_at: datetime | None = _ts(nullable=True)
    note: str | None = Field(default=None, max_length=200, nullable=True)  # why cancelled/expired


class WebhookSubscription(SQLModel, table=True):
    """A receiver of signed member-event webhooks (``gateway.webhooks``).

    ``secret`` is the signing secret sealed with ``gateway.sync.secrets`` (Fernet, per-tenant
    key): it is shown once at creation and never stored in plain text. ``cursor_at`` /
    ``cursor_id`` is the fan-out position in ``member_event`` (created_at, id): every matching
    event up to it has a ``webhook_delivery`` row.
    """

    __tablename__ = "webhook_subscription"
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    description: str = Field(default="", max_length=200)
    secret: str
    active: bool = Field(default=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    cursor_at: datetime = _ts()
    cursor_id: uuid.UUID


class WebhookDelivery(SQLModel, table=True):
    """One event to send to one subscription: ``pending`` → ``delivered`` | ``dead``.

    Unique per (subscription, event), so fan-out is idempotent. ``event_created_at`` copies the
    event's ``created_at``: deliveries of one member are sent in (event_created_at, event_id)
    order, each only when no earlier one of the same subscription and member is still pending.
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "subscription_id", "event_id", name="uq_webhook_delivery_event"
        ),
        Index("ix_webhook_delivery_due", "tenant_id", "status", "next_attempt_at"),
        Index(
            "ix_webhook_delivery_member",
            "tenant_id",
            "subscription_id",
            "member_id",
            "event_created_at",
            "event_id",
        ),
        Index("ix_webhook_delivery_list", "tenant_id", "subscription_id", "event_created_at", "id"),
    )
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    member_id: uuid.UUID
    event_type: str = Field(max_length=48)
    event_created_at: datetime = _ts()
    status: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = _ts()
    last_status: int | None = Field(default=None, nullable=True)
    last_error: str | None = Field(default=None, max_length=500, nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    delivered_at: datetime | None = _ts(nullable=True)


GLOBAL_TABLES = ("tenant",)
TENANT_TABLES = tuple(
    t.name for t in SQLModel.metadata.sorted_tables if t.name not in GLOBAL_TABLES
)


class CouponTemplate(SQLModel, table=True):
    """A kind of coupon a brand issues (``gateway.coupons.templates``).

    ``kind``: ``amount_off`` (``threshold_fen`` + ``off_fen``), ``percent_off`` (``percent`` +
    ``cap_fen``, optional ``threshold_fen``), ``gift`` (``gift_sku``) or ``shipping``.
    ``validity``: ``fixed`` (``starts_at`` / ``ends_at``) or ``relative`` (``valid_days`` from
    issue). Scopes (``channels``, ``store_codes``, ``categories``) are JSON lists; null = all.
    ``issued`` is the guarded issuance counter (``UPDATE … WHERE issued < total_limit``).
    """

    __tablename__ = "coupon_template"
    __table_args__ = (UniqueConstraint("tenant_id", "code", name="uq_coupon_template_code"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    code: str = Field(max_length=64)
    title: str = Field(max_length=200)
    kind: str = Field(max_length=16)
    threshold_fen: int = _money()
    off_fen: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    percent: int | None = Field(default=None, nullable=True)
    cap_fen: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    gift_sku: str | None = Field(default=None, max_length=64, nullable=True)
    validity: str = Field(max_length=16)
    starts_at: datetime | None = _ts(nullable=True)
    ends_at: datetime | None = _ts(nullable=True)
    valid_days: int | None = Field(default=None, nullable=True)
    channels: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    store_codes: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    categories: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    stackable: bool = Field(default=False)
    total_limit: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    per_member_limit: int | None = Field(default=None, nullable=True)
    returnable_on_refund: bool = Field(default=False)
    active: bool = Field(default=True)
    issued: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Coupon(SQLModel, table=True):
    """One issued coupon: ``issued`` → ``redeemed`` (→ ``issued`` again when returned on
    refund) | ``expired`` | ``void``. ``code`` is unguessable and unique per tenant
    (``gateway.coupons.codes``); ``idem_key`` makes issuance idempotent and ``redeem_key`` the
    redemption."""

    __tablename__ = "coupon"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code", name="uq_coupon_code"),
        UniqueConstraint("tenant_id", "idem_key", name="uq_coupon_idem_key"),
        UniqueConstraint("tenant_id", "redeem_key", name="uq_coupon_redeem_key"),
        Index("ix_coupon_member", "tenant_id", "member_id", "template_id"),
        Index("ix_coupon_order", "tenant_id", "order_ref"),
        # Per-template statistics and the bulk job's skip check; the expiry sweeper.
        Index("ix_coupon_template", "tenant_id", "template_id", "status"),
        Index("ix_coupon_expiry", "tenant_id", "status", "valid_until"),
    )
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    template_id: uuid.UUID
    member_id: uuid.UUID
    code: str = Field(max_length=16)
    status: str = Field(default="issued", max_length=16)
    valid_from: datetime = _ts()
    valid_until: datetime = _ts()
    issued_at: datetime = _ts()
    source: str = Field(max_length=64)
    idem_key: str = Field(max_length=128)
    request_hash: str = Field(max_length=64)
    redeemed_at: datetime | None = _ts(nullable=True)
    order_ref: str | None = Field(default=None, max_length=128, nullable=True)
    discount_fen: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    redeem_key: str | None = Field(default=None, max_length=128, nullable=True)
    returned_from: str | None = Field(default=None, max_length=128, nullable=True)
    # Where and on what it was redeemed, as the redeemer reported the order (statistics by
    # channel and store, revenue driven); cleared again when the coupon is returned on refund.
    redeemed_channel: str | None = Field(default=None, max_length=32, nullable=True)
    redeemed_store: str | None = Field(default=None, max_length=64, nullable=True)
    order_total_fen: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    # When the "expiring soon" event went out (the sweeper sends it once per coupon).
    expiry_notified_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = _ts()


class CouponIssueJob(SQLModel, table=True):
    """Bulk issuance of one template to a segment (``gateway.coupons.bulk``).

    Resumable: members are visited in ``member_id`` order after ``cursor`` and each issue's
    idempotency key is derived from (job, member), so a crashed or re-run job never issues twice
    to one member. ``status``: ``pending`` | ``running`` | ``done`` | ``failed`` | ``cancelled``.
    """

    __tablename__ = "coupon_issue_job"
    __table_args__ = (UniqueConstraint("tenant_id", "idem_key", name="uq_coupon_issue_job_key"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    template_id: uuid.UUID
    segment_id: uuid.UUID
    idem_key: str = Field(max_length=128)
    status: str = Field(default="pending", max_length=16)
    cursor: uuid.UUID | None = Field(default=None, nullable=True)
    total: int = Field(default=0, sa_type=BigInteger)
    processed: int = Field(default=0, sa_type=BigInteger)
    issued: int = Field(default=0, sa_type=BigInteger)
    skipped: int = Field(default=0, sa_type=BigInteger)
    # Refusal reason → count (MEMBER_LIMIT, TOTAL_LIMIT, …) for the operator's progress view.
    skip_reasons: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    error: str | None = Field(default=None, max_length=500, nullable=True)
    created_by: str = Field(max_length=64)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)


class MemberTag(SQLModel, table=True):
    """A tag on a member (``gateway.tags``): from the scene they joined by (``scene``), from
    behaviour (``behaviour``, e.g. a category bought), set by staff (``manual``) or by a rule."""

    __tablename__ = "member_tag"
    __table_args__ = (Index("ix_member_tag_tag", "tenant_id", "tag", "member_id"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID = Field(primary_key=True)
    tag: str = Field(primary_key=True, max_length=64)
    source: str = Field(max_length=16)
    created_by: str | None = Field(default=None, max_length=64, nullable=True)
    created_at: datetime = _ts()


class Segment(SQLModel, table=True):
    """A named member filter (``gateway.segments``). A static segment is a snapshot taken when it
    is built; a dynamic one is re-evaluated by ``memberhub segments refresh`` and its changes
    emit ``segment.entered`` / ``segment.left`` events."""

    __tablename__ = "segment"
    __table_args__ = (UniqueConstraint("tenant_id", "code", name="uq_segment_code"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    code: str = Field(max_length=64)
    title: str = Field(max_length=200)
    filter: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    dynamic: bool = Field(default=False)
    active: bool = Field(default=True)
    member_count: int = Field(default=0, sa_type=BigInteger)
    refreshed_at: datetime | None = _ts(nullable=True)
    created_by: str = Field(max_length=64)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class SegmentMember(SQLModel, table=True):
    """Current membership of a segment; keyed for keyset walks in ``member_id`` order."""

    __tablename__ = "segment_member"
    __table_args__ = (Index("ix_segment_member_member", "tenant_id", "member_id"),)
    tenant_id: uuid.UUID = Field(primary_key=True)
    segment_id: uuid.UUID = Field(primary_key=True)
    member_id: uuid.UUID = Field(primary_key=True)
    entered_at: datetime = _ts()


class JobCursor(SQLModel, table=True):
    """Where an incremental per-tenant job stopped (tag derivation, triggers, …): ``value`` is
    the job's own JSON cursor, so a re-run continues instead of rescanning history."""

    __tablename__ = "job_cursor"
    tenant_id: uuid.UUID = Field(primary_key=True)
    name: str = Field(primary_key=True, max_length=64)
    value: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = _ts()
