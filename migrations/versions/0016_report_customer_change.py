"""prepared reports brought up to date customer by customer: report_customer_change (kept by triggers: whose
purchases, contacts, feedback or report columns changed), what a prepared report was made from
(report_snapshot.inputs) and the changes of customers and feedback counted apart from those of people,
dictionaries and contact strategies (report_change part "customer")

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

# Same columns as migration 0014 (what a report reads of a customer).
CUSTOMER_COLUMNS = ("owner_id", "region_id", "scale_id", "nature_id", "industry_id", "contact_strategy_id",
                    "name", "external_id", "archived_at")
LOGGED = ("purchase", "interaction", "feedback", "customer")  # the tables whose rows belong to one customer
OPS = ("insert", "update", "delete")
TRIGGERS = [f"report_customer_change_{table}_{op_}" for table in LOGGED for op_ in OPS]

_COUNT_SQLITE = ("INSERT INTO report_change (part, day, shard, n) VALUES ('{part}', '0001-01-01', 0, 1) "
                 "ON CONFLICT (part, day, shard) DO UPDATE SET n = n + 1;")
# Appended to, never updated (a row per customer and day: an import's many orders of one customer write it
# once). On PostgreSQL a row per transaction too: an upsert locks the row it meets, and two transactions
# writing the same customers in another order would then wait for each other in a circle.
_LOG_SQLITE = ("INSERT INTO report_customer_change (customer_id, changed_on, txn) VALUES ({id}, date('now'), 0) "
               "ON CONFLICT DO NOTHING;")
_SHARD_PG = "(txid_current() % 8)::int"


def _recount_sqlite(part: str) -> None:
    """The count triggers of customers and feedback (migration 0014's) again, counting in `part`."""
    count = _COUNT_SQLITE.format(part=part)
    for table in ("customer", "feedback"):
        for op_ in OPS:
            op.execute(f"DROP TRIGGER IF EXISTS report_change_{table}_{op_}")
        when = " WHEN " + " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in CUSTOMER_COLUMNS) if table == "customer" else ""
        of = f" OF {', '.join(CUSTOMER_COLUMNS)}" if table == "customer" else ""
        op.execute(f"CREATE TRIGGER report_change_{table}_insert AFTER INSERT ON {table} BEGIN {count} END")
        op.execute(f"CREATE TRIGGER report_change_{table}_delete AFTER DELETE ON {table} BEGIN {count} END")
        op.execute(f"CREATE TRIGGER report_change_{table}_update AFTER UPDATE{of} ON {table}{when} BEGIN {count} END")


def _sqlite() -> None:
    _recount_sqlite("customer")
    for table in LOGGED:
        column = "id" if table == "customer" else "customer_id"
        new, old = _LOG_SQLITE.format(id=f"NEW.{column}"), _LOG_SQLITE.format(id=f"OLD.{column}")
        op.execute(f"CREATE TRIGGER report_customer_change_{table}_insert AFTER INSERT ON {table} BEGIN {new} END")
        op.execute(f"CREATE TRIGGER report_customer_change_{table}_delete AFTER DELETE ON {table} BEGIN {old} END")
        if table == "customer":
            when = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in CUSTOMER_COLUMNS)
            op.execute(f"CREATE TRIGGER report_customer_change_customer_update AFTER UPDATE OF "
                       f"{', '.join(CUSTOMER_COLUMNS)} ON customer WHEN {when} BEGIN {new} END")
        else:
            op.execute(f"CREATE TRIGGER report_customer_change_{table}_update AFTER UPDATE ON {table} "
                       f"BEGIN {old} {new} END")


def _count_function_pg(part: str) -> str:
    return f"""CREATE OR REPLACE FUNCTION report_change_{part}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO report_change (part, day, shard, n) VALUES ('{part}', DATE '0001-01-01', {_SHARD_PG}, 1)
  ON CONFLICT (part, day, shard) DO UPDATE SET n = report_change.n + 1;
  RETURN NULL;
END $$"""


