"""A model of one's own from a folder: checked before it is accepted, each refusal one line that
says what to fix, and served with its own labels and preprocessing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from colour_model import LABELS, plain_image, write_colour_model
from imgrec.engine import folder
from imgrec.engine.classifier import Classifier
from imgrec.engine.folder import ModelRefused
from imgrec.engine.model import MANIFEST_FILE, load_manifest

COLOURS = {"red": (230, 20, 30), "green": (10, 200, 40), "blue": (20, 30, 220)}


def _classify(model_dir, fmt="PNG"):
    clf = Classifier(model_dir)
    results = clf.classify([plain_image(rgb, fmt=fmt) for rgb in COLOURS.values()])
    return [r.label for r in results], clf


def test_a_folder_of_a_graph_and_labels_serves_with_the_torchvision_defaults(tmp_path):
    src = write_colour_model(tmp_path / "export")
    manifest = folder.add(src, "colours", tmp_path / "model-colours", tag="first")
    m = manifest
    assert (m.input_layout, m.input_type, m.input_size, m.resize_size) == ("NCHW", "float32", 224, 256)
    assert (m.mean, m.std, m.output, m.tag) == (folder.IMAGENET_MEAN, folder.IMAGENET_STD, "logits", "first")
    assert [c["label"] for c in manifest.labels] == list(LABELS)
    assert load_manifest(tmp_path / "model-colours", verify=True, variant="colours") == manifest
    labels, clf = _classify(tmp_path / "model-colours")
    assert labels == list(COLOURS)
    assert clf.model_id == f"colours@{manifest.sha256[:12]}"
    # the installed folder is a model folder too: it can be added again under another name
    assert folder.add(tmp_path / "model-colours", "colours-again", tmp_path / "again").sha256 == manifest.sha256


@pytest.mark.parametrize(
    ("manifest", "graph"),
    [
        ('[input]\nlayout = "NHWC"\n', {"layout": "NHWC"}),
        (
            '[input]\ntype = "uint8"\nsize = 64\nresize = "straight"\n[output]\nkind = "probabilities"\n',
            {"dtype": "uint8", "size": 64},
        ),
        ('file = "colours.onnx"\n[input]\nname = "input"\nscale = 1.0\nmean = [127.5, 127.5, 127.5]\nstd = [64, 64, 64]\n', {}),
    ],
    ids=["nhwc", "uint8-straight-probabilities", "named-file-own-scaling"],
)
def test_the_manifest_says_how_images_become_the_input(tmp_path, manifest, graph):
    src = write_colour_model(tmp_path / "export", manifest=manifest, **graph)
    if "colours.onnx" in manifest:
        (src / "model.onnx").rename(src / "colours.onnx")
    folder.add(src, "colours", tmp_path / "model")
    assert _classify(tmp_path / "model", fmt="JPEG")[0] == list(COLOURS)


def test_straight_resize_squeezes_the_whole_image(tmp_path):
    src = write_colour_model(tmp_path / "export", manifest='[input]\nsize = 32\nresize = "straight"\n')
    folder.add(src, "colours", tmp_path / "model")
    clf = Classifier(tmp_path / "model")
    pixels = clf.decode(plain_image((255, 0, 0), size=(400, 100)))
    assert isinstance(pixels, np.ndarray) and pixels.shape == (32, 32, 3)
    batch = clf.normalize([pixels])
    assert batch.shape == (1, 3, 32, 32) and batch.dtype == np.float32
    assert batch[0, 0, 0, 0] == pytest.approx((1 - 0.485) / 0.229, abs=1e-5)


REFUSALS = [
    ("labels count wrong", {"labels": ("red", "green")}, None,
     "the model gives 3 scores per image but labels.txt has 2 labels; write one label a line, in the order of the outputs"),
    ("input shape wrong", {"size": 128}, None,
     "the graph's input 'input' has shape ['batch', 3, 128, 128], the manifest says NCHW of size 224; "
     "set input.size = 128 in imgrec-model.toml"),
    ("layout wrong", {"layout": "NHWC", "size": 224}, None,
     "the graph's input 'input' has shape ['batch', 224, 224, 3], the manifest says NCHW of size 224; "
     "set input.layout = \"NHWC\" in imgrec-model.toml"),
    ("type wrong", {"dtype": "uint8"}, None,
     "the graph's input 'input' takes uint8, not float32; set input.type = \"uint8\" in imgrec-model.toml"),
    ("graph fails at inference", {"fail": True}, None,
     "the graph failed on a test batch of shape [2, 3, 224, 224] ("),
    ("manifest typo", {}, '[input]\nlayot = "NHWC"\n',
     "imgrec-model.toml: unknown key input.layot; [input] takes: name, layout, type, size, resize, scale, mean, std"),
    ("manifest bad value", {}, '[output]\nkind = "softmax"\n',
     "imgrec-model.toml: output.kind is 'softmax'; use one of: logits, probabilities"),
    ("manifest not toml", {}, "[input\n", "imgrec-model.toml is not TOML: "),
    ("input name wrong", {}, '[input]\nname = "pixels"\n',
     "the graph has no input 'pixels'; its inputs: input (set input.name in imgrec-model.toml)"),
]


@pytest.mark.parametrize(("what", "graph", "manifest", "said"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_folder_that_would_not_serve_is_refused_in_one_line(tmp_path, what, graph, manifest, said):
    src = write_colour_model(tmp_path / "export", manifest=manifest, **graph)
    with pytest.raises(ModelRefused) as refused:
        folder.add(src, "colours", tmp_path / "model")
    assert str(refused.value).startswith(said) and "\n" not in str(refused.value)
    assert not (tmp_path / "model" / MANIFEST_FILE).exists(), "nothing is installed"


def test_not_an_onnx_file_and_missing_files_are_refused(tmp_path):
    src = write_colour_model(tmp_path / "export")
    (src / "model.onnx").write_bytes(b"\x89PNG this is a picture, not a graph")
    with pytest.raises(ModelRefused, match=r"^model.onnx is not an ONNX graph onnxruntime can load \(.*\); export it again$"):
        folder.add(src, "colours", tmp_path / "model")
    (src / "model.onnx").unlink()
    with pytest.raises(ModelRefused, match=r"has no model.onnx; put the ONNX graph there"):
        folder.add(src, "colours", tmp_path / "model")
    write_colour_model(src)
    (src / "labels.txt").unlink()
    with pytest.raises(ModelRefused, match=r"has no labels.txt; write one label a line"):
        folder.add(src, "colours", tmp_path / "model")


@pytest.mark.parametrize("name", ["Colours", "lite0", "efficientnet-lite0", "a/b", ""])
def test_a_name_must_be_safe_and_not_a_built_in_one(tmp_path, name):
    src = write_colour_model(tmp_path / "export")
    with pytest.raises(ModelRefused, match="model name"):
        folder.add(src, name, tmp_path / "model")


def test_a_fixed_batch_is_refused_with_how_to_export(tmp_path):
    import onnx

    from colour_model import colour_graph

    src = write_colour_model(tmp_path / "export")
    graph = colour_graph()
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(graph, str(src / "model.onnx"))
    with pytest.raises(ModelRefused, match=r"fixed batch of 1; export it with a dynamic batch axis"):
        folder.add(src, "colours", tmp_path / "model")


def test_the_built_in_model_folder_is_a_model_folder_too(model_dir, classifier, photo_bytes, tmp_path):
    """lite0 added from its folder as one's own: the same manifest but its name, the same results."""
    builtin = load_manifest(model_dir)
    mine = folder.add(model_dir, "my-lite0", tmp_path / "mine")
    assert replace(mine, name=builtin.name, variant=builtin.variant, source=builtin.source, labels=builtin.labels,
                   calibration=builtin.calibration, accuracy=builtin.accuracy) == builtin
    assert [c["label"] for c in mine.labels] == [c["label"] for c in builtin.labels]
    images = list(photo_bytes.values())
    ours = [(r.label, r.score) for r in Classifier(tmp_path / "mine", threads=2).classify(images)]
    assert ours == [(r.label, r.score) for r in classifier.classify(images)]
