"""uvicorn's httptools protocol with a deadline on each request's line and headers.

uvicorn closes a keep-alive connection that stays idle, but a connection that
sends a request's first bytes and then trickles the rest (slowloris), or a new
connection that sends nothing, would be kept for ever: the app never sees it, so
no middleware can. This subclass closes such a connection with 408 after
`header_timeout` seconds.

httptools (a C parser) rather than h11 (pure Python): the web tier spends less CPU
per request, CPU the workers use instead (see README, Performance).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout = 10.0  # set per server by `with_header_timeout`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        super().on_headers_complete()
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's headers are awaited, unless a pipelined one already came.
        self._awaiting_headers = not self.pipeline
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Armed while the next request's line and headers are awaited, disarmed otherwise."""
        awaiting = self._awaiting_headers and not self.transport.is_closing()
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


def with_header_timeout(seconds: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class to give uvicorn (`http=`), with this deadline."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": seconds})
