"""uvicorn's httptools protocol with a deadline and a size limit on each request's line
and headers.

uvicorn closes a keep-alive connection that stays idle (after `keep_alive` seconds),
but a connection that sends a request's first bytes and then trickles the rest
(slowloris), or a new connection that sends nothing, would be kept for ever: the app
never sees it, so no middleware can. This subclass closes such a connection with 408
after `header_timeout` seconds. Between requests a kept connection is idle, not slow:
there the deadline starts at the next request's first byte, and the keep-alive
alone decides when it closes (quietly: a 408 written to an idle connection could
meet the client's next request).

httptools itself puts no bound on headers: one connection sending 300 MB of them in
under a second grew the web tier by 300 MB and was then answered. Past
`max_header_bytes` (64 KiB by default; nginx allows 32, Node 16) the request gets 431
and the connection is closed.

Open files bound the connections: each takes a file descriptor, and a client that
opens thousands and leaves them idle (kept alive after a request, or never sending
one) would leave none for new clients (their connections reset) or for the store
(the replica's own heartbeat failed with "Too many open files"); so would thousands
trickling their headers, each for up to `header_timeout`. Past `max_connections` (the
open-files limit less a reserve) the connections that have waited longest without a
request in progress (idle, as nginx does, or still sending headers) are closed to make
room; a request whose headers have arrived is never cut.

It also closes gently after an early answer (e.g. 413 to an upload announced too
large): closing a socket with unread bytes makes the kernel reset the connection,
and a client still sending its body may then never read the answer. Instead the
answer is followed by a half-close (FIN) and what the client still sends is read
and dropped for up to `LINGER_SECONDS`, as nginx's lingering close does.

httptools (a C parser) rather than h11 (pure Python): the web tier spends less CPU
per request, CPU the workers use instead (see README, Performance).
"""

from __future__ import annotations

import asyncio
import logging
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("imgrec.web")
_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
LINGER_SECONDS = 2.0


def _too_large_response(limit: int) -> bytes:
    text = f"the request line and headers are over {limit:,} bytes\n".encode()
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(text), text)
    )


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: `close` lingers while the request's
    body is still arriving; everything else is the transport's own."""

    def __init__(self, transport: asyncio.Transport, protocol: HeaderDeadlineProtocol) -> None:
        self._transport, self._protocol = transport, protocol

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

    def close(self) -> None:
        p = self._protocol
        body_unread = p.cycle is not None and p.cycle.more_body
        if body_unread and not self.is_closing() and self._transport.can_write_eof():
            p._linger()
        else:
            self._transport.close()

    def is_closing(self) -> bool:
        return self._protocol._linger_timer is not None or self._transport.is_closing()


class HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout = 10.0  # set per server by `with_header_limits`, as are:
    max_header_bytes = 65536
    max_connections = 1 << 30
    # No request in progress: idle, silent, or still sending a request's line and headers; oldest first.
    _waiting: dict[HeaderDeadlineProtocol, None] = {}
    _shed_said = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._real = transport  # uvicorn holds the lingering wrapper
        self._awaiting_headers = True
        self._between_requests = False  # a new connection owes its first request's headers at once
        self._header_bytes = 0  # of the awaited headers, received so far
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        self._waiting[self] = None
        self._make_room()
        self._watch()

    def _make_room(self) -> None:
        """Close the connections waiting longest without a request while there are more than
        `max_connections`."""
        excess = len(self.connections) - self.max_connections
        if excess <= 0:
            return
        oldest = [p for p in list(self._waiting)[:excess] if p is not self]
        for p in oldest:
            self._waiting.pop(p, None)
            p.transport.close()
        now = time.monotonic()
        if oldest and now - type(self)._shed_said > 10:
            type(self)._shed_said = now
            log.warning(
                "%d open connections, near the limit of open files: closed the %d waiting longest without a request",
                len(self.connections), len(oldest),
            )

    def data_received(self, data: bytes) -> None:
        if self._linger_timer is not None:
            return  # the rest of a body already answered: dropped
        self._between_requests = False
        awaiting = self._awaiting_headers
        super().data_received(data)
        if awaiting and self._awaiting_headers:  # all of it was line and headers, still incomplete
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
                self._refuse_headers()
                return
        self._watch()

    def _refuse_headers(self) -> None:
        self.transport.write(_too_large_response(self.max_header_bytes))
        self._linger()  # the rest of the headers is read and dropped, so the client sees the 431

    # asyncio's protocol may return False (close); uvicorn's annotation says None only.
    def eof_received(self) -> bool | None:  # type: ignore[override]
        if self._linger_timer is not None:
            return False  # the client has sent everything: the transport closes
        return super().eof_received()

    def _linger(self) -> None:
        real = self._real
        real.write_eof()  # after the answer already written
        real.resume_reading()  # a client blocked sending its body must get through to the answer
        self._disarm()
        self._waiting.pop(self, None)
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, real.close)

    def on_headers_complete(self) -> None:
        self._awaiting_headers, self._header_bytes = False, 0
        self._waiting.pop(self, None)  # a request in progress: never closed to make room
        super().on_headers_complete()
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's headers are awaited, unless a pipelined one already came;
        # their deadline starts with their first byte.
        self._awaiting_headers = self._between_requests = not self.pipeline
        if self._between_requests:
            self._waiting[self] = None
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting.pop(self, None)
        self._disarm()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Armed while the next request's line and headers are awaited, disarmed otherwise."""
        awaiting = self._awaiting_headers and not self._between_requests and not self.transport.is_closing()
        if awaiting and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._expired)
        elif not awaiting:
            self._disarm()

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self._awaiting_headers and not self.transport.is_closing():
            if self.cycle is None or self.cycle.response_complete:  # nothing of ours is half sent
                self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()


def connection_budget() -> int:
    """Connections this process may hold: its open-files limit less a reserve for the
    store's files, the queue, spooled uploads and the runtime's own."""
    try:
        import resource
    except ImportError:  # not a Unix: no such limit to mind
        return 1 << 30
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(16, soft - max(128, soft // 8))


def with_header_limits(seconds: float, max_bytes: int) -> type[HeaderDeadlineProtocol]:
    """The protocol class to give uvicorn (`http=`), with this deadline and size limit, and
    a connection budget from the open-files limit as it is now."""
    limits = {"header_timeout": seconds, "max_header_bytes": max_bytes, "max_connections": connection_budget(), "_waiting": {}}
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), limits)
