"""The exported model: idempotent build, manifest, and damage detection."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil

import pytest

from imgrec.engine.model import MANIFEST_FILE, build, load_manifest
from imgrec.errors import ModelMissing


def test_build_is_idempotent_and_manifest_is_complete(model_dir):
    manifest, built = build(model_dir)
    assert not built
    assert manifest.name == "efficientnet-lite0"
    assert (manifest.input_size, manifest.resize_size) == (224, 256)
    assert manifest.mean == (0.498,) * 3 and manifest.std == (0.502,) * 3
    assert hashlib.sha256((model_dir / manifest.file).read_bytes()).hexdigest() == manifest.sha256
    labels = manifest.labels
    assert len(labels) == 1000 and labels[0] == {"index": 0, "wnid": "n01440764", "label": "tench"}
    assert labels[282]["label"] == "tiger cat" and labels[999]["wnid"] == "n15075141"


def test_damaged_model_is_detected_and_rebuilt(model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    manifest = load_manifest(copy, verify=True)
    with (copy / manifest.file).open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00" * 16)
    with pytest.raises(ModelMissing, match="imgrec model build"):
        load_manifest(copy, verify=True)
    rebuilt, built = build(copy)
    assert built and load_manifest(copy, verify=True).sha256 == rebuilt.sha256


def test_missing_model_names_the_command(tmp_path):
    with pytest.raises(ModelMissing, match="imgrec model build"):
        load_manifest(tmp_path)
    assert not (tmp_path / MANIFEST_FILE).exists()


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_a_model_folder_this_process_may_not_write_is_loaded_without_its_lock(tmp_path, monkeypatch, code):
    """The image's model is owned by root and its workers run as another user: the lock file
    cannot be made there, and nothing of theirs can replace the model either (the
    containers' test found workers crash-looping on it)."""
    from pathlib import Path

    from imgrec.engine import model

    real_open = Path.open

    def refusing(self, mode="r", *args, **kwargs):
        if self.name == ".lock":
            raise OSError(code, os.strerror(code), str(self))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing)
    entered = []
    with model.folder_lock(tmp_path):
        entered.append(True)
    assert entered == [True]
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError), model.folder_lock(tmp_path):  # a full disk is not a read-only folder
        pass
