"""Static int8 quantization of an exported model, calibrated on photographs that ship
in a package, deterministically.

onnxruntime's `quantize_static` in the QDQ format, int8 weights per output channel
and uint8 activations: the layout its CPU kernels run fastest (VNNI where the CPU
has it); the network then reads the uint8 pixels directly (see `_take_uint8`).
Activation ranges come from calibration images: scikit-image's sample
photographs, each seen whole and as seeded random crops and mirror images, made
exactly as the serving pipeline makes its input (resize the shorter side, crop).
The same count and seed give the same images, so the same model, on every build.
Needs the export extra (scikit-image, onnx); serving never imports this module.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from imgrec.imaging.pixels import resized_crop  # the serving pipeline's resize and crop

# The photographs among scikit-image's bundled data (no download needed); the grey
# ones (camera ... moon) are given as RGB, as a grey upload is.
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "coins.png",
    "moon.png",
)
SEED = 20261202
DEFAULT_COUNT = 256


def _photos() -> list[Image.Image]:
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    return [Image.open(folder / name).convert("RGB") for name in PHOTOS if (folder / name).is_file()]


def calibration_images(count: int, resize: int, crop: int, seed: int = SEED) -> list[np.ndarray]:
    """`count` model inputs: every photograph whole, then seeded crops (30-100 % of the
    shorter side, anywhere) of them, half mirrored."""
    photos = _photos()
    if not photos:
        raise RuntimeError("scikit-image's sample photographs are missing; install the export extra")
    rng = np.random.default_rng(seed)
    out = [resized_crop(p, resize, crop) for p in photos[:count]]
    while len(out) < count:
        img = photos[int(rng.integers(len(photos)))]
        w, h = img.size
        side = int(min(w, h) * rng.uniform(0.3, 1.0))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        piece = img.crop((x, y, x + side, y + side))
        if rng.random() < 0.5:
            piece = piece.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(resized_crop(piece, resize, crop))
    return out


def describe(count: int, seed: int = SEED) -> str:
    """What the manifest records as the calibration."""
    return f"{count} inputs from scikit-image's {len(PHOTOS)} sample photographs (whole, crops, mirrors; seed {seed}), MinMax"


def _preprocessing(model) -> tuple[list, dict[str, list]]:
    """The nodes that turn the uint8 input into the network's float input (Transpose,
    Cast, Mul, Add: see export._preprocessing), and a map of each output's consumers."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    chain, out = [], model.graph.input[0].name
    for op in ("Transpose", "Cast", "Mul", "Add"):
        (node,) = consumers[out]
        if node.op_type != op:
            raise RuntimeError(f"unexpected model input: {op} wanted, {node.op_type} found")
        chain.append(node)
        out = node.output[0]
    return chain, consumers


def _take_uint8(path: Path, scale: float, zero_point: int) -> None:
    """Let the quantized network read the uint8 pixels as they come: the float
    normalisation `(x - 127) * scale` followed by quantization is replaced by one
    DequantizeLinear of the pixels themselves (zero point 127), which onnxruntime folds
    into the first convolution. The normalisation otherwise costs as much as a third
    of the int8 network. (The trained mean is 126.99: the difference is 1e-4 of a unit.)"""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    (transpose, cast, mul, add), consumers = _preprocessing(model)
    (quant,) = consumers[add.output[0]]
    dequants = consumers[quant.output[0]]
    if quant.op_type != "QuantizeLinear" or any(d.op_type != "DequantizeLinear" for d in dequants):
        raise RuntimeError("the quantized model's input is not quantized as expected")
    graph = model.graph
    graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), "pixels_scale"),
                              numpy_helper.from_array(np.array(zero_point, np.uint8), "pixels_zero_point")])
    for d in dequants:
        d.input[:] = [transpose.output[0], "pixels_scale", "pixels_zero_point"]
    for node in (cast, mul, add, quant):
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    onnx.save(model, str(path))


def quantize(fp32_model: Path, out: Path, input_name: str, images: list[np.ndarray], std: float, batch: int = 16) -> None:
    """Write the int8 model of `fp32_model` to `out`, activation ranges from `images`.
    `std` is the normalisation's (in [0, 1] units): the pixels' scale is 1 / (255 std)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([np.stack(images[i : i + batch]) for i in range(0, len(images), batch)])

        def get_next(self):
            b = next(self._batches, None)
            return None if b is None else {input_name: b}

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a line per rescaled bias
    try:
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(fp32_model), str(prepared), skip_symbolic_shape=True)
            chain, _ = _preprocessing(onnx.load(str(prepared)))
            quantize_static(
                str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=[n.name for n in chain[1:]],  # replaced by _take_uint8
            )
    finally:
        root.setLevel(level)
    _take_uint8(out, 1.0 / (255.0 * std), 127)
