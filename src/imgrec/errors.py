"""What can go wrong, by kind, so that callers decide by type.

    ImgrecError
    ├── BackendError          the store or a queue refused (bad credentials, a bug)
    │   └── BackendUnavailable    ... for now: unreachable, timed out, disk full,
    │                             throttled; retrying later is the answer
    ├── NotFound              no such object
    │   └── Expired           ... any more: it was kept for the retention time, then deleted
    ├── QueueMissing          no such queue (never created, or deleted)
    ├── BadInput              the client sent something we cannot use (4xx)
    ├── Overloaded            too much accepted work waiting (429)
    ├── CannotClassify        no worker can run (e.g. no model): waiting would be in vain (503)
    └── ConfigError           the deployment is set up wrong (unknown URL, a
        ├── MissingExtra      missing package, no model, a damaged queue file);
        ├── ModelMissing      says what to do
        └── QueueDamaged

Adapters translate their driver's exceptions (sqlite3, OSError, redis-py,
botocore) into these, so no driver exception crosses a port. A transient outage
is never mistaken for bad input: that is why BackendUnavailable and BadInput are
apart.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar, cast


class ImgrecError(Exception):
    """Base of every error imgrec raises on purpose."""


class BackendError(ImgrecError):
    """The store or a queue failed in a way retrying will not fix by itself."""


class BackendUnavailable(BackendError):
    """The store or a queue cannot serve right now; try again shortly."""


class NotFound(ImgrecError, KeyError):
    """No object under that key."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class Expired(NotFound):
    """It existed, and was deleted when its retention time ran out (410)."""


class QueueMissing(ImgrecError):
    """The queue does not exist (never created, or deleted)."""


class BadInput(ImgrecError, ValueError):
    """Input we cannot use; `status` is the HTTP status that says so, the message says why."""

    status = 400

    def __init__(self, message: str, status: int | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}  # more for a JSON answer, e.g. each refused file's own error
        if status is not None:
            self.status = status


class Overloaded(ImgrecError):
    """The backlog is over its limit: the client should come back later (429)."""


class CannotClassify(ImgrecError):
    """No worker runs and none can start (the autoscalers report why): a client that
    would wait for its answer is told at once instead."""


class ConfigError(ImgrecError, ValueError):
    """The deployment is configured wrong; the message says how to fix it."""


class MissingExtra(ConfigError):
    """An optional dependency is not installed."""


class ModelMissing(ConfigError):
    """The model has not been built (or fetched) yet, or its file is damaged."""


class QueueDamaged(ConfigError):
    """The queue's own file is damaged (a SQLite queue): what to run to save what can be read."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import an optional dependency, or fail with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs the '{module}' package; install it with: {install_hint(extra)}") from None


def install_hint(extra: str) -> str:
    """The command that adds an extra to this installation, one that works where the user is:
    from a checkout (`pip install -e '<checkout>[aws]'`: there is no imgrec to fetch from an
    index), from a wheel file or a folder pip installed, or else by name."""
    import shutil
    import sys
    from pathlib import Path

    beside = Path(sys.executable).parent / "pip"
    pip = "pip" if shutil.which("pip") == str(beside) else f"{sys.executable} -m pip"
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "imgrec").is_dir():
        return f"{pip} install -e '{checkout}[{extra}]'"
    source = _installed_from()
    return f"{pip} install '{source or 'imgrec'}[{extra}]'"


def _installed_from() -> str | None:
    """The wheel file or folder pip installed imgrec from, if it is still there (PEP 610)."""
    import json
    from importlib import metadata
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    try:
        direct = json.loads(metadata.distribution("imgrec").read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        return None
    url = urlparse(direct.get("url", ""))
    path = Path(unquote(url.path))
    return str(path) if url.scheme == "file" and path.exists() else None


Translate = Callable[[Exception], ImgrecError | None]
F = TypeVar("F", bound=Callable[..., Any])


def translating(translate: Translate) -> Callable[[F], F]:
    """Decorate an adapter's methods so that a driver exception leaves them as the
    ImgrecError `translate` gives (None: not a driver exception, let it through)."""

    @contextlib.contextmanager
    def translated() -> Iterator[None]:
        try:
            yield
        except ImgrecError:
            raise
        except Exception as exc:  # an adapter's boundary: translated, or re-raised as it is
            new = translate(exc)
            if new is None:
                raise
            raise new from exc

    def decorator(fn: F) -> F:
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
                with translated():
                    yield from fn(*args, **kwargs)

            return cast(F, gen)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with translated():
                return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorator


# Error codes of AWS (and S3-compatible servers) that mean "not now".
_AWS_TRANSIENT = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
    "SlowDown", "RequestTimeout", "RequestTimeoutException", "ServiceUnavailable", "InternalError",
    "InternalFailure", "RequestLimitExceeded", "TooManyRequestsException", "OverLimit", "KMSThrottlingException",
}
_AWS_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


def aws_error(exc: Exception, what: str) -> ImgrecError | None:
    """The ImgrecError for a botocore exception (S3, SQS, Auto Scaling), or None."""
    import sys

    botocore = sys.modules.get("botocore.exceptions")
    if botocore is None:
        return None
    boto3 = sys.modules.get("boto3.exceptions")
    if boto3 is not None and isinstance(exc, boto3.S3UploadFailedError):
        return BackendUnavailable(f"{what}: {exc}")  # a multipart upload failed part way
    if isinstance(exc, botocore.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = f"{what}: {code}: {error.get('Message', exc)}"
        if code in _AWS_MISSING_QUEUE:
            return QueueMissing(message)
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound(message)
        if code in _AWS_TRANSIENT or status >= 500 or status == 429:
            return BackendUnavailable(message)
        return BackendError(message)
    if isinstance(exc, botocore.NoCredentialsError | botocore.PartialCredentialsError):
        return BackendError(f"{what}: {exc} (set AWS credentials: environment, profile or instance role)")
    if isinstance(exc, botocore.ConnectionError | botocore.HTTPClientError):
        return BackendUnavailable(f"{what}: {exc}")
    if isinstance(exc, botocore.BotoCoreError):
        return BackendError(f"{what}: {exc}")
    return None
