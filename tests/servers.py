"""Real servers for the adapters' tests, started by the tests themselves on free ports.

redis-server comes from the system (Debian's `redis-server`; `make setup` installs
it when it can); moto's standalone server (`moto[server]`, from the test extra)
stands in for S3 and SQS. Without redis-server the Redis tests are skipped on a
developer's machine with the reason, but fail in CI, where nothing may be skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imgrec.lab.harness import free_port, wait_until


def _missing(what: str, why: str = "is not installed (run `make setup` or install it)") -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} {why}")


class RedisServer:
    """Persistent (appendonly) unless `volatile`, as a deployment should run it."""

    def __init__(self, workdir: Path, port: int | None = None, volatile: bool = False) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            _missing("redis-server")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no" if volatile else "yes", "--appendfsync", "everysec", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), 20, what="redis-server")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.RedisError:
        return False


class MotoServer:
    """S3 and SQS on one local endpoint; the AWS variables point boto3 at it."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import urllib.request

        def up() -> bool:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1)
                return True
            except OSError:
                return False

        wait_until(up, 30, what="moto_server")
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)




class SmallDisk:
    """A small tmpfs mounted at `path` (needs root, as CI has), that a test can fill up
    and free again: a real "no space left on device" for whatever lives there."""

    def __init__(self, path: Path, size_mb: int = 8) -> None:
        if os.geteuid() != 0:
            _missing("a tmpfs mount", "needs root (CI runs as root)")
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], check=True)
        self.path = path
        self._filler = path / ".filler"

    def fill(self) -> None:
        """Take every free byte."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 16, 1 << 10, 1):  # down to the last byte
                try:
                    while os.write(fd, b"\0" * size):
                        pass
                except OSError:
                    continue
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


class TcpProxy:
    """A TCP forwarder to `target` (host, port) on its own free port, for faults a test
    injects between a client and a server:

    - `stop` cuts every connection and refuses new ones (the server seems gone); `start`
      accepts again (the server behind it kept its state: it was the network that failed);
    - `freeze` holds every byte in both directions, connections kept open (a server that
      stalls instead of failing); `thaw` lets them through again;
    - `freeze_after(n)` forwards `n` more bytes from clients to the server, then freezes;
    - `delay` (seconds) holds each chunk that long before forwarding it (a slow network).
    """

    def __init__(self, target: tuple[str, int]) -> None:
        import asyncio
        import threading

        self.target, self.port = target, free_port()
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._writers: set = set()
        self.delay = 0.0
        self.budget: int | None = None  # bytes clients may still send before a freeze; None: no limit
        self._flowing = None  # asyncio.Event, made on the proxy's loop
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self._call(self._make_events())
        self.start()

    async def _make_events(self) -> None:
        import asyncio

        self._flowing = asyncio.Event()
        self._flowing.set()

    def _call(self, coro):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _pipe(self, reader, writer, upstream: bool) -> None:
        import asyncio

        try:
            while data := await reader.read(65536):
                if upstream and self.budget is not None:
                    allowed, self.budget = data[: self.budget], max(0, self.budget - len(data))
                    if allowed:
                        writer.write(allowed)
                    if self.budget == 0:
                        self._flowing.clear()
                    data = data[len(allowed):]
                    if not data:
                        continue
                await self._flowing.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader, client_writer) -> None:
        import asyncio

        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, server_writer}
        await asyncio.gather(
            self._pipe(client_reader, server_writer, True), self._pipe(server_reader, client_writer, False)
        )
        self._writers -= {client_writer, server_writer}

    async def _start(self) -> None:
        import asyncio

        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()  # a reset, as when the server's host goes away
        self._writers.clear()

    async def _set_flowing(self, flowing: bool, budget: int | None) -> None:
        self.budget = budget
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())

    def freeze(self) -> None:
        self._call(self._set_flowing(False, None))

    def freeze_after(self, n_bytes: int) -> None:
        self._call(self._set_flowing(True, n_bytes))

    def thaw(self) -> None:
        self._call(self._set_flowing(True, None))
