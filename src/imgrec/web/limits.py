"""Pure ASGI middleware that keeps an upload within its limits while it arrives.

- size: a body over `max_bytes` is refused (413) as soon as the announced length
  or the bytes received pass it, without reading the rest;
- time: the whole body must arrive within `deadline` seconds, and after the first
  GRACE seconds at `min_rate` bytes/s on average, else 408: a client that trickles
  bytes cannot hold a connection for ever. Only the time the service spends waiting
  for the client's bytes counts: a request that waits for a free thread before its
  body is read is not slow for it (the client's bytes wait in the socket meanwhile);
- clients: one client address may have at most `per_client` requests with a body
  in progress (429 above), so one host cannot take every connection.

Whether a request has a body is read as HTTP says: a Content-Length other than 0, or
any Transfer-Encoding, whatever its case (`Chunked` is chunked: the HTTP parser decodes
it so, and a guard that thought otherwise let 1 GiB uploads through).

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
        body = _GuardedBody(receive, self.max_bytes, self.deadline, self.min_rate)
        responded = False

        async def tracking_send(message):
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, body.receive, tracking_send)
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


class _GuardedBody:
    """The request's `receive`, raising BodyTooLarge past `max_bytes` and BodyTooSlow past
    the deadline or below the rate, both counted in the time spent waiting for the client."""

    def __init__(self, receive, max_bytes: int, deadline: float, min_rate: float) -> None:
        self._receive, self.max_bytes, self.deadline, self.min_rate = receive, max_bytes, deadline, min_rate
        self.waited, self.seen, self.complete = 0.0, 0, False

    async def receive(self):
        if self.complete:  # the body is in; what comes now is a disconnect, whenever it comes
            return await self._receive()
        left = min(self.deadline, GRACE + self.seen / self.min_rate) - self.waited
        if left <= 0:
            raise BodyTooSlow
        started = time.monotonic()
        try:
            message = await asyncio.wait_for(self._receive(), left)
        except TimeoutError:
            raise BodyTooSlow from None
        finally:
            self.waited += time.monotonic() - started
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
            if self.seen > self.max_bytes:
                raise BodyTooLarge
        return message


def _has_body(scope) -> bool:
    length = transfer = None
    for name, value in scope["headers"]:  # ASGI gives header names lowercased
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            transfer = value
    return (length is not None and length.strip() != b"0") or transfer is not None
