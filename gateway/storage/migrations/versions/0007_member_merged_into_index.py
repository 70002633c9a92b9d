"""index member (tenant_id, merged_into) (#5 review).

Tag read-through, coupon per-member limits and bulk issuance look up the members merged into a
member; without the index each lookup scans the tenant's members.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 19:04:27.505739
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.create_index("ix_member_merged_into", ["tenant_id", "merged_into"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.drop_index("ix_member_merged_into")
