"""The upload routes called straight, the rest through FastAPI.

`POST /`, `/api/v1/classify` and `/api/v1/jobs` carry almost every request the service
gets. FastAPI's own layers (its error middlewares, an exit stack, the router's matching,
dependency solving) cost about a quarter of the web tier's CPU per single-image upload,
measured with py-spy (docs/performance.md); these three routes need none of them: each
reads its body itself and answers with a Response. So `UploadRoutes` calls them by
method and path, answers the errors they raise exactly as FastAPI's handlers would
(`errors.answer_for`), and hands everything else to FastAPI. The cross-cutting
middleware (`limits`, `auth`, `metrics`, `errors.Unexpected`) wraps both alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from imgrec.web import errors, routes

Handler = Callable[[Request, routes.Parts], Awaitable[Response]]
UPLOAD_ROUTES: dict[str, Handler] = {
    "/": routes.classic, "/api/v1/classify": routes.api_classify, "/api/v1/jobs": routes.api_submit,
}


class UploadRoutes:
    """Pure ASGI: a POST to an upload route goes to its handler, anything else to `app`."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        # The routes as FastAPI declares them (for its OpenAPI schema): the metrics and the
        # access line name a request by its route's template, as for every other route.
        self.declared = {
            r.path: r for r in routes.router.routes
            if isinstance(r, APIRoute) and "POST" in (r.methods or ()) and r.path in UPLOAD_ROUTES
        }
        assert set(self.declared) == set(UPLOAD_ROUTES), "an upload route is not declared in routes.router"

    async def __call__(self, scope, receive, send) -> None:
        handler = UPLOAD_ROUTES.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            return await self.app(scope, receive, send)
        scope["app"], scope["route"] = self.app, self.declared[scope["path"]]
        request = Request(scope, receive)
        try:
            response = await handler(request, self.app.state.parts)
        except Exception as exc:
            answer = errors.answer_for(request, exc)
            if answer is None:
                raise  # a bug: errors.Unexpected logs it and answers 500
            response = answer
        await response(scope, receive, send)


class ServiceApp:
    """The ASGI app uvicorn serves: the middleware around `UploadRoutes` around FastAPI.
    Anything else asked of it (its state, its OpenAPI schema) is the FastAPI app's."""

    def __init__(self, fastapi: FastAPI, wrap: Callable[[Any], Any]) -> None:
        self.fastapi = fastapi
        self._asgi = wrap(UploadRoutes(fastapi))

    async def __call__(self, scope, receive, send) -> None:
        await self._asgi(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fastapi, name)
