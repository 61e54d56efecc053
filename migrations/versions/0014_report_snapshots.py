"""prepared reports: report_change (kept by triggers: what a manager's report reads changed),
report_contact_change (kept by a trigger: whose last contact changed) and report_snapshot (reports built
once, served while nothing they read has changed)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

# What a report reads, by table (services.reports): every change of these bumps report_change. A change of
# any other column (roll-ups, RFM scores, stage, notes …) leaves the prepared reports valid. The customer's
# last contact is not counted: services.reports.prepared reads it afresh for a prepared report.
CUSTOMER_COLUMNS = ("owner_id", "region_id", "scale_id", "nature_id", "industry_id", "contact_strategy_id",
                    "name", "external_id", "archived_at")
OTHER_TABLES = ("feedback", "dictionary_entry", "contact_strategy")
TRIGGERS_SQLITE = [f"report_change_{t}_{op_}" for t in ("customer", "app_user", *OTHER_TABLES, "purchase", "interaction")
                   for op_ in ("insert", "update", "delete")] + ["report_change_customer_contact"]

_OTHER_SQLITE = ("INSERT INTO report_change (part, day, shard, n) VALUES ('other', '0001-01-01', 0, 1) "
                 "ON CONFLICT (part, day, shard) DO UPDATE SET n = n + 1;")


def _purchase_sqlite(row: str) -> str:
    return (f"INSERT INTO report_change (part, day, shard, n) VALUES ('purchase', {row}.purchased_on, 0, 1) "
            "ON CONFLICT (part, day, shard) DO UPDATE SET n = n + 1;")


def _contact_sqlite(row: str) -> str:
    """An interaction counts in its UTC day and hour (shard = hour × 8)."""
    return (f"INSERT INTO report_change (part, day, shard, n) VALUES ('contact', date({row}.occurred_at), "
            f"CAST(strftime('%H', {row}.occurred_at) AS INTEGER) * 8, 1) "
            "ON CONFLICT (part, day, shard) DO UPDATE SET n = n + 1;")


def _sqlite() -> None:
    op.execute("CREATE TRIGGER report_change_customer_contact AFTER UPDATE OF last_contact_at ON customer "
               "WHEN OLD.last_contact_at IS NOT NEW.last_contact_at BEGIN "
               "INSERT INTO report_contact_change (customer_id, changed_on) VALUES (NEW.id, date('now')) "
               "ON CONFLICT (customer_id) DO UPDATE SET changed_on = excluded.changed_on; END")
    for table in ("customer", "app_user", *OTHER_TABLES):
        columns = CUSTOMER_COLUMNS if table == "customer" else ("name",) if table == "app_user" else None
        when = (" WHEN " + " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)) if columns else ""
        of = f" OF {', '.join(columns)}" if columns else ""
        op.execute(f"CREATE TRIGGER report_change_{table}_insert AFTER INSERT ON {table} BEGIN {_OTHER_SQLITE} END")
        op.execute(f"CREATE TRIGGER report_change_{table}_delete AFTER DELETE ON {table} BEGIN {_OTHER_SQLITE} END")
        op.execute(f"CREATE TRIGGER report_change_{table}_update AFTER UPDATE{of} ON {table}{when} "
                   f"BEGIN {_OTHER_SQLITE} END")
    op.execute(f"CREATE TRIGGER report_change_purchase_insert AFTER INSERT ON purchase BEGIN {_purchase_sqlite('NEW')} END")
    op.execute(f"CREATE TRIGGER report_change_purchase_delete AFTER DELETE ON purchase BEGIN {_purchase_sqlite('OLD')} END")
    op.execute("CREATE TRIGGER report_change_purchase_update AFTER UPDATE ON purchase BEGIN "
               f"{_purchase_sqlite('OLD')} {_purchase_sqlite('NEW')} END")
    op.execute("CREATE TRIGGER report_change_interaction_insert AFTER INSERT ON interaction BEGIN "
               f"{_contact_sqlite('NEW')} END")
    op.execute("CREATE TRIGGER report_change_interaction_delete AFTER DELETE ON interaction BEGIN "
               f"{_contact_sqlite('OLD')} END")
    op.execute("CREATE TRIGGER report_change_interaction_update AFTER UPDATE ON interaction BEGIN "
               f"{_contact_sqlite('OLD')} {_contact_sqlite('NEW')} END")


_SHARD_PG = "(txid_current() % 8)::int"


def _postgresql() -> None:
    # One row per statement where a statement may touch many rows (imports): transition tables for purchases,
    # statement triggers for the other tables; per row (only on a real change) for customers and people.
    op.execute(f"""CREATE FUNCTION report_change_other() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO report_change (part, day, shard, n) VALUES ('other', DATE '0001-01-01', {_SHARD_PG}, 1)
  ON CONFLICT (part, day, shard) DO UPDATE SET n = report_change.n + 1;
  RETURN NULL;
