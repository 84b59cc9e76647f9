"""inbox totals as added rows: the triggers of 0009 updated one row per person, so every transaction
that gave or took a task of the same person (finance, a director: everyone's next step) waited on that
row until the one before it committed, and two transactions touching two people in opposite orders
could deadlock. Now each change appends a row of differences (+1 / -1), which nobody else locks; a
person's total is the sum of their rows, and the background worker folds each person's rows back into
one (Engine.work, tables.compact_inbox_counts). An update that changes neither the status nor the
assignee counts nothing (the task rows' upsert sets both on every change of a task).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = ("inbox_task_insert", "inbox_task_update", "inbox_candidate_insert", "inbox_candidate_delete")
SQLITE = [
    """CREATE TRIGGER inbox_task_insert AFTER INSERT ON human_tasks
       WHEN NEW.status = 'open' AND NEW.assignee_id IS NOT NULL
       BEGIN
         INSERT INTO inbox_counts (user_id, assigned, claimable) VALUES (NEW.assignee_id, 1, 0);
       END""",
    """CREATE TRIGGER inbox_task_update AFTER UPDATE OF status, assignee_id ON human_tasks
       WHEN OLD.status IS NOT NEW.status OR OLD.assignee_id IS NOT NEW.assignee_id
       BEGIN
         INSERT INTO inbox_counts (user_id, assigned, claimable)
         SELECT OLD.assignee_id, -1, 0 WHERE OLD.status = 'open' AND OLD.assignee_id IS NOT NULL;
         INSERT INTO inbox_counts (user_id, assigned, claimable)
         SELECT NEW.assignee_id, 1, 0 WHERE NEW.status = 'open' AND NEW.assignee_id IS NOT NULL;
         INSERT INTO inbox_counts (user_id, assigned, claimable)
         SELECT user_id, 0, -1 FROM human_task_candidates
         WHERE OLD.status = 'open' AND OLD.assignee_id IS NULL AND task_id = OLD.id AND claimable;
         UPDATE human_task_candidates SET claimable = (NEW.status = 'open' AND NEW.assignee_id IS NULL)
         WHERE task_id = NEW.id;
         INSERT INTO inbox_counts (user_id, assigned, claimable)
         SELECT user_id, 0, 1 FROM human_task_candidates
         WHERE NEW.status = 'open' AND NEW.assignee_id IS NULL AND task_id = NEW.id;
       END""",
    """CREATE TRIGGER inbox_candidate_insert AFTER INSERT ON human_task_candidates WHEN NEW.claimable
       BEGIN
         INSERT INTO inbox_counts (user_id, assigned, claimable) VALUES (NEW.user_id, 0, 1);
       END""",
    """CREATE TRIGGER inbox_candidate_delete AFTER DELETE ON human_task_candidates WHEN OLD.claimable
       BEGIN
         INSERT INTO inbox_counts (user_id, assigned, claimable) VALUES (OLD.user_id, 0, -1);
       END""",
]
PG = [
    """CREATE OR REPLACE FUNCTION salesflow_inbox_task() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'UPDATE' THEN
        IF OLD.status IS NOT DISTINCT FROM NEW.status AND OLD.assignee_id IS NOT DISTINCT FROM NEW.assignee_id THEN
          RETURN NULL;
        END IF;
        IF OLD.status = 'open' AND OLD.assignee_id IS NOT NULL THEN
          INSERT INTO inbox_counts (user_id, assigned, claimable) VALUES (OLD.assignee_id, -1, 0);
        END IF;
        IF OLD.status = 'open' AND OLD.assignee_id IS NULL THEN
          INSERT INTO inbox_counts (user_id, assigned, claimable)
          SELECT user_id, 0, -1 FROM human_task_candidates WHERE task_id = OLD.id AND claimable;
        END IF;
        UPDATE human_task_candidates SET claimable = (NEW.status = 'open' AND NEW.assignee_id IS NULL)
        WHERE task_id = NEW.id;
        IF NEW.status = 'open' AND NEW.assignee_id IS NULL THEN
          INSERT INTO inbox_counts (user_id, assigned, claimable)
          SELECT user_id, 0, 1 FROM human_task_candidates WHERE task_id = NEW.id;
        END IF;
      END IF;
      IF NEW.status = 'open' AND NEW.assignee_id IS NOT NULL THEN
        INSERT INTO inbox_counts (user_id, assigned, claimable) VALUES (NEW.assignee_id, 1, 0);
      END IF;
      RETURN NULL;
    END $$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE FUNCTION salesflow_inbox_candidate() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'INSERT' AND NEW.claimable THEN
        INSERT INTO inbox_counts (user_id, assigned, claimable) VALUES (NEW.user_id, 0, 1);
      ELSIF TG_OP = 'DELETE' AND OLD.claimable THEN
        INSERT INTO inbox_counts (user_id, assigned, claimable) VALUES (OLD.user_id, 0, -1);
      END IF;
      RETURN NULL;
    END $$ LANGUAGE plpgsql""",
]


def _drop_sqlite_triggers() -> None:
    for name in SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:  # the triggers name the table: off while it is rebuilt
        _drop_sqlite_triggers()
    op.rename_table('inbox_counts', 'inbox_counts_0009')
    op.create_table('inbox_counts',
                    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
                    sa.Column('user_id', sa.Integer(), nullable=False),
                    sa.Column('assigned', sa.Integer(), nullable=False, server_default='0'),
                    sa.Column('claimable', sa.Integer(), nullable=False, server_default='0'),
                    sa.ForeignKeyConstraint(['user_id'], ['users.id']),
                    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_inbox_counts_user_id', 'inbox_counts', ['user_id'])
    op.execute("""INSERT INTO inbox_counts (user_id, assigned, claimable)
                  SELECT user_id, assigned, claimable FROM inbox_counts_0009""")
    op.drop_table('inbox_counts_0009')
    for statement in (SQLITE if sqlite else PG):  # PostgreSQL's triggers call the functions, replaced here
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _drop_sqlite_triggers()
    op.rename_table('inbox_counts', 'inbox_counts_0010')
    op.create_table('inbox_counts',
                    sa.Column('user_id', sa.Integer(), nullable=False),
                    sa.Column('assigned', sa.Integer(), nullable=False, server_default='0'),
                    sa.Column('claimable', sa.Integer(), nullable=False, server_default='0'),
                    sa.ForeignKeyConstraint(['user_id'], ['users.id']),
                    sa.PrimaryKeyConstraint('user_id'))
    op.execute("""INSERT INTO inbox_counts (user_id, assigned, claimable)
                  SELECT user_id, sum(assigned), sum(claimable) FROM inbox_counts_0010 GROUP BY user_id""")
    op.drop_table('inbox_counts_0010')
    for statement in _0009_statements(sqlite):
        op.execute(statement)


def _0009_statements(sqlite: bool) -> list[str]:
    """0009's triggers and functions (updating one row per person), read from its own file."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).with_name("0009_inbox_counts.py")
    spec = importlib.util.spec_from_file_location("salesflow_migration_0009", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if sqlite:
        return module.SQLITE
    return [s for s in module.PG if s.lstrip().startswith("CREATE OR REPLACE FUNCTION")]
