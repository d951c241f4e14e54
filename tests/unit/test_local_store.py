"""The local store's writes: all or nothing per object, and no temporary file left behind."""

from __future__ import annotations

import os

import pytest

from imgrec.errors import BackendUnavailable
from imgrec.stores import local
from imgrec.stores.local import LocalStore


def _leftovers(root) -> list[str]:
    return [name for _, _, files in os.walk(root) for name in files if name.startswith(".tmp-")]


def test_a_rename_that_fails_midway_leaves_no_temporary_file(tmp_path, monkeypatch):
    store = LocalStore((tmp_path / "s").as_uri())
    real_replace, calls = os.replace, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(local.os, "replace", second_fails)
    items = [(f"outputs/{i}.json", b"{}", "application/json") for i in range(3)]
    with pytest.raises(BackendUnavailable):
        store.put_many(items)
    assert store.get("outputs/0.json") == b"{}" and not store.exists("outputs/1.json")
    assert _leftovers(tmp_path) == []


def test_a_write_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    store = LocalStore((tmp_path / "s").as_uri())

    def disk_full(fd):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(local.os, "fsync", disk_full)
    with pytest.raises(BackendUnavailable):
        store.put_many([("inputs/j1/a.jpg", b"x", "image/jpeg"), ("pending/j1.json", b"{}", "application/json")])
    assert _leftovers(tmp_path) == [] and list(store.keys()) == []
