"""Optional API keys, as pure ASGI middleware: off unless `IMGREC_API_KEYS` is set."""

from __future__ import annotations

import hmac
import json

OPEN_PATHS = {"/healthz", "/readyz"}


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
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if scope["method"] == "GET" and scope["path"] == "/":
            return await self.app(scope, receive, send)  # the page itself asks for the key
        if self._allowed(dict(scope["headers"])):
            return await self.app(scope, receive, send)
        text = "an API key is required: send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'"
        if scope["path"] == "/":
            body, ctype = (text + "\n").encode(), b"text/plain; charset=utf-8"
        else:
            body, ctype = json.dumps({"detail": text}).encode(), b"application/json"
        await send({
            "type": "http.response.start", "status": 401,
            "headers": [(b"content-type", ctype), (b"www-authenticate", b"Bearer")],
        })
        await send({"type": "http.response.body", "body": body})
