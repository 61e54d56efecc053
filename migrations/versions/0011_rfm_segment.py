"""one RFM: the segment is stored with the scores (it needs the purchase count in the window); scores of the
old all-time definition are cleared and made again by the next daily scoring

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rfm_segment', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    op.execute("UPDATE customer SET rfm_r = NULL, rfm_f = NULL, rfm_m = NULL, rfm_scored_on = NULL")


def downgrade() -> None:
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_column('rfm_segment')
