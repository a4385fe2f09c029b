"""The admin pages and actions behind a session: results list, detail, actions, destinations.

Every route is parse → one store call (in the thread pool) → render or redirect. Actions answer
with a 303 to a page carrying ``?done=<code>`` (a fixed vocabulary, never free text), so a reload
never repeats a POST and nothing a URL says is shown verbatim.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, QueryParams

from app.admin import present
from app.admin.security import LOGIN_COOKIE, SESSION_COOKIE, AdminSession, end_session
from app.admin.web import AdminRoute, admin_store, page, require_admin
from app.deps import runtime_of
from app.errors import ApiError
from app.ingest import build_targets
from app.present import attachment_download
from app.settings import Settings
from schemas.api import WebhookDestination
from schemas.targets import Target, tenant_key
from store.admin import AdminStore, ResultDetail
from store.views import ResultFilter

router = APIRouter(prefix="/admin", route_class=AdminRoute, dependencies=[Depends(require_admin)],
                   include_in_schema=False)

STATUSES = ("undelivered", "pending", "delivering", "delivered", "picked_up")
FILTER_KEYS = ("status", "tenant", "workflow_id", "destination", "since", "until", "q")
PAGE_SIZE = 50
BODY_SHOWN = 200_000  # characters of the original body rendered on the page; the rest is downloadable
DONE = {
    "redelivered": "Queued {n} result(s) for delivery again.",
    "nothing": "Nothing matched: no result was queued.",
    "acked": "Marked as picked up.",
    "deleted": "Result deleted.",
    "reenabled": "Destination re-enabled: new deliveries may use it again.",
}


def _destination_key(text: str) -> str:
    """Accept a stored key (``webhook:123``), a bare webhook id, or a webhook URL."""
    text = text.strip()
    if text.isdigit():
        return f"webhook:{text}"
    if "/webhooks/" in text:
        webhook_id = text.split("/webhooks/", 1)[1].split("/", 1)[0]
        if webhook_id.isdigit():
            return f"webhook:{webhook_id}"
    return text


def _day(text: str, label: str, errors: list[str]) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors.append(f"{label} must be a date like 2026-01-31; ignored.")
        return None


def parse_filter(params: QueryParams | FormData) -> tuple[ResultFilter, dict[str, str], list[str]]:
    """The list filter from query or form fields: the filter, the values to echo, and what was ignored."""
    echo = {k: str(params.get(k) or "").strip()[:200] for k in FILTER_KEYS}
    echo["status"] = echo["status"] if echo["status"] in (*STATUSES, "all") else "undelivered"
    errors: list[str] = []
    since, until = _day(echo["since"], "From", errors), _day(echo["until"], "To", errors)
    tenant = echo["tenant"] or None
    destination = _destination_key(echo["destination"]) or None
    flt = ResultFilter(
        tenant=tenant,
        status=() if echo["status"] == "all" else (echo["status"],),
        workflow_id=echo["workflow_id"] or None,
        destination=tenant_key(tenant, destination) if tenant and destination else destination,
        since=datetime.combine(since, time.min, UTC) if since else None,
        until=datetime.combine(until, time.min, UTC) + timedelta(days=1) if until else None,  # "to" is inclusive
        search=echo["q"] or None,
    )
    return flt, echo, errors


def _query(echo: dict[str, str], **extra: Any) -> str:
    return urlencode({k: v for k, v in {**echo, **extra}.items() if v not in ("", None)})


def _done(request: Request) -> str | None:
    code = request.query_params.get("done", "")
    n = request.query_params.get("n", "")
    return DONE[code].format(n=int(n) if n.isdigit() else 0) if code in DONE else None


@router.get("")
async def results_list(request: Request) -> Response:
    """The default view: counts, the 24-hour chart and the filtered list (undelivered first)."""
    flt, echo, errors = parse_filter(request.query_params)
    cursor = request.query_params.get("cursor") or None
    store = admin_store(request)
    try:
        dash = await run_in_threadpool(store.dashboard, flt, cursor=cursor, limit=PAGE_SIZE)
    except ValueError:
        errors.append("That page link is not valid any more; showing the first page.")
        cursor = None
        dash = await run_in_threadpool(store.dashboard, flt, cursor=None, limit=PAGE_SIZE)
    return page(request, "list.html", dash=dash, chart=present.chart(dash.hours), echo=echo, errors=errors,
                statuses=STATUSES, done=_done(request), paged=cursor is not None,
                next_url=f"/admin?{_query(echo, cursor=dash.next_cursor)}" if dash.next_cursor else None,
                first_url=f"/admin?{_query(echo)}", filter_query=_query(echo))


@router.post("/bulk/redeliver")
async def bulk_redeliver(request: Request) -> Response:
    """Queue again the ticked rows, or every result matching the list's filter (undelivered by default)."""
    form = await request.form()
    flt, echo, _ = parse_filter(form)
    store, runtime = admin_store(request), runtime_of(request)
    if form.get("scope") == "matching":
        if not flt.status:
            flt = dataclasses.replace(flt, status=("undelivered",))
        ids = await run_in_threadpool(runtime.results.redeliver_matching, flt)
    else:
        picked = [str(v) for v in form.getlist("ids")][:PAGE_SIZE * 4]
        ids = await run_in_threadpool(store.redeliver_ids, picked)
    if ids:
        runtime.wake_workers()
    done = {"done": "redelivered", "n": len(ids)} if ids else {"done": "nothing"}
    return RedirectResponse(f"/admin?{_query(echo, **done)}", status_code=303)


