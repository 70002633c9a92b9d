"""initial schema: tenants, API keys, members and identities, orders, ledger, merges.

On PostgreSQL every tenant-owned table also gets row-level security (enabled and forced, so the
table owner is subject too): rows are visible only when ``app.tenant_id`` is set to their tenant.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 10:35:50.260561
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.storage.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen here on purpose: a later migration that adds a tenant table adds its own policy.
TENANT_TABLES = (
    "api_key",
    "idempotency_record",
    "identity",
    "ledger_allocation",
    "ledger_balance",
    "ledger_hold",
    "ledger_transfer",
    "member",
    "member_attribute",
    "member_event",
    "merge_record",
    "order_line",
    "order_refund",
    "orders",
)
_CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("prefix", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("key_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("scopes", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "key_hash", name="uq_api_key_hash"),
    )
    op.create_table(
        "idempotency_record",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("operation", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "key"),
    )
    op.create_table(
        "identity",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("display", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("created_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "scope", "value"),
    )
    with op.batch_alter_table("identity", schema=None) as batch_op:
        batch_op.create_index("ix_identity_member", ["tenant_id", "member_id"], unique=False)

    op.create_table(
        "ledger_allocation",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("lot_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "owner_id", "lot_id"),
    )
    op.create_table(
        "ledger_balance",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("available >= 0 AND held >= 0", name="ck_ledger_balance_nonneg"),
        sa.PrimaryKeyConstraint("tenant_id", "member_id", "account"),
    )
    op.create_table(
        "ledger_hold",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("captured", sa.BigInteger(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("idem_key", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("expires_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.Column("created_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=True),
        sa.Column("release_key", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("release_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "idem_key", name="uq_ledger_hold_idem"),
        sa.UniqueConstraint("tenant_id", "release_key", name="uq_ledger_hold_release"),
    )
    with op.batch_alter_table("ledger_hold", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_hold_expiry", ["tenant_id", "status", "expires_at"], unique=False
        )

    op.create_table(
        "ledger_transfer",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("journal_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("counterparty", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("source_ref", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("idem_key", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=True),
        sa.Column("hold_id", sa.Uuid(), nullable=True),
        sa.Column("related_id", sa.Uuid(), nullable=True),
        sa.Column("shortfall", sa.BigInteger(), nullable=False),
        sa.Column("created_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "remaining IS NULL OR remaining >= 0", name="ck_ledger_transfer_remaining"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "idem_key", name="uq_ledger_transfer_idem"),
    )
    with op.batch_alter_table("ledger_transfer", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_transfer_lots",
            ["tenant_id", "member_id", "account", "expires_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_ledger_transfer_member",
            ["tenant_id", "member_id", "account", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_ledger_transfer_source", ["tenant_id", "source_ref"], unique=False
        )

    op.create_table(
        "member",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("merged_into", sa.Uuid(), nullable=True),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("gender", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("city", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("created_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_table(
        "member_attribute",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column(
            "observed_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("tenant_id", "member_id", "field"),
    )
    op.create_table(
        "member_event",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column(
            "occurred_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False
        ),
        sa.Column("created_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    with op.batch_alter_table("member_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_member_event_member", ["tenant_id", "member_id", "occurred_at"], unique=False
        )

    op.create_table(
        "merge_record",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("survivor_id", sa.Uuid(), nullable=False),
        sa.Column("loser_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.Column("undone_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    with op.batch_alter_table("merge_record", schema=None) as batch_op:
        batch_op.create_index("ix_merge_loser", ["tenant_id", "loser_id"], unique=False)

    op.create_table(
        "order_line",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("sku", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "order_id", "line_no"),
    )
    op.create_table(
        "order_refund",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("refund_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "order_id", "refund_id"),
    )
    op.create_table(
        "orders",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("paid_fen", sa.BigInteger(), nullable=False),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("store_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("guide_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("placed_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.Column("paid_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=True),
        sa.Column("created_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "channel", "external_id", name="uq_order_external"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_order_member", ["tenant_id", "member_id", "placed_at"], unique=False
        )

    op.create_table(
        "tenant",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slug", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("enabled_rules", sa.JSON(), nullable=False),
        sa.Column("created_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY tenant_isolation ON {table} "
                f"USING (tenant_id = {_CURRENT_TENANT}) WITH CHECK (tenant_id = {_CURRENT_TENANT})"
            )


def downgrade() -> None:
    op.drop_table("tenant")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_order_member")

    op.drop_table("orders")
    op.drop_table("order_refund")
    op.drop_table("order_line")
    with op.batch_alter_table("merge_record", schema=None) as batch_op:
        batch_op.drop_index("ix_merge_loser")

    op.drop_table("merge_record")
    with op.batch_alter_table("member_event", schema=None) as batch_op:
        batch_op.drop_index("ix_member_event_member")

    op.drop_table("member_event")
    op.drop_table("member_attribute")
    op.drop_table("member")
    with op.batch_alter_table("ledger_transfer", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transfer_source")
        batch_op.drop_index("ix_ledger_transfer_member")
        batch_op.drop_index("ix_ledger_transfer_lots")

    op.drop_table("ledger_transfer")
    with op.batch_alter_table("ledger_hold", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_hold_expiry")

    op.drop_table("ledger_hold")
    op.drop_table("ledger_balance")
    op.drop_table("ledger_allocation")
    with op.batch_alter_table("identity", schema=None) as batch_op:
        batch_op.drop_index("ix_identity_member")

    op.drop_table("identity")
    op.drop_table("idempotency_record")
    op.drop_table("api_key")
