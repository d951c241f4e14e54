"""The model through the store: push once, pull anywhere, nothing damaged ever served.

Small stand-in models (a few bytes and a manifest) keep these fast; the real model
travels the same way in `system/test_install`."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import asdict, replace

import pytest

from fakes import fake_model
from imgrec.engine import registry
from imgrec.engine.model import load_manifest
from imgrec.errors import ModelMissing
from imgrec.stores import open_store


@pytest.fixture
def store():
    return open_store(f"memory://{uuid.uuid4().hex}")


def test_push_once_pull_anywhere(tmp_path, store):
    built = fake_model(tmp_path / "built")
    assert registry.push(store, tmp_path / "built") == (built, True)
    assert registry.push(store, tmp_path / "built") == (built, False)  # already there: nothing sent
    assert set(store.keys("models/")) == {
        "models/efficientnet-lite0/manifest.json",
        "models/efficientnet-lite0/versions.json",
        f"models/efficientnet-lite0/{built.sha256}/manifest.json",
        f"models/efficientnet-lite0/{built.sha256}/model.onnx",
    }
    here = tmp_path / "worker-host" / "model"
    assert registry.pull(store, here) == (built, True)
    assert (here / "model.onnx").read_bytes() == b"not really onnx"
    assert load_manifest(here, verify=True) == built
    assert registry.pull(store, here) == (built, False)


def test_a_new_push_is_served_and_a_pull_follows_it(tmp_path, store):
    old = fake_model(tmp_path / "v1", b"version one")
    registry.push(store, tmp_path / "v1")
    registry.pull(store, tmp_path / "host")
    new = fake_model(tmp_path / "v2", b"version two")
    registry.push(store, tmp_path / "v2", tag="v2")
    assert store.exists(registry.file_key(old)), "the old version is kept, for a rollback"
    assert registry.pull(store, tmp_path / "host") == (replace(new, tag="v2"), True)
    assert (tmp_path / "host" / "model.onnx").read_bytes() == b"version two"
    assert [(v.sha256, v.tag, v.size) for v in registry.versions(store, "efficientnet-lite0")] == [
        (old.sha256, "", 11), (new.sha256, "v2", 11)
    ]


def test_rollback_serves_the_version_before_and_a_pull_follows_it(tmp_path, store):
    old = fake_model(tmp_path / "v1", b"version one")
    registry.push(store, tmp_path / "v1")
    new = fake_model(tmp_path / "v2", b"version two")
    registry.push(store, tmp_path / "v2")
    registry.pull(store, tmp_path / "host")
    assert registry.rollback(store, "efficientnet-lite0") == old
    assert registry.remote_manifest(store) == old
    assert registry.pull(store, tmp_path / "host") == (old, True)
    assert (tmp_path / "host" / "model.onnx").read_bytes() == b"version one"
    with pytest.raises(ModelMissing, match="has no version pushed before"):
        registry.rollback(store, "efficientnet-lite0")
    # the newer version stays, listed, for a push to serve again
    assert [v.sha256 for v in registry.versions(store, "efficientnet-lite0")] == [old.sha256, new.sha256]
    assert store.exists(registry.file_key(new))
    assert registry.push(store, tmp_path / "v2") == (new, True)
    assert registry.versions(store, "efficientnet-lite0")[-1].sha256 == new.sha256


def test_rollback_goes_further_back_each_time(tmp_path, store):
    pushed = [fake_model(tmp_path / f"v{i}", f"version {i}".encode()) for i in range(3)]
    for i in range(3):
        registry.push(store, tmp_path / f"v{i}")
    assert registry.rollback(store, "efficientnet-lite0") == pushed[1]
    assert registry.rollback(store, "efficientnet-lite0") == pushed[0]
    assert registry.served(store, "efficientnet-lite0") == pushed[0]


def test_only_the_latest_versions_are_kept(tmp_path, store):
    pushed = [fake_model(tmp_path / f"v{i}", f"version {i}".encode()) for i in range(registry.KEEP + 2)]
    for i in range(len(pushed)):
        registry.push(store, tmp_path / f"v{i}")
    kept = [m for m in pushed if store.exists(registry.file_key(m))]
    assert kept == pushed[-registry.KEEP:]
    assert [v.sha256 for v in registry.versions(store, "efficientnet-lite0")] == [m.sha256 for m in kept]
    assert registry.names(store) == ["efficientnet-lite0"]


def test_push_and_pull_stream_the_file(tmp_path, monkeypatch):
    store = open_store((tmp_path / "store").as_uri())
    get, put = type(store).get, type(store).put

    def whole(real):
        def call(self, key, *args):
            assert key.endswith(".json"), f"{key} read or written whole"
            return real(self, key, *args)
        return call

    monkeypatch.setattr(type(store), "get", whole(get))
    monkeypatch.setattr(type(store), "put", whole(put))
    fake_model(tmp_path / "built", b"x" * 3_000_000)
    registry.push(store, tmp_path / "built")
    registry.pull(store, tmp_path / "host")
    assert (tmp_path / "host" / "model.onnx").stat().st_size == 3_000_000


def test_a_damaged_download_is_refused_and_nothing_is_left(tmp_path, store):
    built = fake_model(tmp_path / "built")
    registry.push(store, tmp_path / "built")
    store.put(registry.file_key(built), b"not really onnx, bit-flipped")
    with pytest.raises(ModelMissing, match=r"refused the model in the store: .* \(damaged\); push it again"):
        registry.pull(store, tmp_path / "host")
    host = tmp_path / "host"
    assert not host.exists() or list(host.iterdir()) == []  # no half file, no manifest, no temporary


def test_a_damaged_download_never_replaces_a_good_model(tmp_path, store):
    fake_model(tmp_path / "v1", b"version one")
    registry.push(store, tmp_path / "v1")
    registry.pull(store, tmp_path / "host")
    new = fake_model(tmp_path / "v2", b"version two")
    registry.push(store, tmp_path / "v2")
    store.put(registry.file_key(new), b"garbage")
    with pytest.raises(ModelMissing, match="damaged"):
        registry.pull(store, tmp_path / "host")
    assert (tmp_path / "host" / "model.onnx").read_bytes() == b"version one"
    assert load_manifest(tmp_path / "host", verify=True).sha256 != new.sha256


def test_no_model_in_the_store_says_how_to_push_one(tmp_path, store):
    with pytest.raises(ModelMissing, match=r"no model 'efficientnet-lite0' in the store .*imgrec model push"):
        registry.pull(store, tmp_path / "host")
    with pytest.raises(ModelMissing, match=r"^no model in .*host, and no model 'efficientnet-lite0' in the store"):
        registry.obtain(tmp_path / "host", store)


def test_obtain_uses_the_model_here_without_asking_the_store(tmp_path):
    here = fake_model(tmp_path / "model")
    nowhere = open_store((tmp_path / "no-store").as_uri())
    assert registry.obtain(tmp_path / "model", nowhere) == here


def test_wait_for_says_the_problem_once_and_takes_the_model_once_pushed(tmp_path, store):
    heard, stop = [], threading.Event()
    fake_model(tmp_path / "built")
    pusher = threading.Timer(0.3, registry.push, (store, tmp_path / "built"))
    pusher.start()
    manifest = registry.wait_for(tmp_path / "host", store, stop, heard.append, every=0.05)
    assert manifest is not None and (tmp_path / "host" / "model.onnx").is_file()
    assert len(heard) == 2 and heard[0].startswith("no model in") and heard[1] == ""


def test_wait_for_ends_when_asked_to_stop(tmp_path, store):
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert registry.wait_for(tmp_path / "host", store, stop, lambda _: None, every=0.05) is None


def test_a_pull_keeps_what_was_measured_here_when_the_store_serves_the_same(tmp_path, store):
    fake_model(tmp_path / "built")
    registry.push(store, tmp_path / "built")
    here = tmp_path / "built"
    measured = replace(load_manifest(here), accuracy={"top1": 0.9})
    (here / "manifest.json").write_text(json.dumps(asdict(measured)))
    assert registry.pull(store, here) == (measured, False), "the same file, labels and input: nothing to take"
    assert registry.push(store, here)[1] is False
