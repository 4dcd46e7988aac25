"""Star ratings on predictions, to queue predictions that disagree with them for review.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("stars", sa.Integer()))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("stars")
