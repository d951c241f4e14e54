"""One settings object for every part of imgrec, read from ``IMGREC_*`` variables."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "imgrec"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGREC_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    # Where the exported ONNX model and its manifest live; defaults to <data_dir>/model.
    model_dir: Path | None = None
    # Adapters are chosen by URL; empty means the embedded default under data_dir.
    store: str = ""
    queue: str = ""

    # Web tier
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = 20 * 1024 * 1024
    max_files_per_request: int = 100
    max_pixels: int = 40_000_000
    request_timeout: float = 120.0
    # Past this many waiting requests, new uploads get 429 (nothing accepted is dropped).
    max_backlog: int = 2000
    # Uploads read and stored at once; the rest wait unread, which bounds memory.
    max_concurrent_uploads: int = 32
    # Comma-separated keys; when set, every API call needs one (X-API-Key or Bearer).
    api_keys: str = ""

    # Workers
    max_batch: int = 16
    max_wait_ms: float = 2.0
    visibility_timeout: float = 30.0
    max_receives: int = 5
    worker_idle_timeout: float = 30.0
    # Longest a worker may spend decoding one image (or inferring, per image in a batch);
    # past it the worker ends and the image is retried alone, then dead-lettered.
    image_timeout: float = 10.0
    intra_op_threads: int = 1

    # Autoscaler; the actuator is "local" (worker processes here) or asg://<group> (EC2).
    actuator: str = "local"
    min_workers: int = 0
    max_workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    target_per_worker: int = 4
    scale_in_delay: float = 30.0
    poll_interval: float = 0.25

    @cached_property
    def model_path(self) -> Path:
        return self.model_dir or self.data_dir / "model"

    @cached_property
    def store_url(self) -> str:
        return self.store or (self.data_dir / "store").resolve().as_uri()

    @cached_property
    def queue_url(self) -> str:
        return self.queue or "sqlite://" + str((self.data_dir / "queue.sqlite3").resolve())
