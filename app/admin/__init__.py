"""The admin web page (``/admin``): server-rendered, works offline, behind its own credential.

``router`` is included by ``app.main``; ``ensure_admin_token`` is called by ``relay serve`` to
generate the credential on first start when ``RELAY_ADMIN_TOKEN`` is unset.
"""

from fastapi import APIRouter

from app.admin import login, routes
from app.admin.security import ensure_admin_token

router = APIRouter()
router.include_router(login.router)
router.include_router(routes.router)

__all__ = ["ensure_admin_token", "router"]
