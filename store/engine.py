"""The database engine and the schema's version: one place that knows SQLite from PostgreSQL.

SQLite is the embedded default: WAL mode (readers never block the single writer), a busy timeout
so concurrent writers queue instead of failing, and a data directory readable only by the
service's user because it holds results and tokens. PostgreSQL is for several replicas.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 5
#: A pooled PostgreSQL connection idle this long is pinged before it is handed out again.
PG_PING_AFTER_IDLE_S = 1.0


class SchemaOutdated(RuntimeError):
    """The database is behind the code's migrations; ``relay migrate`` fixes it."""


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory databases and other backends."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def safe_url(url: str) -> str:
    """``url`` with its password hidden, for logs."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str) -> Engine:
    """An engine for ``url``, with the per-backend settings the relay relies on."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            _prepare_sqlite_file(path)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            poolclass=NullPool if path is None else None,
            **({} if path is None else {"pool_use_lifo": True}),
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take control so that a write transaction
        # starts with BEGIN IMMEDIATE where we ask for it and reads never upgrade mid-transaction.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_timeout=10,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """``pool_pre_ping``, for connections that sat idle only.

    A pre-ping on every checkout was a round trip per transaction: 18 % of the ingest writer's
    time, and two per delivered message. A connection that served a transaction moments ago was
    alive then; one that sat idle (across a restart or a failover of the server, an idle timeout of
    a proxy) is pinged, and a dead one is replaced before anyone sees it, as with the pre-ping. A
    server lost in the moments between two uses fails that one transaction, which SQLAlchemy
    answers by invalidating the pool: the caller sees ``StoreUnavailable`` (a 503, a retried step).
    """
    dialect = engine.dialect

    def mark_idle(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PG_PING_AFTER_IDLE_S:
            return  # just connected, or just used
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            raise sa_exc.DisconnectionError(f"idle connection failed its ping: {exc}") from exc

    event.listen(engine, "checkin", mark_idle)
    event.listen(engine, "checkout", ping_if_idle)


def _prepare_sqlite_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see make_engine)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # A writer takes the lock up front (IMMEDIATE): a deferred transaction that upgrades from read
    # to write mid-way fails with SQLITE_BUSY at once instead of waiting out the busy timeout.
    # Straight on the driver's connection: through ``exec_driver_sql`` the statement's execution
    # context cost more than SQLite taking the lock (it runs at the start of every transaction).
    # Its errors ("database is locked" past the busy timeout) leave as SQLAlchemy's, as any statement's do.
    statement = "BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_write", False) else "BEGIN"
    try:
        conn.connection.driver_connection.execute(statement)
    except sqlite3.OperationalError as exc:
        raise sa_exc.OperationalError(statement, None, exc) from exc


def alembic_config(engine: Engine) -> Config:
    """An Alembic config that runs on ``engine`` (no alembic.ini needed at run time)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest migration."""
    command.upgrade(alembic_config(engine), "head")


def schema_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """``(current, head)``: the database's revision and the code's newest one."""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head


def ensure_schema(engine: Engine) -> None:
    """Migrate the embedded SQLite store; refuse an outdated PostgreSQL one (an operator's decision)."""
    if engine.dialect.name == "sqlite":
        migrate(engine)
        return
    current, head = schema_revisions(engine)
    if current != head:
        raise SchemaOutdated(
            f"the database schema is at revision {current or 'none'} but this relay needs {head}: "
            "run `relay migrate` first"
        )
