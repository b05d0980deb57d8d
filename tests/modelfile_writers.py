"""Writers of model files for tests (the key sets are in modelfile_keys.py). Nothing here needs torch.

``write_safetensors(path, tensors, complete=True)`` makes the file as long as its header says
by extending it sparsely (no disk space used), so a "30 GB" model costs a few kilobytes;
``complete=False`` leaves the data offsets pointing past the end (a cut-short download).
``write_torch_zip`` / ``write_torch_legacy`` write what ``torch.save`` writes, opcode by opcode.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any, Iterable, Optional

Tensors = dict[str, tuple[str, tuple[int, ...]]]
ITEM = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "U8": 1, "I8": 1, "I64": 8,
        "F8_E8M0": 1, "BOOL": 1}


def _nbytes(dtype: str, shape: Iterable[int]) -> int:
    n = ITEM[dtype]
    for s in shape:
        n *= s
    return n


def safetensors_bytes(tensors: Tensors, metadata: Optional[dict[str, str]] = None) -> tuple[bytes, int]:
    """(the header bytes, the data length the header describes)."""
    header: dict[str, Any] = {}
    offset = 0
    for key, (dtype, shape) in tensors.items():
        size = _nbytes(dtype, shape)
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, offset


# Linux and macOS file systems extend a file without allocating it (sparse); NTFS allocates the
# clusters, so a "26 GB" header there would take 26 GB: such tests skip on Windows.
SPARSE = os.name != "nt"


def _extend(fh: Any, size: int) -> None:
    if not SPARSE and size > 256 * 1024 * 1024:
        import pytest

        pytest.skip("needs a sparse file of a real model's size; Windows would allocate it")
    fh.truncate(size)  # sparse: the size is right, no bytes are written


def write_safetensors(path: Path, tensors: Tensors, metadata: Optional[dict[str, str]] = None,
                      complete: bool = True) -> Path:
    head, data = safetensors_bytes(tensors, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(head)
        if complete:
            _extend(fh, len(head) + data)
    return path


# ---------------------------------------------------------------- PyTorch files, by opcode

_STORAGE = {"BF16": "BFloat16Storage", "F16": "HalfStorage", "F32": "FloatStorage", "I64": "LongStorage",
            "U8": "ByteStorage"}
_TORCH_DTYPE = {"F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


class _Pickle:
    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.out.write(b"\x80\x02")

    def op(self, code: bytes) -> None:
        self.out.write(code)

    def text(self, s: str) -> None:
        data = s.encode()
        self.out.write(b"X" + struct.pack("<I", len(data)) + data)

    def int(self, n: int) -> None:
        self.out.write(b"J" + struct.pack("<i", n))

    def glob(self, module: str, name: str) -> None:
        self.out.write(b"c" + f"{module}\n{name}\n".encode())

    def ints(self, values: Iterable[int]) -> None:
        self.op(b"(")
        for v in values:
            self.int(v)
        self.op(b"t")

    def tensor(self, key: str, dtype: str, shape: tuple[int, ...], location: Optional[str]) -> None:
        numel = 1
        for s in shape:
            numel *= s
        v3 = dtype not in _STORAGE
        self.glob("torch._utils", "_rebuild_tensor_v3" if v3 else "_rebuild_tensor_v2")
        self.op(b"(")  # the call's argument tuple
        self.op(b"(")  # the persistent id
        self.text("storage")
        if v3:
            self.glob("torch.storage", "UntypedStorage")
        else:
            self.glob("torch", _STORAGE[dtype])
        self.text(key)
        self.text("cpu")
        self.int(numel * (ITEM[dtype] if v3 else 1))
        if location is not None:  # the legacy format adds the view metadata (None)
            self.op(b"N")
        self.op(b"t")
        self.op(b"Q")  # BINPERSID
        self.int(0)
        self.ints(shape)
        strides, acc = [], 1
        for s in reversed(shape):
            strides.insert(0, acc)
            acc *= s
        self.ints(strides)
        self.op(b"\x89")  # NEWFALSE
        self.glob("collections", "OrderedDict")
        self.op(b")R")
        if v3:
            self.glob("torch", _TORCH_DTYPE[dtype])
        self.op(b"t")
        self.op(b"R")

    def state_dict(self, tensors: Tensors, wrapper: Optional[str], legacy: bool) -> dict[str, tuple[str, int]]:
        storages: dict[str, tuple[str, int]] = {}
        self.op(b"}")
        if wrapper:
            self.text(wrapper)
            self.op(b"}")
        self.op(b"(")
        for i, (key, (dtype, shape)) in enumerate(tensors.items()):
            storage_key = str(1000 + i) if legacy else str(i)
            self.text(key)
            self.tensor(storage_key, dtype, shape, "cpu" if legacy else None)
            storages[storage_key] = (dtype, _nbytes(dtype, shape))
        self.op(b"u")  # SETITEMS
        if wrapper:
            self.op(b"s")  # SETITEM
        self.op(b".")
        return storages


def write_torch_zip(path: Path, tensors: Tensors, wrapper: Optional[str] = None) -> Path:
    """A file shaped like ``torch.save`` output (zip); storages are left empty."""
    pickle = _Pickle()
    storages = pickle.state_dict(tensors, wrapper, legacy=False)
    root = path.stem
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{root}/data.pkl", pickle.out.getvalue())
        archive.writestr(f"{root}/byteorder", "little")
        for key in storages:
            archive.writestr(f"{root}/data/{key}", b"")
        archive.writestr(f"{root}/version", "3\n")
    return path


def write_torch_legacy(path: Path, tensors: Tensors, wrapper: Optional[str] = None, complete: bool = True) -> Path:
    """The legacy format: magic, protocol, sys info, the state dict, the storage keys, then each
    storage as an 8-byte count and its bytes (sparse)."""
    parts = []
    for value in (b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", b"\x80\x02M\xe9\x03."):
        parts.append(value)
    info = _Pickle()
    info.op(b"}")
    info.op(b".")
    parts.append(info.out.getvalue())
    body = _Pickle()
    storages = body.state_dict(tensors, wrapper, legacy=True)
    parts.append(body.out.getvalue())
    keys = _Pickle()
    keys.op(b"(")
    for key in storages:
        keys.text(key)
    keys.op(b"l.")
    parts.append(keys.out.getvalue())
    head = b"".join(parts)
    data = sum(8 + n for _, n in storages.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(head)
        _extend(fh, len(head) + (data if complete else data // 2))
    return path
