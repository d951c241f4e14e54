"""A model made outside imgrec, as a user brings one: an ONNX graph (written with onnx.helper)
that averages each channel of its input and scores three labels, red, green and blue. On
ImageNet-normalised pixels the brightest channel of a plain colour has the highest mean."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

LABELS = ("red", "green", "blue")


def colour_graph(*, layout: str = "NCHW", dtype: str = "float32", size: int | str = "", fail: bool = False,
                 sharpness: float = 4.0) -> onnx.ModelProto:
    """The graph: input `input` (batch first, 3 channels, `size` a fixed side or symbolic),
    output `scores` (batch, 3). `fail` adds a reshape that cannot run on any batch."""
    side = size or "side"
    shape = ["batch", 3, side, side] if layout == "NCHW" else ["batch", side, side, 3]
    elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.UINT8
    nodes, x = [], "input"
    if dtype == "uint8":
        nodes.append(helper.make_node("Cast", ["input"], ["as_float"], to=TensorProto.FLOAT))
        x = "as_float"
    if fail:
        nodes.append(helper.make_node("Reshape", [x, "bad_shape"], ["reshaped"]))
        x = "reshaped"
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    nodes += [
        helper.make_node("ReduceMean", [x], ["means"], axes=axes, keepdims=0),
        helper.make_node("Mul", ["means", "sharpness"], ["scores"]),
    ]
    inits = [helper.make_tensor("sharpness", TensorProto.FLOAT, [], [sharpness])]
    if fail:
        # no image is a whole number of 5x5 tiles: the graph loads and fails as it runs
        inits.append(helper.make_tensor("bad_shape", TensorProto.INT64, [4], [-1, 3, 5, 5]))
    graph = helper.make_graph(
        nodes, "colours", [helper.make_tensor_value_info("input", elem, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])], initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="a user")
    model.ir_version = 8  # what any onnxruntime of the last years reads
    onnx.checker.check_model(model)
    return model


def write_colour_model(folder: Path, *, labels: tuple[str, ...] = LABELS, manifest: str | None = None, **graph) -> Path:
    """A model folder as a user exports one: model.onnx and labels.txt, and `manifest` as
    imgrec-model.toml if given."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(colour_graph(**graph), str(folder / "model.onnx"))
    (folder / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
    if manifest is not None:
        (folder / "imgrec-model.toml").write_text(manifest)
    return folder


def plain_image(rgb: tuple[int, int, int], size: tuple[int, int] = (320, 240), fmt: str = "PNG") -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, fmt)
    return buf.getvalue()
