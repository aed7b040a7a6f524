"""The web console: static files (a page, its modules, a style sheet) served with a strict
Content-Security-Policy.

No build step and no CDN: everything comes from this origin, and no inline
script or style is allowed, so an injected string cannot run.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from pgkeep.config import WEB_DIR
from pgkeep.errors import NotFound

router = APIRouter(include_in_schema=False)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
_MODULES = (
    "app.js",
    "api.js",
    "access.js",
    "shell.js",
    "ui.js",
    "views.js",
    "target.js",
    "badges.js",
    "actions.js",
    "tables.js",
    "labels.js",
    "keys.js",
)
_FILES = {name: "text/javascript" for name in _MODULES} | {"app.css": "text/css"}


@router.get("/")
async def console_page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=_HEADERS)


@router.get("/console/{name}")
async def console_file(name: str) -> FileResponse:
    if name not in _FILES:
        raise NotFound(f"no console file {name[:40]!r}")
    return FileResponse(WEB_DIR / name, media_type=_FILES[name], headers=_HEADERS)


@router.get("/favicon.ico")
async def favicon() -> Response:
    return Response(status_code=204)  # browsers ask; a 404 would only add noise
