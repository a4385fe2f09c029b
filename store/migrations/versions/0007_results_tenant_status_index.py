"""results: one index for a tenant's listing by status, newest first

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

``GET /v1/results?status=undelivered`` filters on the producer's tenant and a status and pages by
``(created_at, id)`` descending. With only ``(tenant, created_at)`` and ``(status, created_at)`` to
choose from, SQLite walked the tenant's newest results and skipped every delivered one, so the
first page cost grew with the history (``bench/scale.py``: 1.7x from 2 k to 50 k results). This
index answers the page as one range, in order, whatever the history holds.
"""
from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.create_index('ix_results_tenant_status_created', ['tenant', 'status', 'created_at', 'id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index('ix_results_tenant_status_created')
