"""A new version pushed while a worker runs is prepared beside the one serving and taken up
between two batches; a rollback the same way."""

from __future__ import annotations

import uuid

from colour_model import plain_image, write_colour_model
from imgrec.engine import folder, registry
from imgrec.engine.classifier import Classifier
from imgrec.stores import open_store
from imgrec.worker.rollout import ModelWatch


def _version(tmp_path, name, labels, sharpness):
    src = write_colour_model(tmp_path / name, labels=labels, sharpness=sharpness)
    return folder.add(src, "colours", tmp_path / f"installed-{name}")


def test_a_pushed_version_is_prepared_then_taken_once_and_a_rollback_too(tmp_path):
    store = open_store(f"memory://{uuid.uuid4().hex}")
    v1 = _version(tmp_path, "v1", ("red", "green", "blue"), 4.0)
    registry.push(store, tmp_path / "installed-v1")
    host = tmp_path / "host"
    registry.pull(store, host, "colours")
    clf = Classifier(host)
    watch = ModelWatch(store, "colours", host, clf, lambda: Classifier(host), every=60)

    watch.look()
    assert watch.take() is None, "nothing new: nothing to take"

    v2 = _version(tmp_path, "v2", ("crimson", "lime", "navy"), 5.0)
    registry.push(store, tmp_path / "installed-v2", tag="second")
    watch.look()
    new = watch.take()
    assert new is not None and new.model_id == f"colours@{v2.short_hash}" and new.manifest.tag == "second"
    assert [p.label for p in new.classify([plain_image((200, 10, 10))])] == ["crimson"]
    assert clf.classify([plain_image((200, 10, 10))])[0].label == "red", "the old one served until taken"
    watch.look()
    assert watch.take() is None, "taken once"

    assert registry.rollback(store, "colours").sha256 == v1.sha256
    watch.look()
    back = watch.take()
    assert back is not None and back.model_id == f"colours@{v1.short_hash}"
    assert back.classify([plain_image((10, 10, 200))])[0].label == "blue"


def test_new_labels_for_the_same_file_are_a_change_too(tmp_path):
    store = open_store(f"memory://{uuid.uuid4().hex}")
    _version(tmp_path, "v1", ("red", "green", "blue"), 4.0)
    registry.push(store, tmp_path / "installed-v1")
    host = tmp_path / "host"
    registry.pull(store, host, "colours")
    watch = ModelWatch(store, "colours", host, Classifier(host), lambda: Classifier(host), every=60)
    _version(tmp_path, "fixed", ("rouge", "vert", "bleu"), 4.0)  # the same graph, its labels corrected
    assert registry.push(store, tmp_path / "installed-fixed")[1], "pushed: the labels changed"
    watch.look()
    new = watch.take()
    assert new is not None and new.classify([plain_image((200, 10, 10))])[0].label == "rouge"
