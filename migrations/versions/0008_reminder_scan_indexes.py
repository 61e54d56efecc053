"""customer: partial covering indexes for the reminder rules (the scan reads index ranges, not the table);
the stage index goes (nearly every customer has the same stage; the prospect stages have their own);
reminder: the keys of the open reminders, which every scan reads

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

LIVE = "archived_at IS NULL AND owner_id IS NOT NULL"
INDEXES = {
    'ix_customer_contact_clock': (
        ['contact_strategy_id', 'last_contact_at', 'created_at', 'owner_id', 'stage', 'archived_at'], LIVE),
    'ix_customer_purchase_clock': (
        ['purchase_strategy_id', 'last_txn_on', 'owner_id', 'purchase_gap_days', 'archived_at'], LIVE),
    'ix_customer_recent_buyers': (['last_txn_on', 'owner_id', 'last_contact_at', 'archived_at'], LIVE),
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
    op.drop_index('ix_customer_stage', table_name='customer')
    op.create_index('ix_reminder_open_keys', 'reminder', ['status', 'key'], unique=False,
                    sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))


def downgrade() -> None:
    op.drop_index('ix_reminder_open_keys', table_name='reminder')
    op.create_index('ix_customer_stage', 'customer', ['stage'], unique=False)
    for name in INDEXES:
        op.drop_index(name, table_name='customer')
