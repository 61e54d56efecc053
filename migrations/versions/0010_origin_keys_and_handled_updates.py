"""origin keys on customers, contacts, interactions, purchases and feedback (a replayed input is recognised); handled Telegram updates

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

TABLES = ('interaction', 'purchase', 'feedback', 'customer', 'contact_person')


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column('origin_key', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True))
        op.create_index(f'ix_{table}_origin', table, ['origin_key'], unique=True)
    op.create_table(
        'handled_update',
        sa.Column('update_id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('handled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('update_id'),
    )
    op.create_index('ix_handled_update_handled_at', 'handled_update', ['handled_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_handled_update_handled_at', table_name='handled_update')
    op.drop_table('handled_update')
    for table in TABLES:
        op.drop_index(f'ix_{table}_origin', table_name=table)
        op.drop_column(table, 'origin_key')
