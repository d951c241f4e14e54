"""The model through the store: built once anywhere the export extra is, `push`ed, and `pull`ed by
every host that serves (a worker host needs only the serving install and the store).

    models/<name>/manifest.json        the manifest of the model served under <name>
                                       (the variant's name: efficientnet-lite0, ...-int8)
    models/<name>/<sha256>/<file>      its ONNX file, under its own hash

A push writes the file first and the manifest last, and a new version's file never
overwrites an old one's, so a reader never pairs a manifest with another push's
file. A pulled file is checked against the manifest's sha256 before it is moved
into place: a damaged download is refused, never served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from imgrec.engine.model import MANIFEST_FILE, Manifest, load_manifest, manifest_from, write_atomic
from imgrec.engine.variants import DEFAULT
from imgrec.engine.variants import variant as variant_of
from imgrec.errors import BackendError, ModelMissing, NotFound
from imgrec.messages import MODEL_KEYS
from imgrec.stores import ObjectStore

log = logging.getLogger("imgrec.model")


def manifest_key(name: str) -> str:
    return MODEL_KEYS["manifest"].format(name=name)


def file_key(manifest: Manifest) -> str:
    return MODEL_KEYS["file"].format(name=manifest.name, sha256=manifest.sha256, file=manifest.file)


def push_hint(variant: str = DEFAULT) -> str:
    flag = "" if variant == DEFAULT else f" --variant {variant}"
    env = "" if variant == DEFAULT else f"IMGREC_MODEL={variant} "
    return f"build and push one where the export extra is installed: imgrec model build{flag} && {env}imgrec model push"


def remote_manifest(store: ObjectStore, variant: str = DEFAULT) -> Manifest:
    """The manifest of the model pushed for `variant`; ModelMissing if there is none."""
    name = variant_of(variant).name
    try:
        return manifest_from(json.loads(store.get(manifest_key(name))))
    except NotFound:
        raise ModelMissing(f"no model {name!r} in the store ({manifest_key(name)}); {push_hint(variant)}") from None
    except (ValueError, TypeError) as exc:
        raise ModelMissing(f"the manifest {manifest_key(name)} in the store is not one ({exc}); push it again") from None


def push(store: ObjectStore, model_dir: Path) -> tuple[Manifest, bool]:
    """Put the model of `model_dir` in the store under its name; (manifest, pushed now).
    Files of earlier pushes under the same name are removed once the manifest moved on."""
    manifest = load_manifest(model_dir, verify=True)
    try:
        if remote_manifest(store, manifest.variant).sha256 == manifest.sha256 and store.exists(file_key(manifest)):
            return manifest, False
    except ModelMissing:
        pass
    with (model_dir / manifest.file).open("rb") as f:
        store.put_file(file_key(manifest), f, "application/octet-stream")
    store.put(manifest_key(manifest.name), json.dumps(asdict(manifest), indent=1).encode(), "application/json")
    current = {file_key(manifest), manifest_key(manifest.name)}
    folder = manifest_key(manifest.name).rsplit("/", 1)[0] + "/"
    store.delete_many([k for k in store.keys(folder) if k not in current])
    return manifest, True


def pull(store: ObjectStore, model_dir: Path, variant: str = DEFAULT) -> tuple[Manifest, bool]:
    """Make `model_dir` hold the model pushed for `variant`; (manifest, fetched now).
    Raises ModelMissing when the store has none, or only a damaged one."""
    name = variant_of(variant).name
    for attempt in range(2):
        remote = remote_manifest(store, variant)
        try:
            local = load_manifest(model_dir, verify=True)
            if local.sha256 == remote.sha256:
                return local, False
        except ModelMissing:
            pass
        try:
            data = store.get(file_key(remote))
            break
        except NotFound:  # a push replaced it meanwhile: read the new manifest, once
            if attempt:
                raise ModelMissing(
                    f"the store has a manifest for {name!r} but not its file {file_key(remote)}; push it again: imgrec model push"
                ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != remote.sha256:
        raise ModelMissing(
            f"refused the model in the store: {file_key(remote)} has sha256 {digest[:12]}..., its manifest says "
            f"{remote.sha256[:12]}... (damaged); push it again: imgrec model push"
        )
    model_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=model_dir, suffix=".onnx.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, model_dir / remote.file)  # the file first, its manifest last
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    write_atomic(model_dir / MANIFEST_FILE, json.dumps(asdict(remote), indent=1))
    return remote, True


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