def _load_detail(store: AdminStore, settings: Settings, result_id: str) -> dict[str, Any]:
    detail: ResultDetail = store.detail(result_id)
    previews, preview_error = present.preview(detail.content, settings)
    body = detail.content.body or ""
    return {"detail": detail, "previews": previews, "preview_error": preview_error,
            "body_shown": body[:BODY_SHOWN], "body_truncated": len(body) > BODY_SHOWN, "body_length": len(body)}


async def _detail_page(request: Request, result_id: str, *, status: int = 200, **extra: Any) -> Response:
    values = await run_in_threadpool(_load_detail, admin_store(request), runtime_of(request).settings, result_id)
    return page(request, "detail.html", status, done=_done(request), **values, **extra)


@router.get("/results/{result_id}")
async def result_detail(request: Request, result_id: str) -> Response:
    """The original result, its Discord preview, the delivery timeline, attachments and actions."""
    return await _detail_page(request, result_id)


@router.get("/results/{result_id}/body.md")
async def result_body(request: Request, result_id: str) -> Response:
    """The original markdown body as a download (the page renders only its first part)."""
    content = await run_in_threadpool(runtime_of(request).results.content, result_id)
    return Response(content.body or "", media_type="text/markdown; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{result_id}.md"'})


def _new_route(url: str, request: Request) -> tuple[list[Target] | None, str | None]:
    runtime = runtime_of(request)
    try:
        dest = WebhookDestination(type="webhook", url=url)
        return build_targets([dest], runtime.settings, runtime.cipher, field="webhook_url"), None
    except ValidationError as exc:
        return None, "; ".join(e["msg"] for e in exc.errors())
    except ApiError as exc:
        return None, str(exc.details[0]["message"]) if exc.details else exc.message


@router.post("/results/{result_id}/redeliver")
async def redeliver(request: Request, result_id: str, webhook_url: Annotated[str, Form()] = "") -> Response:
    """Queue the result again: on its own route, or to a webhook URL typed in (validated like the API)."""
    targets = None
    if webhook_url.strip():
        targets, error = _new_route(webhook_url.strip(), request)
        if error:
            return await _detail_page(request, result_id, status=422, url_error=f"That webhook URL {error}.")
    runtime = runtime_of(request)
    await run_in_threadpool(runtime.results.redeliver, result_id, targets=targets)
    runtime.wake_workers()
    return RedirectResponse(f"/admin/results/{quote(result_id)}?done=redelivered&n=1", status_code=303)


@router.post("/results/{result_id}/ack")
async def acknowledge(request: Request, result_id: str) -> Response:
    """Mark the result picked up (someone took care of it outside Discord)."""
    await run_in_threadpool(runtime_of(request).results.ack, result_id)
    return RedirectResponse(f"/admin/results/{quote(result_id)}?done=acked", status_code=303)


@router.get("/results/{result_id}/delete")
async def confirm_delete(request: Request, result_id: str) -> Response:
    """Ask before deleting: a page of its own, so no script or dialog is needed."""
    view = await run_in_threadpool(runtime_of(request).results.get, result_id)
    return page(request, "confirm_delete.html", view=view)


@router.post("/results/{result_id}/delete")
async def delete(request: Request, result_id: str) -> Response:
    """Purge the result, its files and its deliveries."""
    await run_in_threadpool(runtime_of(request).results.delete, result_id)
    return RedirectResponse("/admin?done=deleted", status_code=303)


@router.get("/results/{result_id}/attachments/{index}")
async def attachment(request: Request, result_id: str, index: int) -> Response:
    """Download a stored file, always as an attachment (never rendered inside the admin origin)."""
    results = runtime_of(request).results
    meta = await run_in_threadpool(results.attachment, result_id, index)
    return attachment_download(results, result_id, meta, media_type="application/octet-stream")


@router.get("/destinations")
async def destinations(request: Request, disabled: str = "") -> Response:
    """Every destination with its disabled flag and reason; disabled ones first."""
    rows = await run_in_threadpool(admin_store(request).destinations, disabled_only=disabled == "1")
    return page(request, "destinations.html", rows=rows, disabled_only=disabled == "1", done=_done(request))


@router.post("/destinations/reenable")
async def reenable(request: Request, key: Annotated[str, Form()] = "") -> Response:
    """Clear a destination's disabled flag (after the webhook was fixed on Discord's side)."""
    await run_in_threadpool(admin_store(request).reenable, key)
    return RedirectResponse("/admin/destinations?done=reenabled", status_code=303)


@router.post("/logout")
async def logout(request: Request, session: Annotated[AdminSession, Depends(require_admin)]) -> Response:
    """End the session: on the server (every replica, every copy of the cookie) and in this browser."""
    await run_in_threadpool(end_session, runtime_of(request), session)
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    response.delete_cookie(LOGIN_COOKIE, path="/admin/login")
    return response
