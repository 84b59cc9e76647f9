"""the worker's pass finds what it has to tell through two partial indexes, each by due time: open
tasks with no overdue notice yet, and open tasks not reminded yet (both only of tasks that were not
overdue when they opened). They replace one index of every open task by due time, through which a
pass read every task due within the horizon that had been told already (20,000 reminded contract
reviews: 10 ms every pass).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# as in engine/models.py (HumanTask): the queries in engine/notify.py repeat these terms word for
# word, literals included, which is what lets SQLite and PostgreSQL use a partial index. Status
# leads, as in the index they replace: SQLite, without statistics, would otherwise read through the
# index on status alone
OVERDUE_UNSENT = "status = 'open' AND overdue_notified_at IS NULL AND due_at > created_at"
NOT_REMINDED = "status = 'open' AND reminded_at IS NULL AND due_at > created_at"


def upgrade() -> None:
    op.drop_index('ix_human_tasks_due', table_name='human_tasks')
    for name, where in (('ix_human_tasks_overdue_unsent', OVERDUE_UNSENT), ('ix_human_tasks_not_reminded', NOT_REMINDED)):
        op.create_index(name, 'human_tasks', ['status', 'due_at'], sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def downgrade() -> None:
    op.drop_index('ix_human_tasks_not_reminded', table_name='human_tasks')
    op.drop_index('ix_human_tasks_overdue_unsent', table_name='human_tasks')
    op.create_index('ix_human_tasks_due', 'human_tasks', ['status', 'due_at'])
