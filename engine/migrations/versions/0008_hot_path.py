"""the completion's hot path: the organisation's version token (kept by triggers), the mail outbox
filled by a trigger on notifications, and the unread human_tasks.region_id column dropped

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

ORG_TABLES = ("users", "user_roles", "regions")

# A new token (random, never reused) whenever the organisation changes: engine/org.py keeps the org
# chart in memory and re-reads it when the token it reads with a command's lock is not the chart's.
SQLITE_NEW_TOKEN = "UPDATE org_version SET token = lower(hex(randomblob(16))) WHERE id = 1;"
PG_FUNCTIONS = """
CREATE OR REPLACE FUNCTION salesflow_org_changed() RETURNS trigger AS $$
BEGIN
  UPDATE org_version SET token = md5(random()::text || clock_timestamp()::text) WHERE id = 1;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION salesflow_mail_notification() RETURNS trigger AS $$
BEGIN
  INSERT INTO outbox (notification_id, to_addr, status, created_at, next_attempt_at, attempts, message_id)
  SELECT NEW.id, u.email, 'pending', NEW.at, NEW.at, 0, '<notification-' || NEW.id || '@salesflow>'
  FROM users u WHERE u.id = NEW.user_id AND u.email IS NOT NULL AND u.email <> '' AND u.mail_notifications;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
"""
# One outbox row per notification, for a recipient with an address and mail on: written by the
# database in the notification's INSERT (one statement for the command, not two).
SQLITE_MAIL = """
CREATE TRIGGER notification_mail AFTER INSERT ON notifications
BEGIN
  INSERT INTO outbox (notification_id, to_addr, status, created_at, next_attempt_at, attempts, message_id)
  SELECT NEW.id, u.email, 'pending', NEW.at, NEW.at, 0, '<notification-' || NEW.id || '@salesflow>'
  FROM users u WHERE u.id = NEW.user_id AND u.email IS NOT NULL AND u.email <> '' AND u.mail_notifications = 1;
END"""


def upgrade() -> None:
    op.create_table('org_version',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('token', sa.String(length=40), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    op.execute("INSERT INTO org_version (id, token) VALUES (1, 'initial')")
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for table in ORG_TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER org_changed_{table}_{event.lower()} AFTER {event} ON {table} "
                           f"BEGIN {SQLITE_NEW_TOKEN} END")
        op.execute(SQLITE_MAIL)
    else:
        op.execute(PG_FUNCTIONS)
        for table in ORG_TABLES:
            op.execute(f"CREATE TRIGGER org_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION salesflow_org_changed()")
        op.execute("CREATE TRIGGER notification_mail AFTER INSERT ON notifications "
                   "FOR EACH ROW EXECUTE FUNCTION salesflow_mail_notification()")
    with op.batch_alter_table('human_tasks', schema=None) as batch_op:
        batch_op.drop_column('region_id')


def downgrade() -> None:
    with op.batch_alter_table('human_tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('region_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_human_tasks_region_id', 'regions', ['region_id'], ['id'])
    op.execute("UPDATE human_tasks SET region_id = (SELECT region_id FROM process_instances p "
               "WHERE p.id = human_tasks.instance_id)")
    if op.get_bind().dialect.name == "sqlite":
        for table in ORG_TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS org_changed_{table}_{event}")
        op.execute("DROP TRIGGER IF EXISTS notification_mail")
    else:
        for table in ORG_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS org_changed ON {table}")
        op.execute("DROP TRIGGER IF EXISTS notification_mail ON notifications")
        op.execute("DROP FUNCTION IF EXISTS salesflow_org_changed()")
        op.execute("DROP FUNCTION IF EXISTS salesflow_mail_notification()")
    op.drop_table('org_version')
