"""channel connections, sync state and runs.

On PostgreSQL the three tenant tables get the same forced row-level security policy as 0001's.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:54:12.520926
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.storage.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


TENANT_TABLES = ("channel_connection", "sync_run", "sync_state")
_CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def upgrade() -> None:
    op.create_table(
        "channel_connection",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("connector", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secrets", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "channel"),
    )
    op.create_table(
        "sync_run",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("connector", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("trigger", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("started_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.Column("until", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.Column(
            "heartbeat_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False
        ),
        sa.Column("finished_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_run_channel", ["tenant_id", "channel", "started_at"], unique=False
        )

    op.create_table(
        "sync_state",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("stream", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("partition", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("updated_at", gateway.storage.types.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "channel", "stream", "partition"),
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
    op.drop_table("sync_state")
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_run_channel")

    op.drop_table("sync_run")
    op.drop_table("channel_connection")
