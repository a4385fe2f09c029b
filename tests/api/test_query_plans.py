"""The pickup listing's query is one index range in order, on SQLite and on PostgreSQL.

``bench/scale.py`` measures what a missing index costs at a million results; these tests keep the
shape that makes the cost flat: the SQL that ``ResultStore.list`` really sends is captured and
explained, and the plan must walk ``ix_results_tenant_status_created`` without sorting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from store.views import ResultFilter
from tests.conftest import Relay, result_payload

INDEX = "ix_results_tenant_status_created"


@contextmanager
def captured(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    """Every statement sent through ``engine`` while the block runs, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _listing_sql(relay: Relay, flt: ResultFilter, cursor: str | None = None) -> tuple[str, Any]:
    with captured(relay.runtime.db.engine) as seen:
        relay.runtime.results.list(flt, cursor=cursor, limit=50)
    [listing] = [(s, p) for s, p in seen if s.lstrip().upper().startswith("SELECT") and "FROM results" in s
                 and "ORDER BY" in s]
    return listing


def _plan(relay: Relay, statement: str, parameters: Any) -> str:
    engine = relay.runtime.db.engine
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            return "\n".join(str(r[-1]) for r in rows)
        # A handful of rows make a sequential scan cheapest; what matters is that the index can
        # answer the query in order, so take the scan and the sort off the planner's menu.
        conn.execute(text("SET enable_seqscan = off"))
        conn.execute(text("SET enable_sort = off"))
        rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
        conn.rollback()
        return "\n".join(str(r[0]) for r in rows)


@pytest.mark.parametrize("status", ["undelivered", "delivered", "pending"])
def test_a_tenants_listing_by_status_is_one_index_range_in_order(relay: Relay, status: str) -> None:
    for i in range(3):
        assert relay.post_result(result_payload(workflow_id=f"wf-{i}")).status_code == 202
    flt = ResultFilter(tenant="default", status=[status])
    page, _ = relay.runtime.results.list(flt, limit=50)
    assert all(v.status == status for v in page)
    plan = _plan(relay, *_listing_sql(relay, flt))
    assert INDEX in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


def test_the_next_page_walks_the_same_index(relay: Relay) -> None:
    for i in range(4):
        assert relay.post_result(result_payload(workflow_id=f"wf-{i}")).status_code == 202
    flt = ResultFilter(tenant="default", status=["pending"])
    first, cursor = relay.runtime.results.list(flt, limit=2)
    assert len(first) == 2 and cursor is not None
    plan = _plan(relay, *_listing_sql(relay, flt, cursor=cursor))
    assert INDEX in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


def test_the_next_delivery_of_a_destination_is_one_index_range_in_order(relay: Relay) -> None:
    """Once per message sent: it must cost one destination's queue, never the whole queue's (sorted)."""
    for i in range(3):
        assert relay.post_result(result_payload(workflow_id=f"wf-{i}")).status_code == 202
    with relay.runtime.db.engine.connect() as conn:
        [key] = conn.execute(text("SELECT DISTINCT destination_key FROM deliveries")).scalars().all()
    with captured(relay.runtime.db.engine) as seen:
        work = relay.runtime.deliveries.start_next(key)
    assert work is not None
    [(statement, parameters)] = [(s, p) for s, p in seen if "FROM deliveries" in s and "ORDER BY" in s
                                 and "LIMIT" in s]
    plan = _plan(relay, statement, parameters)
    assert "ix_deliveries_destination_next" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
