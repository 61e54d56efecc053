"""the conversation-state changes an update made are kept with its id (a redelivery after a crash between
the commit and the state write re-applies them)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('handled_update', schema=None) as batch_op:
        batch_op.add_column(sa.Column('conversation', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('handled_update', schema=None) as batch_op:
        batch_op.drop_column('conversation')
