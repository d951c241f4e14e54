"""Optional API keys, as pure ASGI middleware: off unless `IMGREC_API_KEYS` is set."""

from __future__ import annotations

import hmac

from imgrec.web.errors import send_error

# The probes, and what the page needs before it has a key: itself, its files, the
# documentation, and the limits (which say whether a key is needed).
OPEN_PATHS = {"/healthz", "/readyz", "/favicon.ico", "/docs", "/openapi.json", "/api/v1/limits"}
OPEN_PREFIXES = ("/static/", "/docs/")


class ApiKeys:
    def __init__(self, app, keys: list[str]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]

    def _allowed(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"x-api-key") or b""
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        return any(hmac.compare_digest(given, k) for k in self.keys)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["path"].startswith(OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        if scope["method"] in ("GET", "HEAD") and scope["path"] == "/":
            return await self.app(scope, receive, send)  # the page itself asks for the key
        if self._allowed(dict(scope["headers"])):
            return await self.app(scope, receive, send)
        await send_error(
            scope, send, 401,
            "an API key is required: send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
            [(b"www-authenticate", b"Bearer")],
        )
