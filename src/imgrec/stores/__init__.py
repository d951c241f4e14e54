"""The object store: its port (`base`) and the adapters, chosen by URL: ``file://``,
``s3://``, ``memory://`` (each in its own module, imported when chosen)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

from imgrec.errors import ConfigError
from imgrec.settings import Settings
from imgrec.stores.base import ObjectStore, Staged, check_key

__all__ = ["ObjectStore", "Staged", "check_key", "open_store"]
DEFAULT_TIMEOUT: float = Settings.model_fields["backend_timeout"].default


def open_store(url: str, timeout: float = DEFAULT_TIMEOUT) -> ObjectStore:
    """The adapter for a URL, e.g. ``file:///var/lib/imgrec/store``. `timeout`: seconds a
    call may take before it fails as an outage, where the adapter can bound it (S3)."""
    scheme = urlparse(url).scheme
    adapter: Callable[..., ObjectStore]
    if scheme == "file":
        from imgrec.stores.local import LocalStore as adapter
    elif scheme == "s3":
        from imgrec.stores.s3 import S3Store as adapter
    elif scheme == "memory":
        from imgrec.stores.memory import MemoryStore as adapter
    else:
        raise ConfigError(f"unknown store URL {url!r}: supported schemes are file:// and s3://")
    return adapter(url, timeout=timeout)
