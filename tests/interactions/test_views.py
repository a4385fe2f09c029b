"""The pure side of ``/results``: custom ids, the words for failures, messages within Discord's limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.interactions.views import (
    STATUS_CHOICES,
    Click,
    action_id,
    choice,
    list_message,
    page_id,
    parse_custom_id,
    show_message,
    why_not_delivered,
)
from schemas.messages import AttachmentRef, RenderInput
from store.views import AttachmentMeta, DeliveryView, ResultView
from tests.fakes.discord_validation import validate_message, validate_request

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


def _delivery(kind: str, status: str = "failed", code: int | None = None, http: int | None = None,
              message: str | None = None) -> DeliveryView:
    return DeliveryView(id=1, position=0, destination_key=f"{kind}:1", kind=kind, stored={}, status=status,
                        attempts=1, message_ids=[], last_error_status=http, last_error_code=code,
                        last_error_message=message, next_attempt_at=None, delivered_at=None)


def _result(title: str | None = "T", status: str = "undelivered", deliveries=(), attachments=()) -> ResultView:  # type: ignore[no-untyped-def]
    return ResultView(id="res_01abc", tenant="default", status=status, workflow_id="wf", title=title,
                      mode="first_success", created_at=NOW - timedelta(hours=3), updated_at=NOW, generation=1,
                      deliveries=list(deliveries), attachments=list(attachments))


@given(status=st.sampled_from(sorted(STATUS_CHOICES)), page=st.integers(0, 10_000),
       workflow=st.none() | st.text("abcdefghijklmnopqrstuvwxyz0123456789-_:", min_size=1, max_size=60))
def test_page_ids_round_trip_within_100_characters(status: str, page: int, workflow: str | None) -> None:
    custom_id = page_id(status, page, workflow)
    assert len(custom_id) <= 100
    assert parse_custom_id(custom_id) == Click(action="page", status=status, page=page, workflow=workflow)


@given(action=st.sampled_from(["send", "dm", "dismiss"]), suffix=st.text("0123456789abcdefghjkmnpqrstvwxyz",
                                                                         min_size=1, max_size=26))
def test_action_ids_name_only_the_result(action: str, suffix: str) -> None:
    custom_id = action_id(action, f"res_{suffix}")
    assert parse_custom_id(custom_id) == Click(action=action, result_id=f"res_{suffix}")


@given(st.text(max_size=120))
def test_foreign_custom_ids_are_refused_never_guessed(custom_id: str) -> None:
    click = parse_custom_id(custom_id)
    assert click is None or custom_id.startswith("rr:")


@pytest.mark.parametrize("custom_id", ["rr:send:", "rr:send:key_1", "rr:nuke:res_1", "rr:page:bogus:1",
                                       "rr:page:all:-1", "xx:send:res_1", "rr:dm:res_1:extra"])
def test_malformed_custom_ids(custom_id: str) -> None:
    assert parse_custom_id(custom_id) is None


@pytest.mark.parametrize("delivery, words", [
    (_delivery("interaction", message="interaction token expired (15 minutes after the command)"),
     "command follow-up: the command had expired"),
    (_delivery("interaction", code=50027, http=401), "command follow-up: the command had expired"),
    (_delivery("webhook", code=10015, http=404), "channel webhook: the webhook was deleted"),
    (_delivery("dm", code=50007, http=403), "DM: you do not accept DMs"),
    (_delivery("webhook", code=50013, http=403), "channel webhook: the relay lacks permission"),
    (_delivery("webhook", message="retries ran out"), "channel webhook: retries ran out"),
])
def test_why_not_delivered_in_words(delivery: DeliveryView, words: str) -> None:
    assert why_not_delivered(_result(deliveries=[delivery])) == words


def test_status_words() -> None:
    assert why_not_delivered(_result(status="pending")) == "on its way"
    assert "picked up" in why_not_delivered(_result(status="picked_up"))
    assert why_not_delivered(_result(status="delivered", deliveries=[_delivery("dm", status="delivered")])
                             ).startswith("delivered")


@given(titles=st.lists(text | st.none(), max_size=10), page=st.integers(0, 50), more=st.booleans())
def test_a_list_page_is_a_message_discord_accepts(titles: list[str | None], page: int, more: bool) -> None:
    results = [_result(title=t, deliveries=[_delivery("webhook", message=t)]) for t in titles]
    message = list_message(results, status="undelivered", page=page, has_more=more, workflow="wf", now=NOW)
    validate_message(message, kind="edit")
    assert len(message["content"]) <= 2000


@given(title=text | st.none(), summary=text | st.none(), body=st.text(max_size=20_000) | st.none(),
       files=st.lists(st.text("abcdefgh.", min_size=1, max_size=200), max_size=10))
def test_a_show_view_is_a_message_discord_accepts(title: str | None, summary: str | None, body: str | None,
                                                  files: list[str]) -> None:
    atts = [AttachmentMeta(index=i, filename=f, content_type="text/plain", size=10 ** i, sha256="0" * 64)
            for i, f in enumerate(files)]
    preview = RenderInput(title=title, summary=summary, body=body,
                          attachments=tuple(AttachmentRef(a.index, a.filename, a.content_type, a.size, a.sha256)
                                            for a in atts))
    message = show_message(_result(title=title, attachments=atts), preview, now=NOW, note="note")
    validate_message(message, kind="edit")
    validate_request("", "IncomingWebhookUpdateRequestPartial", message)
    assert [b["custom_id"] for b in message["components"][0]["components"]] == [
        "rr:send:res_01abc", "rr:dm:res_01abc", "rr:dismiss:res_01abc"]


@given(name=text, value=st.text(min_size=1, max_size=300))
def test_choices_fit_discords_100_characters(name: str, value: str) -> None:
    made = choice(name, value)
    assert 1 <= len(made["name"]) <= 100 and 1 <= len(made["value"]) <= 100
