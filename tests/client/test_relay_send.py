"""``relay-send`` end to end: a real console script against the live relay, pipes and ``--wait`` included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.client.conftest import LiveRelay
from tests.engine.helpers import body_seen

EXE = str(Path(sys.executable).parent / "relay-send")  # the console script installed next to this interpreter


def _run(live: LiveRelay | None, *args: str, stdin: str = "",
         url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    if live is not None or url:
        env["RELAY_URL"] = url or (live.url if live else "")
        env["RELAY_KEY"] = live.key if live else "k"
    return subprocess.run([EXE, *args], input=stdin, env=env, capture_output=True, text=True, timeout=120)


def test_a_pipe_with_wait_is_delivered(live: LiveRelay, tmp_path: Path) -> None:
    hook_id, url = live.new_webhook()
    attachment = tmp_path / "data.csv"
    attachment.write_text("a,b\n1,2\n")
    done = _run(live, "--webhook", url, "--title", "Nightly", "--body", "-", "--field", "rows=2",
                "--file", str(attachment), "--wait", stdin="report from make\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("res_") and "delivered" in done.stderr
    [message] = live.discord.messages(hook_id)
    embeds = message.payload["embeds"]
    assert embeds[0]["title"] == "Nightly" and "report from make" in body_seen([message])
    assert [f for e in embeds for f in e.get("fields", [])] == [{"name": "rows", "value": "2", "inline": False}]
    assert [f.data for f in message.files] == [b"a,b\n1,2\n"]


def test_exit_codes(live: LiveRelay, dead_url: str, tmp_path: Path) -> None:
    _, url = live.new_webhook()
    body = tmp_path / "body.md"
    body.write_text("from a file")
    assert _run(live, "--webhook", url, "--title", "t", "--body-file", str(body)).returncode == 0
    assert _run(live, "--title", "no route").returncode == 2
    assert _run(live, "--webhook", "https://example.com/x", "--title", "t").returncode == 2  # the relay's 422
    assert _run(live, "--webhook", url, "--title", "t", "--file", str(tmp_path / "missing")).returncode == 2
    assert _run(None, "--webhook", url, "--title", "t").returncode == 2  # no RELAY_URL / RELAY_KEY
    down = ("--webhook", url, "--title", "t", "--retries", "0")
    assert _run(live, *down, url=dead_url).returncode == 4
    spooled = _run(live, *down, "--spool", str(tmp_path / "s.db"), url=dead_url)
    assert spooled.returncode == 3 and "spooled" in spooled.stderr
