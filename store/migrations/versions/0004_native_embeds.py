"""native embeds: a result's Discord ``content`` and ``embeds``

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Results stored before this revision have neither: ``content`` is NULL and ``embeds_json`` the
empty list (its server default), which renders exactly as those results did before.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('embeds_json', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_column('embeds_json')
        batch_op.drop_column('content')
