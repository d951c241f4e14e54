"""The model through the store: built (or added from a folder) once anywhere, `push`ed, and
`pull`ed by every host that serves (a worker host needs only the serving install and the store).

    models/<name>/manifest.json            the version served now under <name> (a built-in
                                           variant's name, efficientnet-lite0, ...-int8, or
                                           the name a model was added under)
    models/<name>/versions.json            the versions kept, in the order they were pushed
    models/<name>/<sha256>/<file>          each version's ONNX file, under its own hash
    models/<name>/<sha256>/manifest.json   and its manifest

A version is its file's sha256. A push writes the file and its manifest first and the
current manifest last, and a version's file never overwrites another's, so a reader
never pairs a manifest with another push's file. `rollback` makes the version pushed
before the served one current again the same way; the KEEP latest versions are kept.
Files travel a part at a time (`ObjectStore.put_file`, `get_file`), and a pulled file
is checked against the manifest's sha256 before it is moved into place: a damaged
download is refused, never served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from imgrec.engine.model import MANIFEST_FILE, Manifest, load_manifest, manifest_from, write_atomic
from imgrec.engine.variants import DEFAULT, VARIANTS
from imgrec.errors import BackendError, ModelMissing, NotFound
from imgrec.messages import MODEL_KEYS, MODELS
from imgrec.stores import ObjectStore

log = logging.getLogger("imgrec.model")
KEEP = 5  # versions kept in the store for a rollback; older files are removed


def store_name(model: str) -> str:
    """The name in the store of what IMGREC_MODEL names: a built-in variant's network name, or
    the name a model was added under."""
    return VARIANTS[model].name if model in VARIANTS else model


def manifest_key(name: str) -> str:
    return MODEL_KEYS["manifest"].format(name=name)


def versions_key(name: str) -> str:
    return MODEL_KEYS["versions"].format(name=name)


def version_key(name: str, sha256: str) -> str:
    return MODEL_KEYS["version"].format(name=name, sha256=sha256)


def file_key(manifest: Manifest) -> str:
    return MODEL_KEYS["file"].format(name=manifest.name, sha256=manifest.sha256, file=manifest.file)


def push_hint(variant: str = DEFAULT) -> str:
    if variant not in VARIANTS:
        return f"add and push it where its folder is: imgrec model add DIR --name {variant}"
    flag = "" if variant == DEFAULT else f" --variant {variant}"
    env = "" if variant == DEFAULT else f"IMGREC_MODEL={variant} "
    return f"build and push one where the export extra is installed: imgrec model build{flag} && {env}imgrec model push"


def remote_manifest(store: ObjectStore, variant: str = DEFAULT) -> Manifest:
    """The manifest of the version served now for `variant`; ModelMissing if there is none."""
    name = store_name(variant)
    try:
        return manifest_from(json.loads(store.get(manifest_key(name))))
    except NotFound:
        raise ModelMissing(f"no model {name!r} in the store ({manifest_key(name)}); {push_hint(variant)}") from None
    except (ValueError, TypeError) as exc:
        raise ModelMissing(f"the manifest {manifest_key(name)} in the store is not one ({exc}); push it again") from None


@dataclass(frozen=True)
class Version:
    """One entry of versions.json: a version pushed."""

    sha256: str
    tag: str = ""
    size: int = 0
    pushed_at: float = 0.0


def versions(store: ObjectStore, name: str) -> list[Version]:
    """The versions kept under `name`, in the order they were last pushed (the served one is the
    current manifest's: a rollback serves an earlier one); a model pushed before versions were
    recorded has its current one only."""
    try:
        return [Version(**v) for v in json.loads(store.get(versions_key(name)))]
    except NotFound:
        pass
    current = served(store, name)
    return [Version(current.sha256, current.tag)] if current else []


def served(store: ObjectStore, name: str) -> Manifest | None:
    """The manifest of the version served now under `name`, None if there is none."""
    try:
        return manifest_from(json.loads(store.get(manifest_key(name))))
    except NotFound:
        return None


def names(store: ObjectStore) -> list[str]:
    """The names that have a model in the store."""
    return sorted({k[len(MODELS):].split("/", 1)[0] for k in store.keys(MODELS) if k.endswith("/manifest.json")})


def version_manifest(store: ObjectStore, name: str, sha256: str) -> Manifest:
    """The manifest of one version; the current manifest for a version pushed before versions had
    their own. ModelMissing if the store has neither."""
    for key in (version_key(name, sha256), manifest_key(name)):
        try:
            manifest = manifest_from(json.loads(store.get(key)))
        except NotFound:
            continue
        if manifest.sha256 == sha256:
            return manifest
    raise ModelMissing(f"the store has no version {sha256[:12]} of {name!r}")


def push(store: ObjectStore, model_dir: Path, tag: str = "") -> tuple[Manifest, bool]:
    """Make the model of `model_dir` the version served under its name; (manifest, pushed now).
    The file is streamed; a version pushed again moves to the end of the list; versions
    beyond the KEEP latest are removed."""
    manifest = load_manifest(model_dir, verify=True)
    history = versions(store, manifest.name)
    before = next((v for v in history if v.sha256 == manifest.sha256), None)
    if tag or before:  # no tag given: a version pushed before keeps its own
        manifest = replace(manifest, tag=tag or (before.tag if before else ""))
    current = served(store, manifest.name)
    if current is not None and current.serves_as(manifest) and store.exists(file_key(manifest)):
        return manifest, False  # the same file, labels, input, output and tag are served already
    if not store.exists(file_key(manifest)):
        with (model_dir / manifest.file).open("rb") as f:
            store.put_file(file_key(manifest), f, "application/octet-stream")
    size = (model_dir / manifest.file).stat().st_size
    entry = Version(manifest.sha256, manifest.tag, size, round(time.time(), 3))
    _make_current(store, manifest, [*(v for v in history if v.sha256 != manifest.sha256), entry])
    return manifest, True


def rollback(store: ObjectStore, name: str) -> Manifest:
    """Serve the version pushed before the one served now (a second rollback goes further back;
    the newer versions stay, for a push to serve again); ModelMissing if there is none."""
    history = versions(store, name)
    current = served(store, name)
    at = next((i for i, v in enumerate(history) if current and v.sha256 == current.sha256), len(history))
    if at < 1:
        raise ModelMissing(f"{name!r} has no version pushed before {current.short_hash if current else 'none'} to roll back to")
    previous = version_manifest(store, name, history[at - 1].sha256)
    if not store.exists(file_key(previous)):
        raise ModelMissing(f"the file of {name}@{previous.short_hash} is gone from the store; push that version again")
    _make_current(store, previous, history)
    return previous


def _make_current(store: ObjectStore, manifest: Manifest, history: list[Version]) -> None:
    kept = {v.sha256 for v in history[-KEEP:]} | {manifest.sha256}  # the KEEP latest, and the one served
    history = [v for v in history if v.sha256 in kept]
    data = json.dumps(asdict(manifest), indent=1).encode()
    store.put(version_key(manifest.name, manifest.sha256), data, "application/json")
    store.put(versions_key(manifest.name), json.dumps([asdict(v) for v in history], indent=1).encode(), "application/json")
    store.put(manifest_key(manifest.name), data, "application/json")  # last: readers follow it
    folder = f"{MODELS}{manifest.name}/"
    fixed = {manifest_key(manifest.name), versions_key(manifest.name)}
    store.delete_many([k for k in store.keys(folder) if k not in fixed and k[len(folder):].split("/", 1)[0] not in kept])


class _Hashing:
    """A binary file that hashes what is written through it."""

    def __init__(self, file) -> None:  # noqa: ANN001 - any binary file
        self.file, self.hash = file, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.file.write(data)


def pull(store: ObjectStore, model_dir: Path, variant: str = DEFAULT) -> tuple[Manifest, bool]:
    """Make `model_dir` hold the version served for `variant`; (manifest, fetched now). The file
    is streamed to a temporary one and its sha256 checked before it is moved into place.
    Raises ModelMissing when the store has none, or only a damaged one."""
    name = store_name(variant)
    for attempt in range(2):
        remote = remote_manifest(store, variant)
        try:
            local = load_manifest(model_dir, verify=True)
            if local.sha256 == remote.sha256 and local.name == remote.name:
                if local.serves_as(remote):
                    return local, False
                write_atomic(model_dir / MANIFEST_FILE, json.dumps(asdict(remote), indent=1))
                return remote, True  # the same file, its labels, preprocessing or tag changed
        except ModelMissing:
            pass
        model_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=model_dir, suffix=".onnx.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                hashing = _Hashing(f)
                try:
                    store.get_file(file_key(remote), hashing)  # type: ignore[arg-type]  # a writable file
                except NotFound:  # a push replaced it meanwhile: read the new manifest, once
                    if attempt:
                        raise ModelMissing(
                            f"the store has a manifest for {name!r} but not its file {file_key(remote)}; push it again"
                        ) from None
                    continue
                f.flush()
                os.fsync(f.fileno())
            digest = hashing.hash.hexdigest()
            if digest != remote.sha256:
                raise ModelMissing(
                    f"refused the model in the store: {file_key(remote)} has sha256 {digest[:12]}..., its manifest says "
                    f"{remote.sha256[:12]}... (damaged); push it again: imgrec model push"
                )
            os.replace(tmp, model_dir / remote.file)  # the file first, its manifest last
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        write_atomic(model_dir / MANIFEST_FILE, json.dumps(asdict(remote), indent=1))
        return remote, True
    raise AssertionError("unreachable")  # pragma: no cover


def has_model(model_dir: Path) -> bool:
    return (model_dir / MANIFEST_FILE).is_file()


def obtain(model_dir: Path, store: ObjectStore, variant: str = DEFAULT) -> Manifest:
    """The model here, pulled from the store first if it is not (a worker's or an autoscaler's
    start). ModelMissing, saying what to do, when neither has one."""
    try:
        return load_manifest(model_dir, variant=variant)
    except ModelMissing:
        pass
    try:
        manifest, _ = pull(store, model_dir, variant)
    except ModelMissing as exc:
        raise ModelMissing(f"no model in {model_dir}, and {exc}") from None
    log.info("model %s@%s pulled from the store into %s", manifest.name, manifest.short_hash, model_dir)
    return manifest


def wait_for(
    model_dir: Path,
    store: ObjectStore,
    stop: threading.Event,
    waiting: Callable[[str], None],
    variant: str = DEFAULT,
    every: float = 10.0,
) -> Manifest | None:
    """`obtain`, again every `every` seconds until it succeeds (None if `stop` is set first).
    `waiting` hears the problem once, when it starts, and "" when it is over: one log line,
    not a crash loop, for a host started before anyone pushed a model."""
    said = ""
    while True:
        try:
            manifest = obtain(model_dir, store, variant)
        except (ModelMissing, BackendError) as exc:
            problem = str(exc) if isinstance(exc, ModelMissing) else f"no model in {model_dir}, and the store fails: {exc}"
            if problem != said:
                said = problem
                log.error("waiting for a model: %s", said)
                waiting(said)
            if stop.wait(every):
                return None
            continue
        if said:
            waiting("")
        return manifest
