"""The OpenAPI document is complete and true, and the docs pages work offline."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from tests.conftest import Relay

METHODS = ("get", "put", "post", "delete", "patch")


def _refs(node: Any) -> list[str]:
    return re.findall(r'"\$ref": "([^"]+)"', json.dumps(node))


def _resolve(doc: dict, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


def test_every_ref_resolves_and_the_result_body_is_described(relay: Relay) -> None:
    doc = httpx.get(f"{relay.url}/openapi.json").json()
    for ref in _refs(doc):
        _resolve(doc, ref)
    body = doc["paths"]["/v1/results"]["post"]["requestBody"]["content"]
    assert _resolve(doc, body["application/json"]["schema"]["$ref"])["properties"]["route"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_every_error_status_is_documented_with_the_envelope(relay: Relay) -> None:
    doc = httpx.get(f"{relay.url}/openapi.json").json()
    for path, operations in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            expected = {"400", "401", "403", "422", "503"} | ({"404"} if "{" in path else set()) | (
                {"413"} if method == "post" else set())
            assert expected <= set(operation["responses"]), (method, path, sorted(operation["responses"]))
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorBody"}, (method, path, code)
    create = doc["paths"]["/v1/results"]["post"]["responses"]
    assert {"409", "413", "415"} <= set(create)


def test_allow_lists_every_method_of_the_path(relay: Relay) -> None:
    doc = httpx.get(f"{relay.url}/openapi.json").json()
    rid = relay.post_result({"route": [{"type": "webhook",
                                        "url": "https://discord.com/api/webhooks/1/t"}]}).json()["id"]
    for template, concrete in (("/v1/results", "/v1/results"), ("/v1/results/{result_id}", f"/v1/results/{rid}"),
                               ("/v1/destinations", "/v1/destinations")):
        for method in ("PATCH", "HEAD"):
            assert relay.client.request(method, concrete).status_code == 405
        resp = relay.client.request("PATCH", concrete)
        assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"
        allowed = {m.strip() for m in resp.headers["allow"].split(",")}
        assert allowed == {m.upper() for m in doc["paths"][template] if m in METHODS}, (concrete, allowed)


def test_docs_and_redoc_work_offline(relay: Relay) -> None:
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{relay.url}{page}").text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
        for asset in assets:
            resp = httpx.get(f"{relay.url}{asset}")
            assert resp.status_code == 200 and len(resp.content) > 1000, asset
