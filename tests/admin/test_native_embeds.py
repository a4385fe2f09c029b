"""The admin page shows a result's Discord-native content and embeds: as sent, and as Discord will show them."""

from __future__ import annotations

import html
import json

from tests.admin.conftest import AdminClient
from tests.conftest import result_payload


def test_detail_page_shows_content_and_embeds_escaped(admin: AdminClient) -> None:
    embeds = [{"title": "Native <b>one</b>", "description": "**bold** text", "color": 0x57F287,
               "fields": [{"name": "Speakers", "value": "2", "inline": True}],
               "image": {"url": "https://example.com/chart.png"}, "footer": {"text": "model v3"}},
              {"description": "second <script>alert(1)</script>"}]
    payload = result_payload(content="Done: <i>all</i> of it", embeds=embeds)
    resp = admin.relay.post_result(payload)
    assert resp.status_code == 202, resp.text
    page = admin.get(f"/admin/results/{resp.json()['id']}")
    assert page.status_code == 200
    text = page.text
    assert "<script>alert(1)" not in text and "<i>all</i>" not in text and "<b>one</b>" not in text
    # The original, in full: the content and each embed object exactly as stored.
    assert "Done: &lt;i&gt;all&lt;/i&gt; of it" in text
    shown = [json.loads(html.unescape(block)) for block in
             text.split('class="mono embed-json"')[1:] for block in [block.split(">", 1)[1].split("</pre>", 1)[0]]]
    assert shown == embeds
    # The preview: the native embeds first, then the relay's own rendering.
    preview = text.split('aria-label="Discord preview"', 1)[1]
    assert preview.index("Native &lt;b&gt;one&lt;/b&gt;") < preview.index("Analysis: a video")
    assert "🖼 https://example.com/chart.png" in preview and "model v3" in preview
