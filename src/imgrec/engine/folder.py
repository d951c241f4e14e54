"""A model as a folder: any ONNX image classifier with its labels, checked before it is served.

    model.onnx           the graph (another name with `file = "..."` in the manifest)
    labels.txt           one label per line, in the order of the output's columns
    imgrec-model.toml    optional: what the input is and how an image is made into it

Without a manifest a folder gets what torchvision and timm exports expect: NCHW float32
input, shorter side to 256, centre crop 224, pixels scaled to [0, 1] then normalised with
ImageNet's mean and std, logits out. The manifest overrides any of them:

    file = "model.onnx"
    [input]
    name = "input"            # default: the graph's only input
    layout = "NCHW"           # or "NHWC"
    type = "float32"          # or "uint8": the pixels as they are (the graph scales them)
    size = 224                # the square the model takes
    resize = 256              # the shorter side before the centre crop, or "straight"
    scale = 0.00392156862745098
    mean = [0.485, 0.456, 0.406]
    std = [0.229, 0.224, 0.225]
    [output]
    kind = "logits"           # or "probabilities"

`add` refuses a folder that would not serve, with one line that says what to fix
(`ModelRefused`), and installs one that would as a model folder of the data directory,
`manifest.json` beside the graph; the built-in variants' folders carry the same
`labels.txt` and `imgrec-model.toml` (`write_spec`), so either kind can be added again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import tomllib
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from imgrec.engine.model import (
    INPUT_TYPES,
    LAYOUTS,
    MANIFEST_FILE,
    OUTPUTS,
    Manifest,
    folder_lock,
    sha256_of,
    write_atomic,
)
from imgrec.engine.variants import VARIANTS
from imgrec.errors import ConfigError

SPEC_FILE = "imgrec-model.toml"
LABELS_FILE = "labels.txt"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULTS: dict[str, Any] = {
    "file": "model.onnx",
    "input": {
        "name": "", "layout": "NCHW", "type": "float32", "size": 224, "resize": 256, "scale": 1 / 255,
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
    },
    "output": {"kind": "logits"},
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_ORT_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}


class ModelRefused(ConfigError):
    """A model folder that would not serve; the message is one line saying what to fix."""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ModelRefused(f"model name {name!r}: use lower-case letters, digits, '.', '_' or '-' (at most 63)")
    if name in VARIANTS or name in {v.name for v in VARIANTS.values()}:
        raise ModelRefused(f"model name {name!r} is a built-in variant's; choose another name")
    return name


def read(folder: Path, name: str, tag: str = "") -> Manifest:
    """The manifest of the model in `folder`, as it would be served under `name` (not yet checked
    against the graph: `check` does that)."""
    check_name(name)
    if not folder.is_dir():
        raise ModelRefused(f"{folder} is not a folder; give the folder that holds model.onnx and labels.txt")
    spec = _spec(folder)
    onnx_path = folder / spec["file"]
    if not onnx_path.is_file():
        raise ModelRefused(
            f"{folder} has no {spec['file']}; put the ONNX graph there (or name it: file = \"...\" in {SPEC_FILE})"
        )
    inp, out = spec["input"], spec["output"]
    resize = inp["resize"]
    return Manifest(
        name=name,
        file=spec["file"],
        sha256=sha256_of(onnx_path),
        input_name=inp["name"],
        input_layout=inp["layout"],
        input_size=inp["size"],
        resize_size=resize if isinstance(resize, int) else inp["size"],
        mean=tuple(inp["mean"]),  # checked: three numbers
        std=tuple(inp["std"]),
        labels=[{"index": i, "wnid": "", "label": label} for i, label in enumerate(_labels(folder))],
        source=f"imgrec model add {folder.resolve()}",
        variant=name,
        input_type=inp["type"],
        resize="straight" if resize == "straight" else "shorter",
        scale=float(inp["scale"]),
        output=out["kind"],
        tag=tag,
    )


def check(manifest: Manifest, onnx_path: Path) -> Manifest:
    """The manifest with its input's name filled in, once the graph loads, takes what the manifest
    says it does, runs on a test batch and gives one score per label; ModelRefused if not."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own kinds for any bad file
        raise ModelRefused(
            f"{onnx_path.name} is not an ONNX graph onnxruntime can load ({_first_line(exc)}); export it again"
        ) from None
    inputs = {i.name: i for i in session.get_inputs()}
    name = manifest.input_name or (next(iter(inputs)) if len(inputs) == 1 else "")
    if name not in inputs:
        said = f"no input {name!r}" if name else f"{len(inputs)} inputs"
        raise ModelRefused(f"the graph has {said}; its inputs: {', '.join(inputs)} (set input.name in {SPEC_FILE})")
    graph_input = inputs[name]
    kind = _ORT_TYPES.get(graph_input.type, graph_input.type)
    if kind != manifest.input_type:
        raise ModelRefused(
            f"the graph's input {name!r} takes {kind}, not {manifest.input_type}; set input.type = \"{kind}\" in {SPEC_FILE}"
            if kind in INPUT_TYPES else f"the graph's input {name!r} takes {kind}; imgrec gives float32 or uint8 images"
        )
    _check_shape(name, list(graph_input.shape), manifest)
    batch = np.zeros(_shape(manifest, 2), dtype=manifest.input_type)
    try:
        (scores, *_) = session.run(None, {name: batch})
    except Exception as exc:  # noqa: BLE001 - any failure of the graph is the folder's
        raise ModelRefused(
            f"the graph failed on a test batch of shape {list(batch.shape)} ({_first_line(exc)}); check it runs in onnxruntime"
        ) from None
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != 2:
        raise ModelRefused(f"the graph's first output has shape {list(scores.shape)} for 2 images; imgrec needs (images, scores)")
    if scores.shape[1] != len(manifest.labels):
        raise ModelRefused(
            f"the model gives {scores.shape[1]} scores per image but {LABELS_FILE} has {len(manifest.labels)} labels; "
            "write one label a line, in the order of the outputs"
        )
    return manifest if manifest.input_name == name else replace(manifest, input_name=name)


