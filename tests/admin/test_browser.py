"""The admin page in a real browser (Debian's chromium through Playwright) against a relay whose
delivery engine sends to the Discord emulator.

One flow, so the browser and the relay start once: log in, see undelivered results with their
reason, filter and search, read the detail page (timeline, preview), fix the webhook and
redeliver, bulk-redeliver, and check that a ``<script>`` title never runs and that logged-out
visits land on the login page. Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.admin.conftest import ADMIN_TOKEN
from tests.conftest import Relay, result_payload
from tests.fakes.discord import DiscordEmulator

pytestmark = [pytest.mark.slow, pytest.mark.browser]
playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
XSS_TITLE = "<script>alert('xss')</script> in a title"


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    """SQLite only: the HTTP tests already cover both backends, the browser adds nothing there."""
    return f"sqlite:///{tmp_path}/relay.db"


@pytest.fixture
def discord() -> Iterator[DiscordEmulator]:
    """A fresh Discord emulator."""
    with DiscordEmulator() as emulator:
        yield emulator


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless chromium, kept off every network but 127.0.0.1."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def wait_status(relay: Relay, rid: str, status: str, timeout: float = 20.0) -> None:
    """Poll the API until the engine has moved the result to ``status``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = relay.client.get(f"/v1/results/{rid}").json()["status"]
        if last == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"{rid} stayed {last!r}, expected {status!r}")


def test_admin_flow_in_a_browser(make_relay: Callable[..., Relay], discord: DiscordEmulator, browser: Any) -> None:
    relay = make_relay(admin_token=ADMIN_TOKEN, run_workers=True, discord_api_base=discord.api_base,
                       poll_interval=0.2, retry_schedule=[0.2], http_retry_attempts=1)
    hook_id, _, hook_url = discord.add_webhook()
    discord.refuse_webhook(hook_id, status=403, code=50013, message="Missing Permissions")
    route = [{"type": "webhook", "url": hook_url}]
    body = "## Findings\n\n- speaker is *confident*\n- `42` questions\n\n```python\nprint('hi')\n```\n"
    video = relay.post_result(result_payload(title="Video analysis of the keynote", workflow_id="wf_video",
                                             body=body, route=route, level="success")).json()["id"]
    xss = relay.post_result(result_payload(title=XSS_TITLE, workflow_id="wf_xss", route=route)).json()["id"]
    report = relay.post_result(result_payload(title="Nightly report", workflow_id="wf_report", route=route,
                                              level="warning")).json()["id"]
    for rid in (video, xss, report):
        wait_status(relay, rid, "undelivered")

    ARTIFACTS.mkdir(exist_ok=True)
    dialogs: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.set_default_timeout(10_000)

    # Logged out: sent to the login page, then back where we were headed.
    page.goto(f"{relay.url}/admin/results/{video}")
    assert "/admin/login" in page.url
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/admin/results/{video}")

    # The list: every undelivered result with its reason in words.
    page.goto(f"{relay.url}/admin")
    rows = page.locator("table.results tbody tr")
    assert rows.count() == 3
    assert page.locator("text=missing permission (50013)").count() == 3
    assert page.locator("a.title", has_text=XSS_TITLE).count() == 1  # shown as text, not run
    page.screenshot(path=str(ARTIFACTS / "admin-list.png"), full_page=True)

    page.fill("#f-q", "keynote")
    page.click(".filters button[type=submit]")
    assert page.locator("table.results tbody tr").count() == 1
    page.fill("#f-q", "")
    page.fill("#f-wf", "wf_report")
    page.click(".filters button[type=submit]")
    assert [t.strip() for t in page.locator("a.title").all_inner_texts()] == ["Nightly report"]

    # The detail page: timeline with the engine's attempts, and the Discord preview.
    page.goto(f"{relay.url}/admin/results/{video}")
    assert page.locator(".timeline .ev.failed").count() >= 1
    assert "missing permission (50013)" in page.locator(".timeline").inner_text()
    assert page.locator(".preview .embed .etitle", has_text="Video analysis of the keynote").count() == 1
    assert page.locator(".preview .embed h2", has_text="Findings").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "admin-detail.png"), full_page=True)

    # Fixed on Discord's side: redeliver from the page, the emulator gets the message.
    discord.accept_webhook(hook_id)
    page.click("form.redeliver button[type=submit]")
    page.wait_for_url("**done=redelivered**")
    wait_status(relay, video, "delivered")
    [message] = discord.messages(webhook_id=hook_id)
    assert message.payload["embeds"][0]["title"].endswith("Video analysis of the keynote")
    page.reload()
    assert page.locator(".timeline .ev.delivered").count() == 1

    # Bulk: tick every remaining undelivered row (the select-all box is the page's one script).
    page.goto(f"{relay.url}/admin")
    assert page.locator("table.results tbody tr").count() == 2
    page.check("#select-all")
    assert page.locator('input[name="ids"]:checked').count() == 2
    page.click("button[value=selected]")
    page.wait_for_url("**done=redelivered**")
    for rid in (xss, report):
        wait_status(relay, rid, "delivered")
    assert len(discord.messages(webhook_id=hook_id)) == 3
    assert page.locator("text=No undelivered results match.").count() == 1
    page.goto(f"{relay.url}/admin?status=all")
    page.screenshot(path=str(ARTIFACTS / "admin-list-all.png"), full_page=True)

    # The <script> title: its detail page renders, and nothing ran.
    page.goto(f"{relay.url}/admin/results/{xss}")
    assert page.locator("h1.result-title").inner_text().startswith("<script>")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                storage_state=context.storage_state())
    phone_page = phone.new_page()
    phone_page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    phone_page.goto(f"{relay.url}/admin?status=all")
    phone_page.screenshot(path=str(ARTIFACTS / "admin-list-phone.png"), full_page=True)
    phone_page.goto(f"{relay.url}/admin/results/{video}")
    phone_page.screenshot(path=str(ARTIFACTS / "admin-detail-phone.png"), full_page=True)
    phone.close()
    assert dialogs == []

    # Logging out ends the session; a fresh browser is sent to the login page too.
    page.click("text=Log out")
    page.wait_for_url("**/admin/login")
    page.goto(f"{relay.url}/admin/destinations")
    assert "/admin/login" in page.url
    fresh = browser.new_context().new_page()
    fresh.goto(f"{relay.url}/admin")
    assert "/admin/login" in fresh.url
    context.close()


