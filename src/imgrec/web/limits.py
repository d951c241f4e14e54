"""Pure ASGI middleware that refuses a request body over the limit, without reading it all."""

from __future__ import annotations

from imgrec.web.errors import send_error


class BodyTooLarge(Exception):
    """Raised from `receive` when the body passes the limit; this middleware answers it."""


class BodySizeLimit:
    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(scope, send)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send)

    async def _refuse(self, scope, send) -> None:
        # Connection: close tells the client we will not read the rest of what it sends.
        await send_error(
            scope, send, 413, f"upload too large: the limit is {self.max_bytes:,} bytes per request",
            [(b"connection", b"close")],
        )
