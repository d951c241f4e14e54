"""Pure ASGI middleware that keeps an upload within its limits while it arrives.

- size: a body over `max_bytes` is refused (413) as soon as the announced length
  or the bytes received pass it, without reading the rest;
- time: the whole body must arrive within `deadline` seconds, and after the first
  GRACE seconds at `min_rate` bytes/s on average, else 408: a client that trickles
  bytes cannot hold a connection for ever;
- clients: one client address may have at most `per_client` requests with a body
  in progress (429 above), so one host cannot take every connection.

(The request line and headers have their own deadline, in `protocol`.)
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from imgrec.web.errors import send_error

GRACE = 5.0  # seconds at the start of an upload before its rate is judged


class BodyTooLarge(Exception):
    """Raised from `receive` when the body passes the limit; this middleware answers it."""


class BodyTooSlow(Exception):
    """Raised from `receive` when the body misses its deadline or rate; answered here."""


class UploadGuard:
    def __init__(self, app, max_bytes: int, deadline: float, min_rate: float, per_client: int) -> None:
        self.app = app
        self.max_bytes, self.deadline, self.min_rate, self.per_client = max_bytes, deadline, min_rate, per_client
        self.in_progress: Counter[str] = Counter()  # requests with a body, by client address

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._too_large(scope, send)
        client = (scope.get("client") or ("unknown", 0))[0]
        if self.in_progress[client] >= self.per_client:
            return await send_error(
                scope, send, 429,
                f"too many uploads at once from {client} (the limit is {self.per_client}); please retry shortly",
                [(b"retry-after", b"2")],
            )
        self.in_progress[client] += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.in_progress[client] -= 1
            if not self.in_progress[client]:
                del self.in_progress[client]

    async def _guarded(self, scope, receive, send) -> None:
        started_at, seen, complete, responded = time.monotonic(), 0, False, False

        async def limited_receive():
            nonlocal seen, complete
            if complete:  # the body is in; what comes now is a disconnect, whenever it comes
                return await receive()
            elapsed = time.monotonic() - started_at
            left = min(self.deadline, GRACE + seen / self.min_rate) - elapsed
            if left <= 0:
                raise BodyTooSlow
            try:
                message = await asyncio.wait_for(receive(), left)
            except TimeoutError:
                raise BodyTooSlow from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not responded:
                await self._too_large(scope, send)
        except BodyTooSlow:
            if not responded:
                await send_error(
                    scope, send, 408,
                    f"the upload arrived too slowly: the whole body must arrive within {self.deadline:g} s, "
                    f"at {self.min_rate:,.0f} bytes/s or more after the first {GRACE:g} s",
                    [(b"connection", b"close")],
                )

    async def _too_large(self, scope, send) -> None:
        # Connection: close tells the client we will not read the rest of what it sends.
        await send_error(
            scope, send, 413, f"upload too large: the limit is {self.max_bytes:,} bytes per request",
            [(b"connection", b"close")],
        )


def _has_body(scope) -> bool:
    headers = dict(scope["headers"])
    length = headers.get(b"content-length")
    return (length is not None and length != b"0") or b"chunked" in headers.get(b"transfer-encoding", b"")
