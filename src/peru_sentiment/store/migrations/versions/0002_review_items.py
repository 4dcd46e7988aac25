"""The review queue: predictions a person should label, and their labels.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column(
            "prediction_id", sa.String(200), sa.ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_label", sa.String(16)),
        sa.Column("reviewed_at", sa.DateTime(timezone=True)),
        sa.Column("reviewer", sa.String(64)),
    )
    op.create_index("ix_review_items_pending", "review_items", ["reviewed_at", "priority"])


def downgrade() -> None:
    op.drop_table("review_items")
