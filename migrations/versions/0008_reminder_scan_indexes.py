"""customer: partial covering indexes for the reminder rules (the scan reads index ranges, not the table);
they replace the stage, last-contact and last-purchase indexes (nothing else reads by those alone);
reminder: the keys of the open reminders, which every scan reads

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

LIVE = "archived_at IS NULL AND owner_id IS NOT NULL"
INDEXES = {
    'ix_customer_contact_clock': (
        ['contact_strategy_id', 'last_contact_at', 'created_at', 'owner_id', 'stage', 'archived_at'], LIVE),
    'ix_customer_purchase_clock': (
        ['purchase_strategy_id', 'last_txn_on', 'owner_id', 'purchase_gap_days', 'last_contact_at', 'archived_at'],
        LIVE),
    'ix_customer_not_now': (
        ['expected_purchase_on', 'owner_id', 'stage', 'archived_at'], "stage = 'not_now' AND archived_at IS NULL"),
    'ix_customer_quoted': (
        ['last_contact_at', 'created_at', 'owner_id', 'stage', 'archived_at'],
        "stage = 'quoted_no_response' AND archived_at IS NULL"),
}


def upgrade() -> None:
    for name, (columns, where) in INDEXES.items():
        op.create_index(name, 'customer', columns, unique=False, sqlite_where=sa.text(where),
                        postgresql_where=sa.text(where))
    # Replaced by the indexes above (nothing else reads these columns by range).
    for name in ('ix_customer_stage', 'ix_customer_last_contact', 'ix_customer_last_txn'):
        op.drop_index(name, table_name='customer')
    op.create_index('ix_reminder_open_keys', 'reminder', ['status', 'key'], unique=False,
                    sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))


def downgrade() -> None:
    op.drop_index('ix_reminder_open_keys', table_name='reminder')
    for name, column in (('ix_customer_stage', 'stage'), ('ix_customer_last_contact', 'last_contact_at'),
                         ('ix_customer_last_txn', 'last_txn_on')):
        op.create_index(name, 'customer', [column], unique=False)
    for name in INDEXES:
        op.drop_index(name, table_name='customer')