def add(folder: Path, name: str, model_dir: Path, tag: str = "") -> Manifest:
    """Check the model of `folder` and install it in `model_dir` under `name` (a folder of the
    same kind, with `manifest.json`); ModelRefused, saying what to fix, if it would not serve."""
    manifest = check(read(folder, name, tag), folder / _spec(folder)["file"])
    if model_dir.resolve() == folder.resolve():
        return manifest  # added again where it is: checked, nothing to copy
    with folder_lock(model_dir):  # workers of this host may be loading from it
        with tempfile.NamedTemporaryFile(dir=model_dir, prefix=".add-", delete=False) as tmp:
            with (folder / manifest.file).open("rb") as src:
                shutil.copyfileobj(src, tmp, 1 << 20)
        os.replace(tmp.name, model_dir / manifest.file)  # the file first, its manifest last
        write_spec(model_dir, manifest)
        write_atomic(model_dir / MANIFEST_FILE, json.dumps(asdict(manifest), indent=1))
    return manifest


def write_spec(model_dir: Path, manifest: Manifest) -> None:
    """labels.txt and imgrec-model.toml for `manifest`: the folder can be added under another name."""
    write_atomic(model_dir / LABELS_FILE, "".join(f"{c['label']}\n" for c in manifest.labels))
    resize = '"straight"' if manifest.resize == "straight" else str(manifest.resize_size)
    lines = [
        f'file = "{manifest.file}"', "", "[input]", f'name = "{manifest.input_name}"', f'layout = "{manifest.input_layout}"',
        f'type = "{manifest.input_type}"', f"size = {manifest.input_size}", f"resize = {resize}", f"scale = {manifest.scale!r}",
        f"mean = {list(manifest.mean)}", f"std = {list(manifest.std)}", "", "[output]", f'kind = "{manifest.output}"', "",
    ]
    write_atomic(model_dir / SPEC_FILE, "\n".join(lines))


