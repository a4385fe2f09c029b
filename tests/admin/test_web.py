"""The admin route class on a tiny inline app: security headers and known errors as pages."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from app.admin.web import AdminRoute
from store.errors import NotFound, StoreUnavailable


def _app() -> FastAPI:
    router = APIRouter(prefix="/admin", route_class=AdminRoute)

    @router.get("/down")
    async def down() -> None:
        raise StoreUnavailable("connection refused")

    @router.get("/gone")
    async def gone() -> None:
        raise NotFound("res_x")

    app = FastAPI()
    app.include_router(router)
    return app


def test_store_unavailable_is_a_friendly_503_page_and_not_found_a_404_page() -> None:
    with TestClient(_app()) as client:
        down = client.get("/admin/down")
        assert down.status_code == 503 and down.headers["retry-after"] == "5"
        assert "Nothing is lost" in down.text and down.headers["content-type"].startswith("text/html")
        assert down.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in down.headers[
            "content-security-policy"]
        gone = client.get("/admin/gone")
        assert gone.status_code == 404 and "no such result" in gone.text
