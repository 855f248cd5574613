"""``POST /admin/reload``: reload the model repository in every server process.

Off unless ``SWIRL_ADMIN_TOKEN`` is set (404). With it: ``Authorization: Bearer <token>``,
compared in constant time; a missing token is a 401, a wrong one a 403.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.responses import Response

from app.serving.reload import Reloader, notify_other_processes
from app.serving.service import ServiceDep
from app.wire.encoding import FastJSON
from app.wire.schemas import ErrorResponse, ReloadResponse

log = logging.getLogger("swirl.admin")
router = APIRouter(prefix="/admin", tags=["admin"])


async def require_admin(request: Request, service: ServiceDep) -> None:
    token = service.settings.admin_token
    secret = token.get_secret_value() if token is not None else ""
    if not secret:
        raise HTTPException(404, "the admin API is off (set SWIRL_ADMIN_TOKEN to turn it on)")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(401, "authorization: a bearer token is required", headers={"WWW-Authenticate": 'Bearer realm="swirl-admin"'})
    if not hmac.compare_digest(given.strip().encode(), secret.encode()):
        log.warning("admin: wrong token from %s", request.client.host if request.client else "?")
        raise HTTPException(403, "authorization: wrong token")


AdminDep = Annotated[None, Depends(require_admin)]
AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "no bearer token"},
    403: {"model": ErrorResponse, "description": "wrong token"},
    404: {"model": ErrorResponse, "description": "the admin API is off (SWIRL_ADMIN_TOKEN unset)"},
}


@router.post("/reload", response_model=ReloadResponse, responses=AUTH_ERRORS, summary="Reload models without downtime")
async def reload(_: AdminDep, request: Request) -> Response:
    """Look at the model folders again: load and verify new or changed models beside the serving
    versions and switch atomically (requests in flight finish on the old version); a version that
    fails verification leaves the old one serving and is listed in ``failed``. The answer reports
    this process; the other server processes are signalled and reload the same way."""
    reloader: Reloader = request.app.state.reloader
    report = await reloader.reload_now()
    others = notify_other_processes()
    return FastJSON({**report.to_dict(), "ok": not report.failed, "process": os.getpid(), "other_processes_signalled": others})
