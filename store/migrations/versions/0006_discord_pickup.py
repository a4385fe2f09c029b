"""discord pickup: the Discord users each result belongs to (who may fetch it with /results)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Results stored before this revision get their owners from the routes they already have: the
user of every DM destination (``dm:<user>`` keys, with or without a tenant prefix). Interaction
destinations did not record their user until now, so older ones add nobody.
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('result_viewers',
    sa.Column('result_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.PrimaryKeyConstraint('result_id', 'user_id')
    )
    with op.batch_alter_table('result_viewers', schema=None) as batch_op:
        batch_op.create_index('ix_result_viewers_user', ['user_id', 'result_id'], unique=False)
    # One row per (result, DM user) of every route generation, taken from the stored targets'
    # destination keys: "dm:<user>" or "<tenant>/dm:<user>".
    deliveries = sa.table('deliveries', sa.column('result_id', sa.String), sa.column('kind', sa.String),
                          sa.column('destination_key', sa.String))
    connection = op.get_bind()
    rows = connection.execute(sa.select(deliveries.c.result_id, deliveries.c.destination_key)
                              .where(deliveries.c.kind == 'dm').distinct()).all()
    owners = {(result_id, key.rpartition('dm:')[2]) for result_id, key in rows if 'dm:' in key}
    if owners:
        viewers = sa.table('result_viewers', sa.column('result_id', sa.String), sa.column('user_id', sa.String))
        op.bulk_insert(viewers, [{'result_id': r, 'user_id': u} for r, u in sorted(owners) if u.isdigit()])


def downgrade() -> None:
    with op.batch_alter_table('result_viewers', schema=None) as batch_op:
        batch_op.drop_index('ix_result_viewers_user')
    op.drop_table('result_viewers')
