"""purchase: the per-customer index covers amount and voided (reports sum a year per customer from it)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_purchase_customer_cover', 'purchase',
                    ['customer_id', 'purchased_on', 'amount_cents', 'voided_at'], unique=False)
    op.drop_index('ix_purchase_customer_date', table_name='purchase')


def downgrade() -> None:
    op.create_index('ix_purchase_customer_date', 'purchase', ['customer_id', 'purchased_on'], unique=False)
    op.drop_index('ix_purchase_customer_cover', table_name='purchase')
