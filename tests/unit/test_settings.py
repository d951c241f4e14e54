"""Choosing adapters by URL, and what a user is told when something is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from imgrec.actuators import open_actuator
from imgrec.errors import MissingExtra
from imgrec.queues import open_queue
from imgrec.settings import Settings
from imgrec.stores import open_store


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
    checkout = Path(__file__).resolve().parents[2]  # these tests run from a checkout: no index has imgrec
    with pytest.raises(MissingExtra, match=rf"pip install -e '{checkout}\[{extra}\]'$"):
        opener(url)


def test_the_install_command_works_from_where_imgrec_was_installed(monkeypatch, tmp_path):
    from imgrec import errors

    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "imgrec"
    monkeypatch.setattr(errors, "__file__", str(site / "errors.py"))  # as if installed, not a checkout
    wheel = tmp_path / "imgrec-0.1.0-py3-none-any.whl"
    wheel.touch()
    monkeypatch.setattr(errors, "_installed_from", lambda: str(wheel))
    assert errors.install_hint("aws").endswith(f"install '{wheel}[aws]'")
    monkeypatch.setattr(errors, "_installed_from", lambda: None)  # from an index, by name
    assert errors.install_hint("redis").endswith("install 'imgrec[redis]'")


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


def test_defaults_live_in_settings_only():
    from imgrec.autoscaler.policy import ScalingConfig

    s = Settings()
    config = ScalingConfig.from_settings(s)
    assert (config.max_workers, config.target_per_worker, config.scale_in_delay, config.scale_to_zero_delay,
            config.scale_in_step, config.blind_scale_to_zero_delay) == (
        s.max_workers, s.target_per_worker, s.scale_in_delay, s.scale_to_zero_delay, s.scale_in_step,
        s.blind_scale_to_zero_delay,
    )
    with pytest.raises(TypeError):
        ScalingConfig()  # no defaults of its own


def test_settings_travel_to_a_child_process_whole(tmp_path):
    s = Settings(data_dir=tmp_path, max_batch=3, scale_in_delay=7.5, api_keys="a,b")
    import os

    saved = dict(os.environ)
    try:
        os.environ.update(s.to_env())
        child = Settings()  # what a child process reads from its environment
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert child.model_dump() == s.model_dump()
    assert s.with_overrides(port=None) is s and s.with_overrides(port=9).port == 9
    with pytest.raises(TypeError):
        s.with_overrides(no_such_setting=1)


@pytest.mark.parametrize("given, seconds", [("7d", 604800), ("12h", 43200), ("30m", 1800), ("45s", 45), ("90", 90), (0, 0)])
def test_durations(given, seconds):
    assert Settings(retention=given).retention == seconds


def test_the_local_store_syncs_what_it_writes(tmp_path, monkeypatch):
    """Each object is flushed to disk and so is the folder that names it (and any folder
    made for it): a written object survives a power loss."""
    import os

    from imgrec.stores import open_store

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    store = open_store((tmp_path / "store").as_uri())
    store.put("inputs/job1/cat.png", b"meow")
    root = str((tmp_path / "store").resolve())
    assert synced[0].startswith(root + "/inputs/job1/.tmp-")  # the file, before its rename
    assert set(synced[1:]) >= {root + "/inputs/job1", root + "/inputs", root}


def test_several_models_are_served_the_first_the_default(tmp_path):
    from imgrec.messages import request_queue_name

    one = Settings(data_dir=tmp_path, model="lite0-int8")
    assert one.served_models == ["lite0-int8"] and one.default_model == "lite0-int8"
    two = Settings(data_dir=tmp_path, models="colours, lite0,colours")
    assert two.served_models == ["colours", "lite0"] and two.default_model == "colours"
    assert two.for_model("colours").model_path == tmp_path / "model-colours"
    assert [request_queue_name(m, two.default_model) for m in two.served_models] == ["requests", "requests-lite0"]
    with pytest.raises(ValueError, match="a built-in variant"):
        _ = Settings(data_dir=tmp_path, models="lite0,Bad Name").served_models
