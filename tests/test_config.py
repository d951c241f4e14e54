"""Choosing adapters by URL, and what a user is told when something is missing."""

from __future__ import annotations

import sys

import pytest

from imgrec._optional import MissingExtra
from imgrec.actuator import open_actuator
from imgrec.queue import open_queue
from imgrec.settings import Settings
from imgrec.store import open_store


@pytest.mark.parametrize(
    "module, opener, url, extra",
    [
        ("boto3", open_store, "s3://bucket/prefix", "aws"),
        ("boto3", lambda url: open_queue(url, "requests"), "sqs://imgrec", "aws"),
        ("redis", lambda url: open_queue(url, "requests"), "redis://127.0.0.1:1/0", "redis"),
        ("boto3", open_actuator, "asg://workers", "aws"),
    ],
)
def test_missing_extra_names_the_install_command(monkeypatch, module, opener, url, extra):
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(MissingExtra, match=rf"pip install 'imgrec\[{extra}\]'"):
        opener(url)


def test_unknown_urls_say_what_is_supported():
    with pytest.raises(ValueError, match="sqlite://, redis:// and sqs://"):
        open_queue("amqp://localhost", "requests")
    with pytest.raises(ValueError, match="file:// and s3://"):
        open_store("gs://bucket")
    with pytest.raises(ValueError, match="local and asg://"):
        open_actuator("k8s://deployment")


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGREC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IMGREC_MAX_WORKERS", "7")
    monkeypatch.setenv("IMGREC_QUEUE", "redis://example:6379/2")
    s = Settings()
    assert s.max_workers == 7 and s.queue_url == "redis://example:6379/2"
    assert s.store_url == (tmp_path / "store").resolve().as_uri()
    assert s.model_path == tmp_path / "model"
