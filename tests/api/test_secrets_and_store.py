"""Secrets masked in responses and logs, encrypted at rest; 503 while the store is down; retention."""

from __future__ import annotations

import logging
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import create_engine, text, update

from schemas.tables import AlertEvent, Result
from tests.conftest import Relay, result_payload
from tests.support.db import PG_HOST, PG_PORT, pg_url
from tests.support.proxy import TcpProxy

WEBHOOK_TOKEN = "wh-token-SHOULD-NEVER-LEAK_1234567890"
INTERACTION_TOKEN = "it-token-SHOULD-NEVER-LEAK_0987654321"


def _route() -> list[dict]:
    return [
        {"type": "interaction", "application_id": "77", "token": INTERACTION_TOKEN,
         "created_at": datetime.now(UTC).isoformat()},
        {"type": "webhook", "url": f"https://discord.com/api/webhooks/555/{WEBHOOK_TOKEN}"},
    ]


def test_tokens_masked_in_responses_and_logs_and_encrypted_at_rest(
    make_relay, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.DEBUG)
    relay: Relay = make_relay(secret_key="at-rest-key")
    rid = relay.post_result(result_payload(route=_route())).json()["id"]
    seen = [relay.client.get(f"/v1/results/{rid}").text, relay.client.get("/v1/results").text,
            relay.client.post(f"/v1/results/{rid}/ack").text, relay.client.get(f"/v1/results/{rid}/content").text]
    # A refused URL must not be echoed back either.
    bad = relay.post_result(result_payload(route=[{"type": "webhook",
                                                   "url": f"https://evil.com/api/webhooks/1/{WEBHOOK_TOKEN}"}]))
    seen.append(bad.text)
    for text_ in seen:
        assert WEBHOOK_TOKEN not in text_ and INTERACTION_TOKEN not in text_
    assert "••••" in seen[0]
    # The relay never logs a token in the first place (the redacting filter is the second line).
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records and WEBHOOK_TOKEN not in logged and INTERACTION_TOKEN not in logged
    # At rest: the stored targets hold ciphertext, not the tokens.
    engine = create_engine(relay.settings.database_url)
    with engine.connect() as conn:
        stored = " ".join(str(row[0]) for row in conn.execute(text("SELECT target_json FROM deliveries")))
    engine.dispose()
    assert WEBHOOK_TOKEN not in stored and INTERACTION_TOKEN not in stored and "enc:v1:" in stored


def test_redacting_filter_scrubs_formatted_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    from app.logs import configure_logging

    configure_logging("INFO", "json")
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_relay", False))
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1,
                               'HTTP Request: POST http://127.0.0.1:1/api/v10/webhooks/9/%s "200"',
                               (WEBHOOK_TOKEN,), None)
    assert handler.filter(record)
    line = handler.format(record)
    assert WEBHOOK_TOKEN not in line and "/webhooks/9/••••" in line
    bot = logging.LogRecord("x", logging.INFO, __file__, 1, "Authorization: Bot abc.def-ghi", None, None)
    handler.filter(bot)
    assert "abc.def" not in handler.format(bot)
    logging.getLogger().removeHandler(handler)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_503_while_store_unreachable_then_recovery(backend: str, tmp_path, pg_database_for_proxy) -> None:  # type: ignore[no-untyped-def]
    from app.main import create_app
    from app.runtime import Runtime
    from app.settings import Settings
    from tests.support.server import LiveServer

    proxy = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/relay.db"
    else:
        proxy = TcpProxy(PG_HOST, PG_PORT)
        url = pg_url(pg_database_for_proxy, port=proxy.port)
    settings = Settings(_env_file=None, database_url=url, run_workers=False)
    runtime = Runtime.build(settings)
    server = LiveServer(create_app(runtime=runtime)).start()
    _, key = runtime.keys.create()
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    try:
        assert client.post("/v1/results", json=result_payload()).status_code == 202
        locker = None
        if proxy is not None:
            proxy.cut()
        else:
            # Another process holds SQLite's write lock past the busy timeout: writes cannot commit.
            locker = sqlite3.connect(settings.sqlite_path, isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")
        down = client.post("/v1/results", json=result_payload(title="during outage"))
        assert down.status_code == 503, down.text
        assert down.headers["retry-after"] == "5"
        assert down.json()["error"]["code"] == "store_unavailable"
        if proxy is not None:  # (SQLite in WAL mode still serves reads while a writer holds the lock)
            assert httpx.get(f"{server.url}/readyz", timeout=60).status_code == 503
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        if proxy is not None:
            proxy.restore()
        else:
            locker.execute("ROLLBACK")
            locker.close()
        deadline = time.monotonic() + 30
        while True:
            resp = client.post("/v1/results", json=result_payload(title="after outage"))
            if resp.status_code == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert resp.status_code == 202
        titles = [i["title"] for i in client.get("/v1/results").json()["items"]]
        assert titles == ["after outage", "Analysis: a video"]  # nothing half-written from the outage
    finally:
        client.close()
        server.stop()
        runtime.close()
        if proxy is not None:
            proxy.close()


@pytest.fixture
def pg_database_for_proxy(request: pytest.FixtureRequest) -> str | None:
    """The run's PostgreSQL database, only for the postgres variant."""
    if "postgres" not in request.node.name:
        return None
    from tests.support.db import truncate_all

    name = request.getfixturevalue("pg_database")
    truncate_all(pg_url(name))
    return name


def test_retention_purges_finished_results_with_their_files(make_relay) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = make_relay(retention_delivered=3600, retention_undelivered=7200, purge_interval=0.2)
    import base64

    att = [{"filename": "a.txt", "content_base64": base64.b64encode(b"abc").decode()}]
    ids = {name: relay.post_result(result_payload(title=name, attachments=att)).json()["id"]
           for name in ("old_delivered", "new_delivered", "old_undelivered", "mid_undelivered", "pending")}
    now = datetime.now(UTC)
    finished = {"old_delivered": ("delivered", now - timedelta(hours=2)),
                "new_delivered": ("delivered", now - timedelta(minutes=10)),
                "old_undelivered": ("undelivered", now - timedelta(hours=3)),
                "mid_undelivered": ("undelivered", now - timedelta(hours=1.5))}
    db = relay.runtime.db
    with db.session(write=True) as session:
        for name, (status, at) in finished.items():
            session.execute(update(Result).where(Result.id == ids[name]).values(status=status, finished_at=at))
        for told in (now - timedelta(hours=2), now - timedelta(minutes=10), None):  # alerts: old, recent, unsent
            session.add(AlertEvent(at=now, kind="disabled", group_key="g", text="t", detail_json={}, sent_at=told))
    deadline = time.monotonic() + 20
    gone: set[str] = set()
    while time.monotonic() < deadline:
        gone = {n for n, rid in ids.items() if relay.client.get(f"/v1/results/{rid}").status_code == 404}
        if gone >= {"old_delivered", "old_undelivered"}:
            break
        time.sleep(0.2)
    assert gone == {"old_delivered", "old_undelivered"}
    engine = create_engine(relay.settings.database_url)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM attachments")).scalar()
        orphans = conn.execute(text("SELECT count(*) FROM deliveries WHERE result_id NOT IN "
                                    "(SELECT id FROM results)")).scalar()
        alerts = conn.execute(text("SELECT count(*) FROM alert_events")).scalar()
    engine.dispose()
    assert left == 3 and orphans == 0
    assert alerts == 2  # the alert told two hours ago is gone; the recent and the unsent one stay