END $$""")
    for name, rows in (("added", "added"), ("removed", "removed"), ("changed", "removed UNION ALL SELECT * FROM added")):
        op.execute(f"""CREATE FUNCTION report_change_purchase_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO report_change (part, day, shard, n)
  SELECT 'purchase', purchased_on, {_SHARD_PG}, count(*) FROM (SELECT * FROM {rows}) AS rows GROUP BY purchased_on
  ON CONFLICT (part, day, shard) DO UPDATE SET n = report_change.n + EXCLUDED.n;
  RETURN NULL;
END $$""")
        # an interaction counts in its UTC day and hour (shard = hour × 8 + the transaction's shard)
        op.execute(f"""CREATE FUNCTION report_change_contact_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO report_change (part, day, shard, n)
  SELECT 'contact', (occurred_at AT TIME ZONE 'UTC')::date,
         extract(hour FROM occurred_at AT TIME ZONE 'UTC')::int * 8 + {_SHARD_PG}, count(*)
  FROM (SELECT * FROM {rows}) AS rows GROUP BY 2, 3
  ON CONFLICT (part, day, shard) DO UPDATE SET n = report_change.n + EXCLUDED.n;
  RETURN NULL;
END $$""")
    op.execute("""CREATE FUNCTION report_change_customer_contact() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO report_contact_change (customer_id, changed_on) VALUES (NEW.id, (now() AT TIME ZONE 'UTC')::date)
  ON CONFLICT (customer_id) DO UPDATE SET changed_on = EXCLUDED.changed_on;
  RETURN NULL;
END $$""")
    op.execute("CREATE TRIGGER report_change_customer_contact AFTER UPDATE OF last_contact_at ON customer FOR EACH ROW "
               "WHEN (OLD.last_contact_at IS DISTINCT FROM NEW.last_contact_at) "
               "EXECUTE FUNCTION report_change_customer_contact()")
    for table, kind in (("purchase", "purchase"), ("interaction", "contact")):
        op.execute(f"CREATE TRIGGER report_change_{table}_insert AFTER INSERT ON {table} "
                   f"REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION report_change_{kind}_added()")
        op.execute(f"CREATE TRIGGER report_change_{table}_delete AFTER DELETE ON {table} "
                   f"REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION report_change_{kind}_removed()")
        op.execute(f"CREATE TRIGGER report_change_{table}_update AFTER UPDATE ON {table} "
                   "REFERENCING OLD TABLE AS removed NEW TABLE AS added "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION report_change_{kind}_changed()")
    for table in ("customer", "app_user", *OTHER_TABLES):
        columns = CUSTOMER_COLUMNS if table == "customer" else ("name",) if table == "app_user" else None
        op.execute(f"CREATE TRIGGER report_change_{table}_insert AFTER INSERT ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION report_change_other()")
        op.execute(f"CREATE TRIGGER report_change_{table}_delete AFTER DELETE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION report_change_other()")
        if columns:
            when = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns)
            op.execute(f"CREATE TRIGGER report_change_{table}_update AFTER UPDATE OF {', '.join(columns)} ON {table} "
                       f"FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION report_change_other()")
        else:
            op.execute(f"CREATE TRIGGER report_change_{table}_update AFTER UPDATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION report_change_other()")


def upgrade() -> None:
    op.create_table('report_change',
    sa.Column('part', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('n', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('part', 'day', 'shard', name=op.f('pk_report_change'))
    )
    op.create_table('report_contact_change',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('changed_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_report_contact_change'))
    )
    op.create_index(op.f('ix_report_contact_change_changed_on'), 'report_contact_change', ['changed_on'], unique=False)
    op.create_table('report_snapshot',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('made_for', sa.Date(), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('made_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_report_snapshot'))
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql()
    else:
        _sqlite()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("purchase", "interaction", "customer", "app_user", *OTHER_TABLES):
            for op_ in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS report_change_{table}_{op_} ON {table}")
        op.execute("DROP TRIGGER IF EXISTS report_change_customer_contact ON customer")
        for name in ("other", "customer_contact", *(f"{kind}_{change}" for kind in ("purchase", "contact")
                                for change in ("added", "removed", "changed"))):
            op.execute(f"DROP FUNCTION IF EXISTS report_change_{name}()")
    else:
        for name in TRIGGERS_SQLITE:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table('report_snapshot')
    op.drop_index(op.f('ix_report_contact_change_changed_on'), table_name='report_contact_change')
    op.drop_table('report_contact_change')
    op.drop_table('report_change')
