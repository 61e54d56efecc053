"""RFM scores on the customer

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rfm_r', sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column('rfm_f', sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column('rfm_m', sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column('rfm_scored_on', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_column('rfm_scored_on')
        batch_op.drop_column('rfm_m')
        batch_op.drop_column('rfm_f')
        batch_op.drop_column('rfm_r')
