"""What a browser gets: the page (its HTML, script and style, served from the package),
the favicon, the status history for its dashboard, and the API documentation with
Swagger UI's own files shipped in a Python package: nothing comes from a CDN, so
every page works without internet."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

STATIC = resources.files("imgrec.web").joinpath("static")
SWAGGER = resources.files("fastapi_swagger").joinpath("resources")
router = APIRouter(include_in_schema=False)
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}


def _file(folder, name: str, cache: str = "no-cache") -> Response:
    """A packaged file; unknown names are 404 (no path ever leaves the folder)."""
    names = {p.name for p in folder.iterdir()}
    if name not in names:
        return Response("not found\n", status_code=404, media_type="text/plain")
    suffix = name[name.rfind("."):]
    return Response(folder.joinpath(name).read_bytes(), media_type=_TYPES.get(suffix, "application/octet-stream"),
                    headers={"Cache-Control": cache})


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def index():
    return _file(STATIC, "index.html")


@router.get("/static/{name}")
async def static(name: str):
    return _file(STATIC, name)


@router.get("/favicon.ico")
async def favicon():
    return _file(STATIC, "favicon.svg", "max-age=86400")


@router.get("/docs/{name}")
async def swagger_asset(name: str):
    return _file(SWAGGER, name, "max-age=86400")


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request):
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url, title="imgrec API",
        swagger_js_url=root + "/docs/swagger-ui-bundle.js", swagger_css_url=root + "/docs/swagger-ui.css",
        swagger_favicon_url=root + "/favicon.ico",
        swagger_ui_parameters={"persistAuthorization": True, "tryItOutEnabled": True},
    )
