"""A client for a running imgrec service (httpx): `AsyncClient`, and `Client` for code
that is not async. Both retry what the service asks to be retried (429 and 503, after
their Retry-After) and connection failures (with backoff), so a service restarting
under a long run costs time, not results.

    from imgrec.client import Client
    with Client("http://127.0.0.1:8000") as c:
        batch = c.submit(["cat.jpg", "dog.png"])
        for row in c.wait(batch["batch_id"]):
            print(row["filename"], row.get("label") or row["error"])
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from imgrec.errors import BackendUnavailable, BadInput

RETRIED = (429, 503)
MAX_PAUSE = 10.0
# Told why calls fail while they are retried (a reason), and once one succeeds again (None).
TroubleReport = Callable[[str | None], None]


class ServiceError(BadInput):
    """The service refused a request for good (a 4xx): retrying as it is would not help."""


class GaveUp(BackendUnavailable):
    """A call still failed (unreachable, or the service said "later") after `give_up_after` seconds of retries."""


FileLike = str | Path | tuple[str, bytes]


def _part(f: FileLike) -> tuple[str, tuple[str, bytes, str]]:
    if isinstance(f, tuple):
        name, data = f
    else:
        path = Path(f)
        name, data = path.name, path.read_bytes()
    return ("file", (name, data, "application/octet-stream"))


class AsyncClient:
    """`on_trouble` is told, as it happens, why calls are being retried, and when one gets
    through again: a long run against a service that cannot be reached says so at once,
    instead of looking merely slow until it gives up."""

    def __init__(
        self, url: str, api_key: str | None = None, *, timeout: float = 120.0, give_up_after: float = 600.0,
        on_trouble: TroubleReport | None = None, model: str | None = None,
    ):
        headers = {"X-API-Key": api_key} if api_key else {}
        self.url = url.rstrip("/")
        # One of the models a service serves side by side (None: its default one)
        self._prefix = f"/api/v1/models/{model}" if model else "/api/v1"
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)
        self.give_up_after = give_up_after  # seconds of retrying one call before it fails
        self.retries = 0  # calls retried so far (for progress displays)
        self.trouble: str | None = None  # why calls fail now; None once one got through
        self._on_trouble = on_trouble

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One call, retried while the service says "later" or cannot be reached."""
        deadline, pause = time.monotonic() + self.give_up_after, 0.5
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                wait, why = pause, f"cannot reach {self.url} ({type(exc).__name__}: {exc or 'no detail'})"
                pause = min(MAX_PAUSE, pause * 2)
            else:
                if response.status_code not in RETRIED:
                    self._report(None)
                    if response.status_code >= 400:
                        raise ServiceError(_detail(response), response.status_code)
                    return response
                wait = _retry_after(response, pause)
                why = f"{self.url} answers {response.status_code} ({_detail(response)})"
            left = deadline - time.monotonic()
            if left <= 0:
                raise GaveUp(f"{why}; gave up after {self.give_up_after:g} s of retrying ({method} {path})")
            self._report(why)
            self.retries += 1
            await asyncio.sleep(min(left, wait * random.uniform(0.8, 1.2)))  # the last try at the deadline

    def _report(self, why: str | None) -> None:
        """Tell `on_trouble` when calls start failing, why, and when one gets through again."""
        if why == self.trouble:
            return
        self.trouble = why
        if self._on_trouble is not None:
            self._on_trouble(why)

    async def limits(self) -> dict:
        return (await self.request("GET", "/api/v1/limits")).json()

    async def status(self) -> dict:
        return (await self.request("GET", "/api/v1/status")).json()

    async def classify(self, files: Sequence[FileLike]) -> list[dict]:
        """Classify and wait: each file's result (or its error), in order."""
        response = await self.request("POST", f"{self._prefix}/classify", files=[_part(f) for f in files])
        return response.json()["results"]

    async def submit(self, files: Sequence[FileLike]) -> dict:
        """Queue files for classification: the batch (`batch_id`, `batch_url`, `jobs`)."""
        return (await self.request("POST", f"{self._prefix}/jobs", files=[_part(f) for f in files])).json()

    async def batch(self, batch_id: str) -> dict:
        return (await self.request("GET", f"/api/v1/batches/{batch_id}")).json()

    async def job(self, job_id: str) -> dict:
        return (await self.request("GET", f"/api/v1/jobs/{job_id}")).json()

    async def wait(self, batch_id: str, *, every: float = 0.2, most: float = 2.0) -> list[dict]:
        """A batch's results once all are in, in upload order."""
        while (view := await self.batch(batch_id))["status"] != "done":
            await asyncio.sleep(every)
            every = min(most, every * 1.5)
        return view["results"]

    async def results(self, batch_id: str, format: str = "json") -> str:
        """A finished batch's results as the service writes them (JSON or CSV text)."""
        return (await self.request("GET", f"/api/v1/batches/{batch_id}", params={"format": format})).text


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text.strip()


def _retry_after(response: httpx.Response, fallback: float) -> float:
    try:
        return min(60.0, max(0.0, float(response.headers.get("retry-after", fallback))))
    except ValueError:
        return fallback


class Client:
    """`AsyncClient`'s calls for code that is not async (each runs on a private loop)."""

    def __init__(self, url: str, api_key: str | None = None, **options) -> None:
        self._loop = asyncio.new_event_loop()
        self._async = AsyncClient(url, api_key, **options)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run_until_complete(self._async.close())
        self._loop.close()

    def _run(self, coro):
        return self._loop.run_until_complete(coro)

    def limits(self) -> dict:
        return self._run(self._async.limits())

    def status(self) -> dict:
        return self._run(self._async.status())

    def classify(self, files: Sequence[FileLike]) -> list[dict]:
        return self._run(self._async.classify(files))

    def submit(self, files: Sequence[FileLike]) -> dict:
        return self._run(self._async.submit(files))

    def batch(self, batch_id: str) -> dict:
        return self._run(self._async.batch(batch_id))

    def job(self, job_id: str) -> dict:
        return self._run(self._async.job(job_id))

    def wait(self, batch_id: str, **options) -> list[dict]:
        return self._run(self._async.wait(batch_id, **options))

    def results(self, batch_id: str, format: str = "json") -> str:
        return self._run(self._async.results(batch_id, format))
