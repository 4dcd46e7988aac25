"""The label an imported row came with, so that a suspected label error shows it beside the suggested one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("given_label", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("given_label")
