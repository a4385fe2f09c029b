"""The client is its own distribution: httpx only, nothing of the server, typed."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "client"
SERVER_PACKAGES = {"app", "schemas", "delivery", "transcription", "fastapi", "sqlalchemy", "sqlmodel",
                   "faster_whisper", "pydantic", "starlette", "tenacity", "alembic", "uvicorn"}


def test_depends_on_httpx_only() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0] for d in project["dependencies"]] == ["httpx"]
    assert project["name"] == "result-relay-client"
    assert project["scripts"] == {"relay-send": "relay_client.cli:run"}
    assert "discord" in project["optional-dependencies"]
    assert (CLIENT / "relay_client" / "py.typed").exists()


def test_imports_nothing_of_the_server() -> None:
    for path in (CLIENT / "relay_client").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] not in SERVER_PACKAGES, f"{path.name} imports {name}"
