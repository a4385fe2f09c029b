"""tenants: every key, result, destination and transcription belongs to one; admin sessions

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Rows written before tenants existed are put into the ``default`` tenant (the server default of
the new columns), which is also the tenant of a key created without ``--tenant``. Admin sessions
are kept server side so that logging out ends a session on every replica.
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_TABLES = ('api_keys', 'results', 'destinations', 'transcriptions')


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('tenant', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False,
                                          server_default='default'))
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.create_index('ix_results_tenant_created', ['tenant', 'created_at'], unique=False)
    op.create_table('admin_sessions',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('credential', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('admin_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_sessions_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('admin_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_sessions_expires_at'))
    op.drop_table('admin_sessions')
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index('ix_results_tenant_created')
    for table in reversed(_TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('tenant')