def _spec(folder: Path) -> dict[str, Any]:
    path = folder / SPEC_FILE
    given: dict[str, Any] = {}
    if path.is_file():
        try:
            given = tomllib.loads(path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ModelRefused(f"{SPEC_FILE} is not TOML: {exc}") from None
    spec = {"file": given.pop("file", DEFAULTS["file"])}
    for section in ("input", "output"):
        values = given.pop(section, {})
        if not isinstance(values, dict):
            raise ModelRefused(f"{SPEC_FILE}: {section} must be a table ([{section}])")
        unknown = sorted(set(values) - set(DEFAULTS[section]))
        if unknown:
            takes = ", ".join(DEFAULTS[section])
            raise ModelRefused(f"{SPEC_FILE}: unknown key {section}.{unknown[0]}; [{section}] takes: {takes}")
        spec[section] = {**DEFAULTS[section], **values}
    if given:
        raise ModelRefused(f"{SPEC_FILE}: unknown key {sorted(given)[0]}; the top level takes file, [input] and [output]")
    _check_values(spec)
    return spec


def _check_values(spec: dict[str, Any]) -> None:
    inp, out = spec["input"], spec["output"]
    choices = {
        "input.layout": (inp["layout"], LAYOUTS), "input.type": (inp["type"], INPUT_TYPES), "output.kind": (out["kind"], OUTPUTS)
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ModelRefused(f"{SPEC_FILE}: {key} is {value!r}; use one of: {', '.join(allowed)}")
    if not isinstance(spec["file"], str) or "/" in spec["file"] or not spec["file"]:
        raise ModelRefused(f"{SPEC_FILE}: file must name a file in the folder")
    if not isinstance(inp["name"], str):
        raise ModelRefused(f"{SPEC_FILE}: input.name must be a string")
    if not isinstance(inp["size"], int) or not 8 <= inp["size"] <= 4096:
        raise ModelRefused(f"{SPEC_FILE}: input.size is {inp['size']!r}; give the square's side in pixels (8 to 4096)")
    resize = inp["resize"]
    if resize != "straight" and (not isinstance(resize, int) or resize < inp["size"]):
        raise ModelRefused(
            f"{SPEC_FILE}: input.resize is {resize!r}; give the shorter side (at least input.size) or \"straight\""
        )
    if not isinstance(inp["scale"], int | float) or inp["scale"] <= 0:
        raise ModelRefused(f"{SPEC_FILE}: input.scale is {inp['scale']!r}; give a positive number (1/255 for [0, 1])")
    for key in ("mean", "std"):
        v = inp[key]
        if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, int | float) for x in v)) or (key == "std" and 0 in v):
            raise ModelRefused(f"{SPEC_FILE}: input.{key} is {v!r}; give three numbers, one per channel (R, G, B)")


def _labels(folder: Path) -> list[str]:
    path = folder / LABELS_FILE
    if not path.is_file():
        raise ModelRefused(f"{folder} has no {LABELS_FILE}; write one label a line, in the order of the model's outputs")
    lines = path.read_text("utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise ModelRefused(f"{LABELS_FILE} line {number} is empty; write one label a line, in the order of the outputs")
    if not lines:
        raise ModelRefused(f"{LABELS_FILE} is empty; write one label a line, in the order of the model's outputs")
    return [line.strip() for line in lines]


def _shape(manifest: Manifest, batch: int) -> tuple[int, int, int, int]:
    s = manifest.input_size
    return (batch, 3, s, s) if manifest.input_layout == "NCHW" else (batch, s, s, 3)


def _check_shape(name: str, shape: list[Any], manifest: Manifest) -> None:
    wanted = _shape(manifest, 0)
    fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if len(shape) != 4:
        raise ModelRefused(
            f"the graph's input {name!r} has shape {shape}; imgrec gives images as 4 dimensions ({manifest.input_layout})"
        )
    if fixed[0] is not None:
        raise ModelRefused(
            f"the graph's input {name!r} has a fixed batch of {fixed[0]}; export it with a dynamic batch axis "
            "(torch.onnx.export(..., dynamic_axes={'input': {0: 'batch'}}))"
        )
    if all(f is None or f == w for f, w in zip(fixed[1:], wanted[1:], strict=True)):
        return
    other = "NHWC" if manifest.input_layout == "NCHW" else "NCHW"
    channels = fixed[3] if other == "NHWC" else fixed[1]
    hint = f'set input.layout = "{other}"' if channels == 3 else ""
    if not hint:
        side = [f for f in (fixed[2:] if manifest.input_layout == "NCHW" else fixed[1:3]) if f is not None]
        hint = f"set input.size = {side[0]}" if side and len(set(side)) == 1 else "imgrec gives square RGB images"
    raise ModelRefused(
        f"the graph's input {name!r} has shape {shape}, the manifest says {manifest.input_layout} of size "
        f"{manifest.input_size}; {hint} in {SPEC_FILE}"
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
