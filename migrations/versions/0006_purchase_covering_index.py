"""purchase: a covering index for period scans (reports)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.create_index('ix_purchase_date_cover', ['purchased_on', 'customer_id', 'amount_cents', 'voided_at'],
                              unique=False)
        batch_op.drop_index('ix_purchase_date')


def downgrade() -> None:
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.create_index('ix_purchase_date', ['purchased_on'], unique=False)
        batch_op.drop_index('ix_purchase_date_cover')