def test_api_docs_render_offline_from_the_relays_own_assets(make_relay: Callable[..., Relay], browser: Any) -> None:
    relay = make_relay()
    page = browser.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(relay.url) else None)
    page.goto(f"{relay.url}/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)  # Swagger UI ran and read /openapi.json
    assert page.locator(".opblock").count() > 10
    page.goto(f"{relay.url}/redoc")
    page.wait_for_selector("text=result-relay", timeout=20_000)
    # No CDN, no font service: scripts, styles and the schema all came from the relay. ReDoc's own
    # "API docs by Redocly" footer logo is the one thing it tries to fetch; offline it just stays blank.
    needed = [u for u in outside if not u.startswith(("blob:", "data:")) and not u.endswith("/logo-mini.svg")]
    assert needed == []
    page.close()


def test_level_icons_render_as_colour_emoji_not_empty_boxes(browser: Any) -> None:
    """The admin page's level icons are emoji: chromium needs a colour emoji font (fonts-noto-color-emoji)."""
    page = browser.new_page()
    try:
        page.set_content("<canvas id=c width=64 height=64></canvas>")
        coloured = page.evaluate("""() => {
            const ctx = document.getElementById('c').getContext('2d');
            ctx.font = '48px sans-serif';
            ctx.fillStyle = '#000';
            ctx.fillText('\\u2705', 4, 52);
            const data = ctx.getImageData(0, 0, 64, 64).data;
            let n = 0;
            for (let i = 0; i < data.length; i += 4) {
                const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
                if (a > 0 && (Math.abs(r - g) > 40 || Math.abs(g - b) > 40)) n++;
            }
            return n;
        }""")
    finally:
        page.close()
    assert coloured > 50, "✅ drew no colour: install fonts-noto-color-emoji (scripts/install-test-deps.sh)"