def _recount_postgresql(function: str) -> None:
    for table in ("customer", "feedback"):
        for op_ in OPS:
            op.execute(f"DROP TRIGGER IF EXISTS report_change_{table}_{op_} ON {table}")
        op.execute(f"CREATE TRIGGER report_change_{table}_insert AFTER INSERT ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
        op.execute(f"CREATE TRIGGER report_change_{table}_delete AFTER DELETE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
        if table == "customer":
            when = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in CUSTOMER_COLUMNS)
            op.execute(f"CREATE TRIGGER report_change_customer_update AFTER UPDATE OF {', '.join(CUSTOMER_COLUMNS)} "
                       f"ON customer FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {function}()")
        else:
            op.execute(f"CREATE TRIGGER report_change_{table}_update AFTER UPDATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")


def _postgresql() -> None:
    op.execute(_count_function_pg("customer"))
    _recount_postgresql("report_change_customer")
    # One statement per statement for the tables a statement may write many rows of (imports), from its
    # transition tables; per row (only on a real change of a report column) for customers' updates.
    for name, rows, column in (("added", "added", "customer_id"), ("removed", "removed", "customer_id"),
                               ("changed", "removed UNION ALL SELECT * FROM added", "customer_id"),
                               ("customer_added", "added", "id"), ("customer_removed", "removed", "id")):
        op.execute(f"""CREATE FUNCTION report_customer_change_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO report_customer_change (customer_id, changed_on, txn)
  SELECT DISTINCT {column}, (statement_timestamp() AT TIME ZONE 'UTC')::date, txid_current()
  FROM (SELECT * FROM {rows}) AS rows
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$""")
    op.execute("""CREATE FUNCTION report_customer_change_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO report_customer_change (customer_id, changed_on, txn)
  VALUES (NEW.id, (statement_timestamp() AT TIME ZONE 'UTC')::date, txid_current())
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$""")
    for table in ("purchase", "interaction", "feedback"):
        op.execute(f"CREATE TRIGGER report_customer_change_{table}_insert AFTER INSERT ON {table} "
                   "REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION report_customer_change_added()")
        op.execute(f"CREATE TRIGGER report_customer_change_{table}_delete AFTER DELETE ON {table} "
                   "REFERENCING OLD TABLE AS removed FOR EACH STATEMENT "
                   "EXECUTE FUNCTION report_customer_change_removed()")
        op.execute(f"CREATE TRIGGER report_customer_change_{table}_update AFTER UPDATE ON {table} "
                   "REFERENCING OLD TABLE AS removed NEW TABLE AS added FOR EACH STATEMENT "
                   "EXECUTE FUNCTION report_customer_change_changed()")
    op.execute("CREATE TRIGGER report_customer_change_customer_insert AFTER INSERT ON customer "
               "REFERENCING NEW TABLE AS added FOR EACH STATEMENT "
               "EXECUTE FUNCTION report_customer_change_customer_added()")
    op.execute("CREATE TRIGGER report_customer_change_customer_delete AFTER DELETE ON customer "
               "REFERENCING OLD TABLE AS removed FOR EACH STATEMENT "
               "EXECUTE FUNCTION report_customer_change_customer_removed()")
    when = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in CUSTOMER_COLUMNS)
    op.execute(f"CREATE TRIGGER report_customer_change_customer_update AFTER UPDATE OF {', '.join(CUSTOMER_COLUMNS)} "
               f"ON customer FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION report_customer_change_row()")


def upgrade() -> None:
    op.create_table('report_customer_change',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('changed_on', sa.Date(), nullable=False),
    sa.Column('txn', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('customer_id', 'changed_on', 'txn', name=op.f('pk_report_customer_change'))
    )
    op.create_index(op.f('ix_report_customer_change_changed_on'), 'report_customer_change', ['changed_on'],
                    unique=False)
    with op.batch_alter_table('report_snapshot', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inputs', sa.LargeBinary(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        _postgresql()
    else:
        _sqlite()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in LOGGED:
            for op_ in OPS:
                op.execute(f"DROP TRIGGER IF EXISTS report_customer_change_{table}_{op_} ON {table}")
        for name in ("added", "removed", "changed", "customer_added", "customer_removed", "row"):
            op.execute(f"DROP FUNCTION IF EXISTS report_customer_change_{name}()")
        _recount_postgresql("report_change_other")
        op.execute("DROP FUNCTION IF EXISTS report_change_customer()")
    else:
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        _recount_sqlite("other")
    with op.batch_alter_table('report_snapshot', schema=None) as batch_op:
        batch_op.drop_column('inputs')
    op.drop_index(op.f('ix_report_customer_change_changed_on'), table_name='report_customer_change')
    op.drop_table('report_customer_change')
