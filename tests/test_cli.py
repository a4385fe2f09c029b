"""The ``relay`` command as a newcomer runs it: serve on nothing, migrate, keys; schema checks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

import schemas.tables  # noqa: F401
from tests.support.db import fresh_pg_database, pg_url

RELAY = [sys.executable, "-m", "app.cli"]
ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_with_nothing_configured_starts_on_sqlite(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([*RELAY, "serve", "--port", str(port)], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not any("listening on" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        key = next(lines[i + 1].strip() for i, line in enumerate(lines) if "Shown once" in line)
        assert f"http://127.0.0.1:{port}/docs" in lines[-1]
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        ok = httpx.get(f"http://127.0.0.1:{port}/v1/results", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    data = tmp_path / "data"
    assert (data / "relay.db").exists()
    assert oct(data.stat().st_mode & 0o777) == "0o700"
    assert oct((data / "relay.db").stat().st_mode & 0o777) == "0o600"


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    env = _env(RELAY_DATABASE_URL=f"sqlite:///{tmp_path}/k.db")
    created = subprocess.run([*RELAY, "keys", "create", "--name", "ci", "--tenant", "acme"], env=env,
                             capture_output=True, text=True, check=True)
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("rrk_")
    listed = subprocess.run([*RELAY, "keys", "list"], env=env, capture_output=True, text=True, check=True).stdout
    key_id = listed.split("\t", 1)[0]
    assert "\tacme\tci\t" in listed and "active" in listed and key not in listed
    bad = subprocess.run([*RELAY, "keys", "create", "--tenant", "Not A Tenant"], env=env, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "invalid tenant" in bad.stderr
    subprocess.run([*RELAY, "keys", "revoke", key_id], env=env, check=True, capture_output=True)
    assert "revoked" in subprocess.run([*RELAY, "keys", "list"], env=env, capture_output=True, text=True).stdout
    again = subprocess.run([*RELAY, "keys", "revoke", key_id], env=env, capture_output=True, text=True)
    assert again.returncode == 1


@pytest.mark.postgres
def test_postgres_outdated_schema_refused_until_migrate() -> None:
    with fresh_pg_database("relay_cli") as name:
        env = _env(RELAY_DATABASE_URL=pg_url(name))
        refused = subprocess.run([*RELAY, "serve", "--port", str(_free_port())], env=env, capture_output=True,
                                 text=True, timeout=60)
        assert refused.returncode == 2
        assert "run `relay migrate`" in refused.stderr
        subprocess.run([*RELAY, "migrate"], env=env, check=True, capture_output=True, timeout=60)
        _assert_schema_matches_models(pg_url(name))
        key = subprocess.run([*RELAY, "keys", "create"], env=env, capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        assert key.startswith("rrk_")


def test_sqlite_migrations_from_empty_match_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    subprocess.run([*RELAY, "migrate"], env=_env(RELAY_DATABASE_URL=url), check=True, capture_output=True)
    _assert_schema_matches_models(url)


def test_migrations_moved_with_their_history(tmp_path: Path) -> None:
    """The revisions live in ``store/migrations`` now, under the ids relays before the move wrote into
    ``alembic_version``: a database such a relay migrated upgrades with ``relay migrate``."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from store.engine import MIGRATIONS_DIR, alembic_config

    assert MIGRATIONS_DIR.parent.name == "store"
    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(url)
    config = alembic_config(engine)
    oldest_first = [rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()][::-1]
    assert oldest_first[:6] == ["0001", "0002", "0003", "0004", "0005", "0006"]
    command.upgrade(config, "0005")  # where a relay of an earlier release left its database
    subprocess.run([*RELAY, "migrate"], env=_env(RELAY_DATABASE_URL=url), check=True, capture_output=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == oldest_first[-1]
    engine.dispose()
    _assert_schema_matches_models(url)


def _assert_schema_matches_models(url: str) -> None:
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), SQLModel.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == [], diff
    assert {"results", "deliveries", "planned_messages", "destinations", "attachments", "api_keys"} <= tables


def test_an_invalid_setting_stops_relay_with_its_name(tmp_path: Path) -> None:
    """Exit 2 and one line per bad setting, named as it is set (no traceback)."""
    done = subprocess.run([*RELAY, "keys", "list"], env=_env(
        RELAY_DATABASE_URL=f"sqlite:///{tmp_path}/relay.db", RELAY_LEASE_SECONDS="0", RELAY_RETRY_SCHEDULE="5,-1"),
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["relay: RELAY_LEASE_SECONDS: Input should be greater than 0",
                     "relay: RELAY_RETRY_SCHEDULE[1]: Input should be greater than or equal to 0"]
    assert not (tmp_path / "relay.db").exists()
