"""deliveries: the next due delivery of one destination is one index range, in order

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

The engine asks, once per message sent, for the oldest due delivery of the destination it holds
(``destination_key``, ``status = 'pending'``, ordered by ``created_at, id``). With only
``(destination_key, status)`` and ``(status, next_attempt_at)`` to choose from, SQLite took the
second: it read every due delivery of every destination and sorted them, so each message cost as
much as the whole queue (py-spy: a tenth of the engine's CPU with 4,000 queued). This index, which
also serves every lookup the one it replaces did, answers it with the first matching entry.
"""
from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_destination')
        batch_op.create_index('ix_deliveries_destination_next', ['destination_key', 'status', 'created_at', 'id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_destination_next')
        batch_op.create_index('ix_deliveries_destination', ['destination_key', 'status'], unique=False)
