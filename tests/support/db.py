"""Test databases: a fresh PostgreSQL database per run (dropped after), a SQLite file per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, text

PG_HOST = os.environ.get("RELAY_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("RELAY_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("RELAY_TEST_PG_USER", "postgres")


def pg_url(dbname: str, *, host: str = PG_HOST, port: int = PG_PORT) -> str:
    """A SQLAlchemy URL for ``dbname`` on the test server."""
    return f"postgresql+psycopg://{PG_USER}@{host}:{port}/{dbname}"


@contextmanager
def fresh_pg_database(prefix: str = "relay_test") -> Iterator[str]:
    """Create ``<prefix>_<random>``, yield its name, drop it (even if connections linger)."""
    name = f"{prefix}_{secrets.token_hex(5)}"
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_at(revision: str, *, backend: str, tmp_path: Any, prefix: str = "relay_migration") -> Iterator[Engine]:
    """A throw-away database migrated up to ``revision`` (as an older relay left it), disposed after."""
    from alembic import command

    from store.engine import alembic_config

    with ExitStack() as stack:
        url = (f"sqlite:///{tmp_path}/old.db" if backend == "sqlite"
               else pg_url(stack.enter_context(fresh_pg_database(prefix))))
        engine = create_engine(url)
        stack.callback(engine.dispose)
        command.upgrade(alembic_config(engine), revision)
        yield engine


def truncate_all(url: str) -> None:
    """Empty every table of the relay (cheaper than a new database per test)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        existing = {r[0] for r in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname='public'"))}
        names = sorted(existing - {"alembic_version"})
        if names:
            conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
    engine.dispose()
