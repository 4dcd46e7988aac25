"""The predictions table: every scored piece of feedback.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("item_id", sa.String(128)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True)),
        sa.Column("region", sa.String(64)),
        sa.Column("channel", sa.String(32)),
        sa.Column("language", sa.String(16)),
        sa.Column("text", sa.Text()),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("aspects", sa.JSON()),
    )
    op.create_index("ix_predictions_received_at", "predictions", ["received_at"])
    op.create_index("ix_predictions_region_received_at", "predictions", ["region", "received_at"])
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])


def downgrade() -> None:
    op.drop_table("predictions")
