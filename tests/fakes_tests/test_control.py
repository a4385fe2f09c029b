"""The ``/_emulator`` control API and the standalone mode, for a relay in another process."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fakes.discord import DiscordEmulator

REPO = Path(__file__).resolve().parents[2]


def test_register_send_and_read_back_over_http(discord: DiscordEmulator, client: httpx.Client) -> None:
    control = f"{discord.base_url}/_emulator"
    hook = client.post(f"{control}/webhooks", json={"webhook_id": "31", "token": "t31", "channel_id": "7"}).json()
    assert hook["url"] == f"{discord.api_base}/webhooks/31/t31"
    client.post(hook["url"], data={"payload_json": '{"content": "x"}'}, files={"files[0]": ("a.bin", b"\x00\x01")})
    messages = client.get(f"{control}/messages", params={"webhook_id": "31", "include_bytes": "1"}).json()["messages"]
    [message] = messages
    assert message["channel_id"] == "7"
    assert message["files"][0]["sha256"] == hashlib.sha256(b"\x00\x01").hexdigest()
    assert base64.b64decode(message["files"][0]["data_base64"]) == b"\x00\x01"

    client.post(f"{control}/webhooks/31/refuse", json={"status": 403, "code": 50013, "message": "Missing Permissions"})
    assert client.post(hook["url"], json={"content": "x"}).status_code == 403
    client.post(f"{control}/webhooks/31/accept")
    client.delete(f"{control}/webhooks/31")
    assert client.post(hook["url"], json={"content": "x"}).status_code == 404

    rejected = client.get(f"{control}/rejected").json()["rejected"]
    assert [(r["status"], r["code"]) for r in rejected] == [(403, 50013), (404, 10015)]
    counters = client.get(f"{control}/counters").json()
    assert counters["accepted"] == 1
    assert counters["invalid_requests"] == 1
    assert counters["by_status"] == {"204": 1, "403": 1, "404": 1}

    assert client.post(f"{control}/reset").status_code == 204
    assert client.get(f"{control}/messages").json() == {"messages": []}


def test_interactions_clock_and_dms_over_http(discord: DiscordEmulator, client: httpx.Client) -> None:
    control = f"{discord.base_url}/_emulator"
    url = client.post(f"{control}/interactions", json={"application_id": "5", "token": "it"}).json()["url"]
    assert client.post(url, json={"content": "x"}).status_code == 200
    clock = client.post(f"{control}/clock", json={"advance": 900}).json()
    assert clock["offset"] == 900
    assert client.post(url, json={"content": "x"}).status_code == 401

    client.put(f"{control}/bot_token", json={"token": "other"})
    client.post(f"{control}/users/42/close_dms")
    bot = {"Authorization": "Bot other"}
    channel = client.post(f"{discord.api_base}/users/@me/channels", headers=bot, json={"recipient_id": "42"}).json()
    response = client.post(f"{discord.api_base}/channels/{channel['id']}/messages", headers=bot, json={"content": "x"})
    assert response.json()["code"] == 50007
    added = client.post(f"{control}/channels", json={}).json()["id"]
    assert client.post(f"{discord.api_base}/channels/{added}/messages", headers=bot, json={"content": "x"}).is_success
    limits = client.put(f"{control}/limits", json={"max_file_bytes": 8 * 1024 * 1024}).json()
    assert limits["max_file_bytes"] == 8 * 1024 * 1024


async def test_many_webhooks_in_parallel() -> None:
    """A small cut of the benchmark load: 50 webhooks x 5 messages at once, nothing lost."""
    with DiscordEmulator(auto_create_webhooks=True) as discord:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:

            async def send(webhook: int) -> list[int]:
                url = f"{discord.api_base}/webhooks/{1000 + webhook}/token{webhook}"
                embed = {"title": f"w{webhook}", "description": "d" * 500, "fields": [{"name": "n", "value": "v"}]}
                return [
                    (await client.post(url, params={"wait": "true"}, json={"embeds": [embed]})).status_code
                    for _ in range(5)
                ]

            results = await asyncio.gather(*(send(i) for i in range(50)))
        assert all(status == 200 for statuses in results for status in statuses)
        assert len(discord.messages()) == 250
        assert len({m.id for m in discord.messages()}) == 250


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_standalone_module() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.discord", "--port", str(port), "--auto-create-webhooks"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/api/v10/webhooks/1/t", json={"content": "x"})
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "standalone emulator did not start"
                time.sleep(0.05)
        assert response.status_code == 204
        counters = httpx.get(f"http://127.0.0.1:{port}/_emulator/counters").json()
        assert counters["accepted"] == 1
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert f"RELAY_DISCORD_API_BASE=http://127.0.0.1:{port}/api/v10" in output.decode()
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
    assert process.returncode in (0, -signal.SIGTERM)
