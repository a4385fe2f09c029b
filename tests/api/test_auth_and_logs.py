"""``/metrics`` takes ``bearer`` in any case, like ``/v1``; secrets in query strings never reach a log."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest

from app.secrets import RedactingFilter
from tests.conftest import Relay


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_metrics_and_v1_take_the_bearer_scheme_in_any_case(make_relay: Callable[..., Relay], scheme: str) -> None:
    relay = make_relay(metrics_token="metrics-secret")
    assert httpx.get(f"{relay.url}/metrics", headers={"Authorization": f"{scheme} metrics-secret"}).status_code == 200
    assert httpx.get(f"{relay.url}/metrics", headers={"Authorization": f"{scheme} wrong"}).status_code == 401
    assert httpx.get(f"{relay.url}/metrics", headers={"Authorization": "Basic metrics-secret"}).status_code == 401
    resp = httpx.get(f"{relay.url}/v1/results", headers={"Authorization": f"{scheme} {relay.key}"})
    assert resp.status_code == 200


@pytest.mark.parametrize("query", ["token=s3cr3t-value", "api_key=s3cr3t-value", "access_token=s3cr3t-value",
                                   "status=all&X-Api-Key=s3cr3t-value", "password=s3cr3t-value&a=b",
                                   "client_secret=s3cr3t-value;x=1"])
def test_secrets_in_query_strings_never_reach_the_access_log(query: str) -> None:
    # The very record uvicorn's access logger writes (uvicorn.protocols.http: '%s - "%s %s HTTP/%s" %d').
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", f"/v1/results?{query}", "1.1", 200), None)
    assert RedactingFilter().filter(record)
    line = record.getMessage()
    assert "s3cr3t-value" not in line and "/v1/results?" in line and "••••" in line


def test_harmless_query_parameters_stay_readable_in_the_access_log() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s", ("/v1/results?status=undelivered"
                               "&limit=5&workflow_id=wf_1",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "/v1/results?status=undelivered&limit=5&workflow_id=wf_1"
