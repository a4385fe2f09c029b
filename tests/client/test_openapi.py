"""The client's wire models against the server's live ``/openapi.json``: the two cannot drift."""

from __future__ import annotations

import dataclasses
from typing import Any, get_type_hints

import httpx
import relay_client
from relay_client import AttachmentInfo, Delivery, LastError, ProgressReceipt, ResultInfo, TranscriptionReceipt

from tests.client.conftest import LiveRelay

REQUESTS = {  # client TypedDict → server schema
    relay_client.Result: "ResultIn", relay_client.Field: "FieldIn", relay_client.Attachment: "AttachmentIn",
    relay_client.WebhookRoute: "WebhookDestination", relay_client.DMRoute: "DMDestination",
    relay_client.InteractionRoute: "InteractionDestination",
}
RESPONSES = {ResultInfo: "ResultOut", Delivery: "DeliveryOut", LastError: "LastError",
             AttachmentInfo: "AttachmentOut", ProgressReceipt: "ProgressAccepted",
             TranscriptionReceipt: "TranscriptionAccepted"}


def _schemas(live: LiveRelay) -> dict[str, Any]:
    spec = httpx.get(f"{live.url}/openapi.json", timeout=30).json()
    schemas: dict[str, Any] = spec["components"]["schemas"]
    body = spec["paths"]["/v1/results"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ResultIn"}
    if "ResultIn" not in schemas:
        # The live document references ResultIn without defining it (the route reads its body by
        # hand); until it does, take the definition from the very model the route validates with.
        from schemas.api import ResultIn

        generated = ResultIn.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas = {**generated.pop("$defs", {}), **schemas, "ResultIn": generated}
    return schemas


def test_request_models_match_the_server(live: LiveRelay) -> None:
    schemas = _schemas(live)
    for model, name in REQUESTS.items():
        server = schemas[name]
        keys = set(get_type_hints(model))
        assert keys <= set(server["properties"]), f"{model.__name__} sends keys {name} does not know"
        assert set(server.get("required", [])) <= model.__required_keys__, f"{name} requires more than {model}"
        assert server.get("additionalProperties") is False  # so an unknown key would be a 422, never ignored


def test_response_models_match_the_server(live: LiveRelay) -> None:
    schemas = _schemas(live)
    for model, name in RESPONSES.items():
        server = schemas[name]
        for f in dataclasses.fields(model):
            assert f.name in server["properties"], f"{model.__name__}.{f.name} is not in {name}"
        required_here = {f.name for f in dataclasses.fields(model)
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        assert required_here <= set(server.get("required", [])), f"{model.__name__} needs what {name} may omit"
