"""channels, forum threads, silent results, operator alerts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

- ``destinations.channel_id`` / ``guild_id``: a webhook's Discord channel and guild, learned from
  Discord's answers (nullable: unknown until the first send or ``GET /webhooks/{id}/{token}``).
- ``channel_pacers``: the send slots of Discord's hidden per-channel webhook limit, shared by every
  worker and replica.
- ``deliveries.thread_id``: the forum post a delivery's first message created, so every later
  message (and every retry, after any restart) goes into that thread.
- ``results.silent``: sent with SUPPRESS_NOTIFICATIONS.
- ``alert_events``: what the next operator alert digest will say.
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('destinations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
        batch_op.add_column(sa.Column('guild_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('thread_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('silent', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table('channel_pacers',
    sa.Column('channel_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('slots_json', sa.JSON(), nullable=False),
    sa.Column('blocked_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('channel_id')
    )
    op.create_table('alert_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('group_key', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('detail_json', sa.JSON(), nullable=False),
    sa.Column('sent_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alert_events', schema=None) as batch_op:
        batch_op.create_index('ix_alert_events_pending', ['sent_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('alert_events', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_events_pending')
    op.drop_table('alert_events')
    op.drop_table('channel_pacers')
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_column('silent')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('thread_id')
    with op.batch_alter_table('destinations', schema=None) as batch_op:
        batch_op.drop_column('guild_id')
        batch_op.drop_column('channel_id')
