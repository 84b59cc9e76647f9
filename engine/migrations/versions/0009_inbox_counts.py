"""the inbox at scale: each person's open-task counts kept by triggers (inbox_counts), claim-pool
rows that carry their task's order and whether it is still claimable (the pool head reads them in
index order, starting from the caller's own rows), and open tasks by due time (the worker's pass)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# The counting rules, once per dialect. A task counts for its assignee while it is open; a pool task
# (open, nobody assigned) counts for each candidate whose row is claimable.
SQLITE = [
    """CREATE TRIGGER inbox_task_insert AFTER INSERT ON human_tasks
       WHEN NEW.status = 'open' AND NEW.assignee_id IS NOT NULL
       BEGIN
         INSERT INTO inbox_counts (user_id, assigned, claimable) VALUES (NEW.assignee_id, 1, 0)
         ON CONFLICT (user_id) DO UPDATE SET assigned = assigned + 1;
       END""",
    """CREATE TRIGGER inbox_task_update AFTER UPDATE OF status, assignee_id ON human_tasks
       BEGIN
         UPDATE inbox_counts SET assigned = assigned - 1
         WHERE OLD.status = 'open' AND user_id = OLD.assignee_id;
         INSERT INTO inbox_counts (user_id, assigned, claimable)
         SELECT NEW.assignee_id, 1, 0 WHERE NEW.status = 'open' AND NEW.assignee_id IS NOT NULL
         ON CONFLICT (user_id) DO UPDATE SET assigned = assigned + 1;
         UPDATE inbox_counts SET claimable = claimable - 1
         WHERE OLD.status = 'open' AND OLD.assignee_id IS NULL
           AND user_id IN (SELECT user_id FROM human_task_candidates WHERE task_id = OLD.id AND claimable);
         UPDATE human_task_candidates SET claimable = (NEW.status = 'open' AND NEW.assignee_id IS NULL)
         WHERE task_id = NEW.id;
         UPDATE inbox_counts SET claimable = claimable + 1
         WHERE NEW.status = 'open' AND NEW.assignee_id IS NULL
           AND user_id IN (SELECT user_id FROM human_task_candidates WHERE task_id = NEW.id);
       END""",
    """CREATE TRIGGER inbox_candidate_insert AFTER INSERT ON human_task_candidates WHEN NEW.claimable
       BEGIN
         INSERT INTO inbox_counts (user_id, assigned, claimable) VALUES (NEW.user_id, 0, 1)
         ON CONFLICT (user_id) DO UPDATE SET claimable = claimable + 1;
       END""",
    """CREATE TRIGGER inbox_candidate_delete AFTER DELETE ON human_task_candidates WHEN OLD.claimable
       BEGIN
         UPDATE inbox_counts SET claimable = claimable - 1 WHERE user_id = OLD.user_id;
       END""",
]
PG = [
    """CREATE OR REPLACE FUNCTION salesflow_inbox_task() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'UPDATE' THEN
        IF OLD.status = 'open' AND OLD.assignee_id IS NOT NULL THEN
          UPDATE inbox_counts SET assigned = assigned - 1 WHERE user_id = OLD.assignee_id;
        END IF;
        IF OLD.status = 'open' AND OLD.assignee_id IS NULL THEN
          UPDATE inbox_counts SET claimable = claimable - 1
          WHERE user_id IN (SELECT user_id FROM human_task_candidates WHERE task_id = OLD.id AND claimable);
        END IF;
        UPDATE human_task_candidates SET claimable = (NEW.status = 'open' AND NEW.assignee_id IS NULL)
        WHERE task_id = NEW.id;
        IF NEW.status = 'open' AND NEW.assignee_id IS NULL THEN
          UPDATE inbox_counts SET claimable = claimable + 1
          WHERE user_id IN (SELECT user_id FROM human_task_candidates WHERE task_id = NEW.id);
        END IF;
      END IF;
      IF NEW.status = 'open' AND NEW.assignee_id IS NOT NULL THEN
        INSERT INTO inbox_counts (user_id, assigned, claimable) VALUES (NEW.assignee_id, 1, 0)
        ON CONFLICT (user_id) DO UPDATE SET assigned = inbox_counts.assigned + 1;
      END IF;
      RETURN NULL;
    END $$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE FUNCTION salesflow_inbox_candidate() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'INSERT' AND NEW.claimable THEN
        INSERT INTO inbox_counts (user_id, assigned, claimable) VALUES (NEW.user_id, 0, 1)
        ON CONFLICT (user_id) DO UPDATE SET claimable = inbox_counts.claimable + 1;
      ELSIF TG_OP = 'DELETE' AND OLD.claimable THEN
        UPDATE inbox_counts SET claimable = claimable - 1 WHERE user_id = OLD.user_id;
      END IF;
      RETURN NULL;
    END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER inbox_task AFTER INSERT OR UPDATE OF status, assignee_id ON human_tasks
       FOR EACH ROW EXECUTE FUNCTION salesflow_inbox_task()""",
    """CREATE TRIGGER inbox_candidate AFTER INSERT OR DELETE ON human_task_candidates
       FOR EACH ROW EXECUTE FUNCTION salesflow_inbox_candidate()""",
]


def upgrade() -> None:
    op.create_table('inbox_counts',
                    sa.Column('user_id', sa.Integer(), nullable=False),
                    sa.Column('assigned', sa.Integer(), nullable=False, server_default='0'),
                    sa.Column('claimable', sa.Integer(), nullable=False, server_default='0'),
                    sa.ForeignKeyConstraint(['user_id'], ['users.id']),
                    sa.PrimaryKeyConstraint('user_id'))
    # the background worker's pass looks for tasks falling due by status and due time
    op.create_index('ix_human_tasks_due', 'human_tasks', ['status', 'due_at'])
    with op.batch_alter_table('human_task_candidates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimable', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('sort_due', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('created_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_candidates_inbox', ['user_id', 'claimable', 'sort_due', 'created_at', 'task_id'])
    op.execute("""UPDATE human_task_candidates SET
        sort_due = (SELECT h.sort_due FROM human_tasks h WHERE h.id = human_task_candidates.task_id),
        created_at = (SELECT h.created_at FROM human_tasks h WHERE h.id = human_task_candidates.task_id),
        claimable = EXISTS (SELECT 1 FROM human_tasks h WHERE h.id = human_task_candidates.task_id
                            AND h.status = 'open' AND h.assignee_id IS NULL)""")
    op.execute("""INSERT INTO inbox_counts (user_id, assigned, claimable)
        SELECT u.id,
               (SELECT count(*) FROM human_tasks h WHERE h.assignee_id = u.id AND h.status = 'open'),
               (SELECT count(*) FROM human_task_candidates c WHERE c.user_id = u.id AND c.claimable)
        FROM users u""")
    for statement in (SQLITE if op.get_bind().dialect.name == "sqlite" else PG):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("inbox_task_insert", "inbox_task_update", "inbox_candidate_insert", "inbox_candidate_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS inbox_task ON human_tasks")
        op.execute("DROP TRIGGER IF EXISTS inbox_candidate ON human_task_candidates")
        op.execute("DROP FUNCTION IF EXISTS salesflow_inbox_task()")
        op.execute("DROP FUNCTION IF EXISTS salesflow_inbox_candidate()")
    with op.batch_alter_table('human_task_candidates', schema=None) as batch_op:
        batch_op.drop_index('ix_candidates_inbox')
        batch_op.drop_column('created_at')
        batch_op.drop_column('sort_due')
        batch_op.drop_column('claimable')
    op.drop_table('inbox_counts')
    op.drop_index('ix_human_tasks_due', table_name='human_tasks')
