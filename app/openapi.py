"""The OpenAPI document, complete and true: every ``$ref`` resolves and every error is documented.

FastAPI documents what it can see in signatures. Two things it cannot: request bodies that a
route reads itself (``POST /v1/results`` takes JSON or multipart, so its body is described by
hand and its schema must be added to ``components``), and errors raised outside a route's
declared ``responses`` (auth, the body limit, the store being down). Both are added here, and the
default ``HTTPValidationError`` is replaced by the error envelope the relay really sends.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from schemas.api import ErrorBody, ResultIn, TranscriptionIn
from schemas.bounds import MAX_ATTACHMENTS, MAX_NESTING, TEXT_PATTERN

_METHODS = ("get", "put", "post", "delete", "patch")
_REASONS = {
    400: "Malformed request: invalid JSON, a bad query parameter or cursor",
    401: "Missing or unknown credential",
    403: "The producer key was revoked",
    404: "No such resource (or it belongs to another tenant: the answer is the same)",
    409: "Idempotency-Key reused with a different body",
    413: "Request body over RELAY_MAX_RESULT_BYTES",
    415: "Unsupported Content-Type",
    422: "Invalid input; details name each field and why",
    503: "The store is unreachable; retry after Retry-After seconds",
}
# Bodies read by the route itself (JSON or multipart), referenced by name from ``openapi_extra``.
_HAND_READ_MODELS: tuple[type[BaseModel], ...] = (ResultIn, TranscriptionIn)


def _statuses(path: str, method: str) -> set[int]:
    """The error statuses a route can answer with, beyond what its decorator declares."""
    if not path.startswith("/v1/"):
        return {401} if path == "/metrics" else set()
    codes = {400, 401, 403, 422, 503}
    if "{" in path:
        codes.add(404)
    if method in ("post", "put", "patch"):
        codes.add(413)
    return codes


def webhook_url_pattern(api_base: str) -> str:
    """The webhook URLs this relay accepts, as a JSON Schema pattern (the allow-list of DESIGN.md)."""
    tail = r"/webhooks/0*[0-9]{1,20}/[A-Za-z0-9_-]{1,200}/?$"
    discord = r"^https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com(?::443)?(?:/api(?:/v[0-9]{1,2})?)?" + tail
    return f"{discord}|^{re.escape(api_base.rstrip('/'))}{tail}"


def _multipart(payload: dict[str, Any], description: str, files: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A multipart body whose ``payload_json`` part is a JSON document of schema ``payload``."""
    return {"schema": {"type": "object", "required": required, "additionalProperties": False, "properties": {
        "payload_json": {**payload, "description": description}, **files}},
        "encoding": {"payload_json": {"contentType": "application/json"}}}


RESULT_BODY = {"content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/ResultIn"}},
    # Inline attachments and file parts count together against MAX_ATTACHMENTS.
    "multipart/form-data": _multipart(
        {"allOf": [{"$ref": "#/components/schemas/ResultIn"},
                   {"type": "object", "properties": {"attachments": {"maxItems": MAX_ATTACHMENTS - 1}}}]},
        f"the result as JSON (attachments may be omitted); at most {MAX_ATTACHMENTS} files in all",
        {"files[0]": {"type": "string", "format": "binary", "minLength": 1,
                      "description": "a file (not empty: Discord does not take empty attachments)"}},
        ["payload_json"]),
}, "required": True}
TRANSCRIPTION_BODY = {"content": {"multipart/form-data": _multipart(
    {"allOf": [{"$ref": "#/components/schemas/TranscriptionIn"}]}, "route, mode, title and options as JSON",
    {"file": {"type": "string", "format": "binary", "description": "the recording: wav, mp3, ogg/opus, m4a …"}},
    ["payload_json", "file"])}, "required": True}


TEXT = {"type": "string", "pattern": TEXT_PATTERN}
# ``metadata``: any JSON, but its strings (keys too) within ``schemas.bounds`` like every other string.
JSON_VALUE: dict[str, Any] = {"anyOf": [
    TEXT, {"type": "number"}, {"type": "boolean"}, {"type": "null"},
    {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
    {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}, "propertyNames": TEXT},
], "description": f"any JSON value, nested at most {MAX_NESTING} levels"}


def _request_models(components: dict[str, Any]) -> list[str]:
    """Schemas reachable from the request models (responses may carry any text the relay stored)."""
    seen: set[str] = set()
    todo = [m.__name__ for m in _HAND_READ_MODELS] + ["BulkRedeliverIn", "RedeliverIn", "ProgressIn"]
    while todo:
        name = todo.pop()
        if name in seen or name not in components:
            continue
        seen.add(name)
        todo += re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(components[name]))
    return sorted(seen)


def _document_text_bounds(schema: Any) -> None:
    """Say in the schema what ``schemas.bounds`` refuses in every string: NUL and lone surrogates."""
    if isinstance(schema, dict):
        if schema.get("type") == "string" and "pattern" not in schema and "format" not in schema \
                and "enum" not in schema and "const" not in schema:
            schema["pattern"] = TEXT_PATTERN
        for value in schema.values():
            _document_text_bounds(value)
    elif isinstance(schema, list):
        for value in schema:
            _document_text_bounds(value)


def build_openapi(app: FastAPI, api_base: str) -> dict[str, Any]:
    """The document ``/openapi.json`` serves (built once, cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, summary=app.summary, description=app.description,
                      routes=app.routes)
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    models: tuple[type[BaseModel], ...] = (*_HAND_READ_MODELS, ErrorBody)
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["WebhookDestination"]["properties"]["url"]["pattern"] = webhook_url_pattern(api_base)
    components["JsonValue"] = JSON_VALUE
    for name in ("ResultIn", "TranscriptionIn"):
        components[name]["properties"]["metadata"].update(
            {"additionalProperties": {"$ref": "#/components/schemas/JsonValue"}, "propertyNames": TEXT})
    for name in _request_models(components):
        _document_text_bounds(components[name])
    envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            declared = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
            for code in sorted(declared | _statuses(path, method)):
                entry = responses.setdefault(str(code), {})
                entry["description"] = _REASONS.get(code, entry.get("description", "Error"))
                entry["content"] = envelope
    readyz = doc.get("paths", {}).get("/readyz", {}).get("get")
    if readyz is not None:  # not the error envelope: the same checks object as the 200
        readyz["responses"]["503"] = {"description": "Not ready: the checks say what is not",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}
    app.openapi_schema = doc
    return doc


def install_openapi(app: FastAPI, api_base: str) -> None:
    """Serve ``build_openapi`` as the app's document."""
    app.openapi = lambda: build_openapi(app, api_base)  # type: ignore[method-assign]
