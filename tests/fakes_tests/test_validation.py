"""The pure validator: every Discord limit answers with Discord's status, code and error path."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.discord_validation import (
    DiscordLimits,
    DiscordValidationError,
    embed_characters,
    utf16_len,
    validate_message,
)


def _reject(payload: Any, files: list[tuple[str, int]] | None = None, **kwargs: Any) -> DiscordValidationError:
    with pytest.raises(DiscordValidationError) as info:
        validate_message(payload, files or [], **kwargs)
    return info.value


def _form_error(payload: Any, *path: str, **kwargs: Any) -> dict[str, str]:
    error = _reject(payload, **kwargs)
    assert error.status == 400
    assert error.body["code"] == 50035
    assert error.body["message"] == "Invalid Form Body"
    node = error.body["errors"]
    for key in path:
        node = node[key]
    return node["_errors"][0]


def test_utf16_counts_surrogate_pairs_twice() -> None:
    assert utf16_len("abc") == 3
    assert utf16_len("é") == 1
    assert utf16_len("😀") == 2


@pytest.mark.parametrize(
    "payload",
    [
        {"content": "hello"},
        {"content": "x" * 2000},
        {"embeds": [{"title": "t", "description": "d" * 4096}]},
        {"embeds": [{"title": "t", "fields": [{"name": "n", "value": "v", "inline": True}] * 25}]},
        {"embeds": [{"description": "x"}] * 10, "allowed_mentions": {"parse": []}},
        {"content": "x", "username": "Relay", "avatar_url": "https://example.com/a.png"},
        {
            "embeds": [
                {"title": "t", "url": "https://example.com", "timestamp": "2026-11-23T10:00:00Z", "color": 5793266}
            ]
        },
    ],
)
def test_accepts_valid_payloads(payload: dict[str, Any]) -> None:
    validate_message(payload, [])


def test_content_over_2000() -> None:
    error = _form_error({"content": "x" * 2001}, "content")
    assert error == {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}


def test_content_counts_utf16_units() -> None:
    _form_error({"content": "😀" * 1001}, "content")


def test_channel_messages_also_stop_at_2000() -> None:
    # The spec says 4000 (Nitro users); a bot gets 2000.
    _form_error({"content": "x" * 2001}, "content", kind="channel")


def test_embed_description_over_4096() -> None:
    error = _form_error({"embeds": [{"description": "x" * 4097}]}, "embeds", "0", "description")
    assert error == {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 4096 or fewer in length."}


@pytest.mark.parametrize(
    ("embed", "path", "limit"),
    [
        ({"title": "x" * 257}, ("title",), 256),
        ({"title": "t", "footer": {"text": "x" * 2049}}, ("footer", "text"), 2048),
        ({"title": "t", "author": {"name": "x" * 257}}, ("author", "name"), 256),
        ({"title": "t", "fields": [{"name": "x" * 257, "value": "v"}]}, ("fields", "0", "name"), 256),
        ({"title": "t", "fields": [{"name": "n", "value": "x" * 1025}]}, ("fields", "0", "value"), 1024),
    ],
)
def test_embed_string_limits(embed: dict[str, Any], path: tuple[str, ...], limit: int) -> None:
    error = _form_error({"embeds": [embed]}, "embeds", "0", *path)
    assert error["message"] == f"Must be {limit} or fewer in length."


def test_more_than_10_embeds() -> None:
    error = _form_error({"embeds": [{"title": "t"}] * 11}, "embeds")
    assert error["message"] == "Must be 10 or fewer in length."


def test_more_than_25_fields() -> None:
    embed = {"title": "t", "fields": [{"name": "n", "value": "v"}] * 26}
    error = _form_error({"embeds": [embed]}, "embeds", "0", "fields")
    assert error["message"] == "Must be 25 or fewer in length."


def test_6000_characters_across_embeds() -> None:
    embeds = [{"description": "x" * 4000}, {"title": "t" * 200, "description": "y" * 1801}]
    assert sum(embed_characters(e) for e in embeds) == 6001
    error = _form_error({"embeds": embeds}, "embeds")
    assert error == {"code": "MAX_EMBED_SIZE_EXCEEDED", "message": "Embed size exceeds maximum size of 6000"}


def test_6000_counts_fields_footer_and_author() -> None:
    embed = {
        "title": "t" * 256,
        "description": "d" * 4096,
        "fields": [{"name": "n" * 100, "value": "v" * 1000}],
        "footer": {"text": "f" * 500},
        "author": {"name": "a" * 49},
    }
    assert embed_characters(embed) == 6001
    _form_error({"embeds": [embed]}, "embeds")


@pytest.mark.parametrize("key", ["name", "value"])
@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_blank_field_name_or_value(key: str, blank: str) -> None:
    field = {"name": "n", "value": "v", key: blank}
    error = _form_error({"embeds": [{"title": "t", "fields": [field]}]}, "embeds", "0", "fields", "0", key)
    assert error["code"] == "BASE_TYPE_REQUIRED"


def test_missing_field_value() -> None:
    error = _form_error({"embeds": [{"title": "t", "fields": [{"name": "n"}]}]}, "embeds", "0", "fields", "0", "value")
    assert error == {"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}


@pytest.mark.parametrize(
    "payload",
    [{}, {"content": ""}, {"content": "   \n"}, {"embeds": []}, {"embeds": [{"description": "  "}]}, {"content": None}],
)
def test_empty_message(payload: dict[str, Any]) -> None:
    error = _reject(payload)
    assert (error.status, error.body) == (400, {"code": 50006, "message": "Cannot send an empty message"})


def test_files_alone_are_not_empty() -> None:
    validate_message({}, [("files[0]", 10)])


def test_an_invisible_embed_next_to_content_is_refused() -> None:
    _form_error({"content": "x", "embeds": [{"color": 1}]}, "embeds", "0", "description")


def test_more_than_10_files() -> None:
    error = _reject({"content": "x"}, [(f"files[{i}]", 1) for i in range(11)])
    assert error.status == 400
    assert error.body == {"code": 30015, "message": "Maximum number of attachments in a message reached (10)"}


def test_file_over_the_per_file_limit() -> None:
    limits = DiscordLimits(max_file_bytes=8 * 1024 * 1024)
    validate_message({"content": "x"}, [("files[0]", 8 * 1024 * 1024)], limits=limits)
    error = _reject({"content": "x"}, [("files[0]", 8 * 1024 * 1024 + 1)], limits=limits)
    assert (error.status, error.body) == (413, {"code": 40005, "message": "Request entity too large"})


def test_request_over_25_mib() -> None:
    files = [(f"files[{i}]", 9 * 1024 * 1024) for i in range(3)]
    error = _reject({"content": "x"}, files)
    assert error.status == 413


def test_attachments_must_refer_to_uploaded_files() -> None:
    validate_message({"content": "x", "attachments": [{"id": 0, "description": "d"}]}, [("files[0]", 1)])
    validate_message({"content": "x", "attachments": [{"id": "1"}]}, [("files[1]", 1)])
    error = _form_error({"content": "x", "attachments": [{"id": 1}]}, "attachments", "0", "id", files=[("files[0]", 1)])
    assert error["code"] == "ATTACHMENT_NOT_FOUND"


@pytest.mark.parametrize(
    ("payload", "path", "code"),
    [
        ({"content": 5}, ("content",), "BASE_TYPE_STRING"),
        ({"embeds": [{"title": "t", "color": "red"}]}, ("embeds", "0", "color"), "NUMBER_TYPE_COERCE"),
        ({"embeds": [{"title": "t", "color": 16777216}]}, ("embeds", "0", "color"), "NUMBER_TYPE_MAX"),
        ({"embeds": [{"title": "t", "url": "javascript:alert(1)"}]}, ("embeds", "0", "url"), "URL_TYPE_INVALID_URL"),
        ({"embeds": [{"title": "t", "timestamp": "yesterday"}]}, ("embeds", "0", "timestamp"), "DATE_TIME_TYPE_PARSE"),
        (
            {"content": "x", "allowed_mentions": {"parse": ["all"]}},
            ("allowed_mentions", "parse", "0"),
            "BASE_TYPE_CHOICES",
        ),
        ({"content": "x", "username": ""}, ("username",), "BASE_TYPE_BAD_LENGTH"),
        ({"embeds": [{"title": "t", "author": 5}]}, ("embeds", "0", "author"), "DICT_TYPE_CONVERT"),
    ],
)
def test_schema_errors_map_to_discord_codes(payload: dict[str, Any], path: tuple[str, ...], code: str) -> None:
    assert _form_error(payload, *path)["code"] == code


def test_nonce_longer_than_25() -> None:
    error = _form_error({"content": "x", "nonce": "n" * 26, "enforce_nonce": True}, "nonce", kind="channel")
    assert error["message"] == "Must be 25 or fewer in length."


def test_several_errors_are_nested_together() -> None:
    error = _reject({"content": "x" * 2001, "embeds": [{"title": "x" * 257, "description": "y" * 4097}]})
    errors = error.body["errors"]
    assert set(errors) == {"content", "embeds"}
    assert set(errors["embeds"]["0"]) == {"title", "description"}


def test_not_an_object() -> None:
    error = _reject(["content"])
    assert error.body["code"] == 50109


def test_edit_checks_the_merged_message() -> None:
    validate_message({"content": "kept", "embeds": []}, [], kind="edit")
    error = _reject({"content": "", "embeds": []}, kind="edit")
    assert error.body["code"] == 50006
