"""One settings object for every part of imgrec, read from ``IMGREC_*`` variables.

Each process builds it once (the CLI's callback) and passes it down; a child
process gets the same values through `to_env()`. Defaults live only here: the
README's configuration table is checked against these fields by a test.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, JsonValue
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "IMGREC_"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: Any) -> Any:
    """A duration as seconds: 90, "90", "90s", "15m", "12h", "7d"."""
    if isinstance(value, str) and value.strip()[-1:].lower() in _UNITS:
        number, unit = value.strip()[:-1], value.strip()[-1].lower()
        return float(number) * _UNITS[unit]
    return value


Duration = Annotated[float, BeforeValidator(_seconds)]
# The models `imgrec model build --variant` makes (engine/variants.py says what each is).
ModelVariant = Literal["lite0", "lite0-int8", "lite2", "lite2-int8"]
_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def _model_name(value: Any) -> Any:
    """A built-in variant or the name a model was added under (`imgrec model add DIR --name`)."""
    if isinstance(value, str) and not _MODEL_NAME.match(value):
        raise ValueError(
            f"model {value!r}: a built-in variant ({', '.join(get_args(ModelVariant))}) or the name of a model added "
            "with imgrec model add (lower-case letters, digits, '.', '_', '-')"
        )
    return value


ModelName = Annotated[str, AfterValidator(_model_name)]


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "imgrec"


def _setting(default: Any = None, doc: str = "", *, shown: str | None = None, **kw: Any) -> Any:
    """A field with its meaning (`doc`) and, where the default is computed, how the
    README shows it (`shown`)."""
    extra: dict[str, JsonValue] | None = {"shown": shown} if shown is not None else None
    if "default_factory" in kw:
        return Field(description=doc, json_schema_extra=extra, **kw)
    return Field(default, description=doc, json_schema_extra=extra, **kw)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # Where things are
    data_dir: Path = _setting(
        doc="model, store and queue of the embedded defaults",
        shown="$XDG_DATA_HOME/imgrec (~/.local/share/imgrec)", default_factory=_default_data_dir,
    )
    model: ModelName = _setting(
        "lite0", "the model served: a built-in variant, lite0 (exact fp32), lite0-int8 (quantized, faster), lite2, "
        "lite2-int8, or the name of a model added with imgrec model add"
    )
    models: str = _setting(
        "", "several models served side by side, comma-separated (each a variant or an added model's name), each with "
        "its own request queue and workers; the first is the default, which POST / and /api/v1/classify serve",
        shown="(only IMGREC_MODEL)",
    )
    model_dir: Path | None = _setting(
        None, "the ONNX model and its manifest", shown="<data dir>/model (<data dir>/model-<variant> for the others)"
    )
    store: str = _setting("", "object store URL: file:///path or s3://bucket/prefix", shown="file://<data dir>/store")
    queue: str = _setting(
        "", "queue URL: sqlite:///path, redis://host:port/db or sqs://prefix", shown="sqlite://<data dir>/queue.sqlite3"
    )

    # Logs
    log_format: Literal["text", "json"] = _setting(
        "text", "how every process logs: text lines for a person, or json, one object a line (time, level, logger, "
        "message and the line's own fields) for a log pipeline"
    )
    access_log: bool = _setting(True, "the web tier logs one line per request (method, route, status, duration, request id)")

    # Web tier
    host: str = _setting("127.0.0.1", "where the web tier listens")
    port: int = _setting(8000, "the web tier's port")
    max_upload_bytes: int = _setting(20 * 1024 * 1024, "request body limit (413 above)", shown="20971520 (20 MiB)")
    max_files_per_request: int = _setting(100, "images per API request")
    max_pixels: int = _setting(40_000_000, "pixel limit per image (422 above)")
    max_aspect_ratio: float = _setting(20.0, "longest over shortest side past which an image is refused (422)")
    request_timeout: float = _setting(120.0, "seconds a waiting request waits (504 after)")
    max_backlog: int = _setting(2000, "waiting requests past which uploads get 429 (nothing accepted is dropped)")
    max_concurrent_uploads: int = _setting(32, "uploads parsed, checked and stored at once (the rest wait, received)")
    max_uploads_per_client: int = _setting(512, "requests with a body one client address may have in progress (429 above)")
    header_timeout: float = _setting(10.0, "seconds to receive a request's line and headers (408 after)")
    max_header_bytes: int = _setting(65536, "bytes a request's line and headers may take (431 above)", ge=1024)
    keep_alive: int = _setting(
        75, "seconds an idle connection is kept for the client's next request: longer than clients keep theirs", ge=1
    )
    upload_deadline: float = _setting(300.0, "seconds an upload's whole body may take to arrive (408 after)")
    min_upload_rate: float = _setting(8192.0, "slowest average upload speed accepted after its first 5 s, bytes/s (408 below)")
    trusted_proxies: str = _setting("127.0.0.1", "addresses of reverse proxies whose X-Forwarded-For names the client")
    api_keys: str = _setting("", "comma-separated keys; when set, every API call needs one", shown="(none)")

    # Workers
    max_batch: int = _setting(16, "most messages a worker classifies at once")
    max_wait_ms: float = _setting(2.0, "when more than one request was waiting, how long a worker waits for its batch to fill")
    image_timeout: float = _setting(10.0, "seconds a worker may spend on one image before it is retried alone")
    visibility_timeout: float = _setting(30.0, "seconds before an unacked message is delivered again")
    max_receives: int = _setting(5, "deliveries before a message goes to the dead-letter queue")
    worker_idle_timeout: float = _setting(30.0, "a worker run alone exits after this long without work")
    model_check_interval: float = _setting(
        2.0, "seconds between a worker's looks at the store for a new version of its model, taken up between two "
        "batches (0: never; a worker then runs the version it started with)", ge=0,
    )
    intra_op_threads: int = _setting(1, "onnxruntime threads per worker (workers are processes)")
    infer_batch: int = _setting(
        0, "images per onnxruntime call (a worker's batch is inferred so many at a time); 0: 2 for fp32, all for int8",
        ge=0,
    )
    ready_file: str = _setting(
        "",
        "a file a worker writes once its model answered a warm-up inference, and removes as it stops (a readiness probe)",
        shown="(none)",
    )
    live_file: str = _setting(
        "",
        "a file a worker touches each time its loop goes round: imgrec health worker (a container's health check, a "
        "liveness probe) fails once it is older than a hung worker's limit (2 x max batch x image timeout + visibility "
        "timeout)",
        shown="(none)",
    )
    backend_timeout: Duration = _setting(
        5.0, "seconds a call to the store or a queue may take (connect, then each answer); past it the call fails as "
        "an outage: 503 for an upload, a pause for a worker, never a hang", gt=0,
    )
    allow_volatile_queue: bool = _setting(
        False, "start on a Redis that keeps nothing on disk (a restart loses accepted jobs; they are sent again)"
    )
    retention: Duration = _setting(
        7 * 86400.0, "how long inputs and results are kept (7d, 12h, 30m, seconds); 0 keeps them for ever",
        shown="604800 (7d)",
    )

    # Autoscaler
    actuator: str = _setting("local", "where the autoscaler's workers run: local processes, or asg://<group> (EC2 Auto Scaling)")
    min_workers: int = _setting(0, "fewest workers the autoscaler keeps")
    max_workers: int = _setting(
        doc="most workers the autoscaler starts", shown="CPU count", default_factory=lambda: os.cpu_count() or 1
    )
    target_per_worker: int = _setting(4, "backlog + in-flight messages per worker")
    scale_in_delay: float = _setting(10.0, "seconds a lower demand must last before scaling in (to the most it needed)")
    scale_to_zero_delay: float = _setting(4.0, "seconds without a request before the last worker stops")
    scale_in_step: float = _setting(0.25, "most of the workers one scale-in stops, as a share (one scale-in a second)")
    blind_scale_to_zero_delay: float = _setting(
        60.0, "the same where the queue cannot tell when it last got a request (SQS): seconds without work seen"
    )
    poll_interval: float = _setting(0.25, "autoscaler tick, seconds")

    @cached_property
    def model_path(self) -> Path:
        if self.model_dir:
            return self.model_dir
        return self.data_dir / ("model" if self.model == "lite0" else f"model-{self.model}")

    @cached_property
    def served_models(self) -> list[str]:
        """The models this deployment serves, the default first: IMGREC_MODELS, or IMGREC_MODEL alone."""
        listed = [m.strip() for m in self.models.split(",") if m.strip()]
        for m in listed:
            _model_name(m)
        return list(dict.fromkeys(listed)) or [self.model]

    @property
    def default_model(self) -> str:
        return self.served_models[0]

    def for_model(self, model: str) -> Settings:
        """The settings of a process that serves `model` (a worker of its pool, a look at its folder)."""
        return self if model == self.model else self.with_overrides(model=model)

    @cached_property
    def store_url(self) -> str:
        return self.store or (self.data_dir / "store").resolve().as_uri()

    @cached_property
    def queue_url(self) -> str:
        return self.queue or "sqlite://" + str((self.data_dir / "queue.sqlite3").resolve())

    @property
    def hung_after(self) -> float:
        """Seconds without its loop going round after which a worker is taken for hung: the
        longest legal batch (every image at its time limit) twice, and a visibility timeout."""
        return 2 * self.image_timeout * self.max_batch + self.visibility_timeout

    @property
    def keys(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with the given settings changed (None: left as it is), validated."""
        changed = {k: v for k, v in values.items() if v is not None}
        if not changed:
            return self
        unknown = set(changed) - set(type(self).model_fields)
        if unknown:
            raise TypeError(f"no such settings: {sorted(unknown)}")
        return type(self).model_validate({**self.model_dump(), **changed})

    def to_env(self) -> dict[str, str]:
        """Every setting as an IMGREC_* variable, for a child process to read back."""
        return {
            ENV_PREFIX + name.upper(): str(value)
            for name, value in self.model_dump().items()
            if value is not None
        }


def markdown_table() -> str:
    """The README's configuration table (`imgrec config --markdown`)."""
    rows = [f"| `{var}` | {default} | {meaning} |" for var, default, meaning in documented()]
    return "\n".join(["| variable | default | meaning |", "| --- | --- | --- |", *rows])


def documented() -> list[tuple[str, str, str]]:
    """(variable, default as shown, meaning) for every setting, in order: the README's
    configuration table, which a test holds to this."""
    rows = []
    for name, f in Settings.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        shown = extra.get("shown")
        if shown is None:
            shown = "" if f.default in (None, "") else str(f.default)
        rows.append((ENV_PREFIX + name.upper(), str(shown), f.description or ""))
    return rows
