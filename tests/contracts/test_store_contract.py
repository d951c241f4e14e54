"""The object-store port's contract, run against every adapter."""

from __future__ import annotations

import os

import pytest

from imgrec.errors import BackendUnavailable, BadInput, NotFound
from imgrec.stores import open_store


@pytest.fixture
def store(store_url):
    return open_store(store_url)


def test_put_get_exists_delete(store):
    store.put("inputs/j1/cat.jpg", b"meow")
    assert store.get("inputs/j1/cat.jpg") == b"meow"
    assert store.exists("inputs/j1/cat.jpg")
    store.put("inputs/j1/cat.jpg", b"purr")  # overwrite
    assert store.get("inputs/j1/cat.jpg") == b"purr"
    store.delete("inputs/j1/cat.jpg")
    assert not store.exists("inputs/j1/cat.jpg")
    store.delete("inputs/j1/cat.jpg")  # deleting twice is fine


def test_missing_object(store):
    with pytest.raises(NotFound):
        store.get("outputs/nope.json")
    assert not store.exists("outputs/nope.json")


def test_large_object_round_trip(store):
    data = os.urandom(12 * 1024 * 1024)
    store.put("big/blob.bin", data)
    assert store.get("big/blob.bin") == data


def test_list_with_prefixes(store):
    for key in ["inputs/a/1.jpg", "inputs/a/2.jpg", "inputs/b/1.jpg", "outputs/a.json", "inputs-x/z"]:
        store.put(key, b"x")
    assert list(store.keys("inputs/a/")) == ["inputs/a/1.jpg", "inputs/a/2.jpg"]
    assert list(store.keys("inputs/")) == ["inputs/a/1.jpg", "inputs/a/2.jpg", "inputs/b/1.jpg"]
    assert list(store.keys("inputs")) == [
        "inputs-x/z", "inputs/a/1.jpg", "inputs/a/2.jpg", "inputs/b/1.jpg"
    ]
    assert list(store.keys("nothing/")) == []
    assert len(list(store.keys())) == 5


@pytest.mark.parametrize("key", ["../escape", "/abs", "a/../../b", "a//b", "", "a/\x00b", "a/./b", "sp ace"])
def test_unsafe_keys_are_refused(store, key):
    with pytest.raises(ValueError, match="unsafe object key"):
        store.put(key, b"x")


def test_put_many(store):
    store.put("outputs/a.json", b"old")
    store.put_many([("outputs/a.json", b"1", "application/json"), ("outputs/b.json", b"2", "application/json"),
                    ("inputs/j9/x.jpg", b"3", "image/jpeg")])
    assert [store.get(k) for k in ("outputs/a.json", "outputs/b.json", "inputs/j9/x.jpg")] == [b"1", b"2", b"3"]
    store.put_many([])
    with pytest.raises(BadInput):  # an unsafe key among them: refused, as with put
        store.put_many([("outputs/c.json", b"4", "application/json"), ("../escape", b"5", "text/plain")])


def test_put_file_streams_from_a_file(store, tmp_path):
    data = os.urandom(9 * 1024 * 1024)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    with path.open("rb") as f:
        store.put_file("inputs/j2/big.bin", f)
    assert store.get("inputs/j2/big.bin") == data


def test_an_unreachable_backend_is_backend_unavailable(store_outage):
    url, break_it, heal_it = store_outage
    store = open_store(url)
    store.create()
    store.put("outputs/a.json", b"{}")
    break_it()
    with pytest.raises(BackendUnavailable):
        store.put("inputs/j/big.bin", os.urandom(1 << 20))
    if heal_it:
        heal_it()
        store.put("inputs/j/big.bin", b"back")
        assert store.get("inputs/j/big.bin") == b"back"


def test_scan_gives_modification_times(store):
    import time

    before = time.time() - 5
    for key in ["pending/a.json", "pending/b.json", "outputs/a.json"]:
        store.put(key, b"{}")
    found = list(store.scan("pending/"))
    assert [k for k, _ in found] == ["pending/a.json", "pending/b.json"]
    assert all(before < t < time.time() + 5 for _, t in found)


def test_delete_many(store, monkeypatch):
    import imgrec.stores.s3

    monkeypatch.setattr(imgrec.stores.s3, "_DELETE_BATCH", 7)  # several requests' worth, quickly
    keys = [f"pending/{i:02d}.json" for i in range(20)]
    for k in keys:
        store.put(k, b"{}")
    store.delete_many(keys[1:])
    assert list(store.keys("pending/")) == keys[:1]
    store.delete_many(["pending/never.json"])  # missing ones are fine


def test_a_staged_group_is_committed_whole(store):
    """Group commit: objects staged from several threads at once (their flushes overlap),
    then made visible and durable by one commit."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    blobs = {f"inputs/g{i}/img{i}.jpg": os.urandom(3000 + i) for i in range(12)}
    with ThreadPoolExecutor(4) as pool:
        staged = list(pool.map(lambda kv: store.stage(kv[0], io.BytesIO(kv[1]), "image/jpeg"), blobs.items()))
    store.commit(staged)
    assert {k: store.get(k) for k in blobs} == blobs
    assert [k for k in store.keys("inputs/g") if k not in blobs] == []  # no temporary left behind
    store.commit([])


def test_a_discarded_group_leaves_nothing(store):
    import io

    staged = [store.stage(f"inputs/d{i}/x.jpg", io.BytesIO(b"bytes %d" % i)) for i in range(3)]
    store.discard(staged)
    store.discard([])
    assert list(store.keys("inputs/d")) == []
    assert not store.exists("inputs/d0/x.jpg")


def test_a_staged_object_streams_from_its_file(store, tmp_path):
    data = os.urandom(6 * 1024 * 1024)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    with path.open("rb") as f:
        staged = store.stage("inputs/s1/big.bin", f)
    store.commit([staged])
    assert store.get("inputs/s1/big.bin") == data
