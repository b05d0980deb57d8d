"""The tensor names, dtypes and shapes of a PyTorch checkpoint, read without unpickling it.

``torch.load`` runs the pickle: it imports whatever the file names and calls it. Here the
pickle is only walked opcode by opcode (``pickletools.genops`` parses, it never executes) on a
small symbolic stack: a ``GLOBAL`` stays a pair of strings, ``REDUCE`` records a call, and only
the calls torch itself writes for tensors (``torch._utils._rebuild_tensor_v2/_v3``,
``_rebuild_parameter``) and for ``collections.OrderedDict`` are understood. Both formats
``torch.save`` writes are read: the zip (``<root>/data.pkl``; tensor data stays in the zip)
and the legacy format (four pickles in a row, then the storages). Standard library only.
"""

from __future__ import annotations

import io
import pickletools
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Optional

__all__ = ["TorchReadError", "TorchContents", "read_torch_file", "TORCH_DTYPES"]

# Legacy typed-storage class -> safetensors dtype name (the names the rest of the reader uses).
_STORAGE_DTYPES = {
    "DoubleStorage": "F64", "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
    "ByteStorage": "U8", "BoolStorage": "BOOL",
}
# ``torch.<dtype>`` globals (``_rebuild_tensor_v3``'s dtype argument) -> dtype name.
TORCH_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
    "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "float8_e4m3fnuz": "F8_E4M3",
    "float8_e5m2fnuz": "F8_E5M2", "float8_e8m0fnu": "F8_E8M0",
}
ITEM_SIZES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "I8": 1, "U8": 1,
              "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_MAX_PICKLE = 512 * 1024 * 1024  # a state dict's pickle is kilobytes to a few megabytes
_MAX_OPS = 50_000_000


class TorchReadError(ValueError):
    """The file is not a PyTorch checkpoint this reader understands; the text says why."""


@dataclass
class TorchContents:
    """What a checkpoint holds: ``tensors`` maps name -> (dtype, shape) of the chosen state dict,
    ``wrapper`` is the top-level key it sat under (``module`` for DeepSpeed, ``state_dict``...;
    empty when the file is the state dict itself), ``top_keys`` the top-level keys,
    ``expected_size`` the byte count the file needs (legacy format; None when unknown)."""

    format: str  # pytorch-zip | pytorch-legacy
    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    wrapper: str = ""
    top_keys: tuple[str, ...] = ()
    expected_size: Optional[int] = None


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass
class _Call:
    """An object the pickle builds by calling something this reader does not run."""

    func: Any
    args: Any
    items: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Storage:
    dtype: Optional[str]  # None for UntypedStorage (the tensor's v3 dtype tells)
    key: str
    numel: int


@dataclass(frozen=True)
class _Tensor:
    dtype: str
    shape: tuple[int, ...]


_VALUES = frozenset({"BININT", "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG", "BINFLOAT", "FLOAT",
                     "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                     "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"})
_PUTS = frozenset({"BINPUT", "LONG_BINPUT", "PUT"})
_GETS = frozenset({"BINGET", "LONG_BINGET", "GET"})
_SMALL_TUPLES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


def _as_tensor(func: _Global, args: Any) -> Optional[_Tensor]:
    if not isinstance(args, tuple) or not args:
        return None
    if func.module == "torch._utils" and func.name in ("_rebuild_tensor_v2", "_rebuild_tensor_v3",
                                                       "_rebuild_tensor"):
        storage = args[0]
        if not isinstance(storage, _Storage) or len(args) < 3:
            return None
        dtype = storage.dtype
        if func.name == "_rebuild_tensor_v3" and len(args) >= 7 and isinstance(args[6], _Global):
            dtype = TORCH_DTYPES.get(args[6].name, args[6].name)
        size = args[2]
        shape = tuple(int(s) for s in size) if isinstance(size, (tuple, list)) else ()
        return _Tensor(dtype or "U8", shape)
    if func.module == "torch._utils" and func.name.startswith("_rebuild_parameter"):
        return args[0] if isinstance(args[0], _Tensor) else None
    return None


def _storage(pid: Any) -> Any:
    """``('storage', <storage class>, key, location, numel[, view])`` -> _Storage."""
    if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _Global):
        numel = pid[4] if isinstance(pid[4], int) else 0
        return _Storage(_STORAGE_DTYPES.get(pid[1].name), str(pid[2]), numel)
    return _Call(_Global("", "persistent_id"), pid)


def _walk(stream: BinaryIO, storages: Optional[dict[str, _Storage]] = None) -> Any:
    """Run one pickle symbolically and return its top object. ``storages`` collects every
    storage a tensor refers to (for the legacy format's size check)."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    metastack: list[list[Any]] = []

    def pop_mark() -> list[Any]:
        nonlocal stack
        items = stack
        stack = metastack.pop()
        return items

    count = 0
    for op, arg, _pos in pickletools.genops(stream):
        count += 1
        if count > _MAX_OPS:
            raise TorchReadError("the pickle is unreasonably long for a state dict")
        name = op.name
        # Most frequent first: a state dict's pickle is mostly values, memo puts/gets and marks.
        if name in _VALUES:
            stack.append(arg)  # genops already decoded ints, floats, strings and bytes
        elif name in _PUTS:
            memo[int(arg)] = stack[-1]
        elif name in _GETS:
            stack.append(memo.get(int(arg)))
        elif name == "MARK":
            metastack.append(stack)
            stack = []
        elif name == "TUPLE":
            items = pop_mark()  # (stack.append(pop_mark()) would append to the stack before the mark)
            stack.append(tuple(items))
        elif name in _SMALL_TUPLES:
            n = _SMALL_TUPLES[name]
            items = tuple(stack[-n:]) if n else ()
            if n:
                del stack[-n:]
            stack.append(items)
        elif name == "REDUCE":
            args = stack.pop()
            func = stack.pop()
            stack.append(_reduce(func, args))
        elif name in ("BINPERSID", "PERSID"):
            pid = stack.pop() if name == "BINPERSID" else arg
            value = _storage(pid)
            if storages is not None and isinstance(value, _Storage):
                storages[value.key] = value
            stack.append(value)
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            stack.append(_Global(module, attr))
        elif name == "STACK_GLOBAL":
            attr = stack.pop()
            module = stack.pop()
            stack.append(_Global(str(module), str(attr)))
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "NONE":
            stack.append(None)
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name in ("EMPTY_LIST", "EMPTY_SET"):
            stack.append([])
        elif name == "SETITEMS":
            items = pop_mark()
            _pairs(stack[-1], items)
        elif name == "SETITEM":
            value = stack.pop()
            key = stack.pop()
            _pairs(stack[-1], [key, value])
        elif name in ("LIST", "FROZENSET"):
            items = pop_mark()
            stack.append(list(items))
        elif name == "DICT":
            items = pop_mark()
            stack.append(_pairs({}, items))
        elif name == "APPEND":
            value = stack.pop()
            if isinstance(stack[-1], list):
                stack[-1].append(value)
        elif name in ("APPENDS", "ADDITEMS"):
            items = pop_mark()
            if isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif name == "NEWOBJ":
            args = stack.pop()
            cls = stack.pop()
            stack.append(_reduce(cls, args))
        elif name == "NEWOBJ_EX":
            stack.pop()
            args = stack.pop()
            cls = stack.pop()
            stack.append(_reduce(cls, args))
        elif name == "OBJ":
            items = pop_mark()
            stack.append(_Call(items[0] if items else None, tuple(items[1:])))
        elif name == "INST":
            items = pop_mark()
            stack.append(_Call(_Global(*str(arg).split(" ", 1)) if " " in str(arg) else arg, tuple(items)))
        elif name == "BUILD":
            stack.pop()  # the object's state: attributes, never tensors a loader uses
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            pop_mark()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("PROTO", "FRAME"):
            continue
        elif name == "STOP":
            return stack.pop() if stack else None
        else:
            stack.append(arg)  # anything else this reader has no use for stays an opaque value
    raise TorchReadError("the pickle ends without STOP (truncated?)")


def _pairs(target: Any, items: list[Any]) -> Any:
    container = target.items if isinstance(target, _Call) else target
    if isinstance(container, dict):
        for i in range(0, len(items) - 1, 2):
            try:
                container[items[i]] = items[i + 1]
            except TypeError:  # an unhashable key: nothing a state dict uses
                pass
    return target


def _reduce(func: Any, args: Any) -> Any:
    if isinstance(func, _Global):
        if func.module == "collections" and func.name == "OrderedDict":
            return _pairs({}, [x for pair in (args[0] if args and isinstance(args[0], list) else [])
                               if isinstance(pair, tuple) for x in pair[:2]])
        tensor = _as_tensor(func, args)
        if tensor is not None:
            return tensor
    return _Call(func, args)


def _tensor_count(value: Any) -> int:
    container = value.items if isinstance(value, _Call) else value
    if not isinstance(container, dict):
        return 0
    return sum(1 for v in container.values() if isinstance(v, _Tensor))


def _contents(root: Any, fmt: str) -> TorchContents:
    container = root.items if isinstance(root, _Call) else root
    if not isinstance(container, dict):
        raise TorchReadError(f"the checkpoint holds a {type(root).__name__}, not a dict of tensors")
    out = TorchContents(fmt, top_keys=tuple(str(k) for k in container))
    best, best_count = container, _tensor_count(container)
    if best_count * 2 < len(container) or best_count == 0:
        for key, value in container.items():
            n = _tensor_count(value)
            if n > best_count:
                best, best_count, out.wrapper = value, n, str(key)
    best = best.items if isinstance(best, _Call) else best
    out.tensors = {str(k): (v.dtype, v.shape) for k, v in best.items() if isinstance(v, _Tensor)}
    return out


def _read_zip(path: str) -> TorchContents:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
            if not names:
                raise TorchReadError("a zip file without data.pkl: not a PyTorch checkpoint")
            info = archive.getinfo(names[0])
            if info.file_size > _MAX_PICKLE:
                raise TorchReadError("data.pkl is too large to be a state dict")
            data = archive.read(info)
    except zipfile.BadZipFile as exc:
        raise TorchReadError(f"the zip is damaged or cut short ({exc})") from None
    return _contents(_walk(io.BytesIO(data)), "pytorch-zip")


def _read_legacy(path: str) -> TorchContents:
    with open(path, "rb") as fh:
        magic = _walk(fh)
        if magic != _LEGACY_MAGIC:
            raise TorchReadError("a pickle, but not one torch.save wrote (no magic number)")
        _walk(fh)  # protocol version
        _walk(fh)  # sys info
        storages: dict[str, _Storage] = {}
        root = _walk(fh, storages)
        keys = _walk(fh)
        end = fh.tell()
    out = _contents(root, "pytorch-legacy")
    if isinstance(keys, list):
        # After the key list, each storage is an 8-byte element count and its bytes.
        total = end
        for key in keys:
            st = storages.get(str(key))
            if st is None:
                break
            total += 8 + st.numel * ITEM_SIZES.get(st.dtype or "U8", 1)
        else:
            out.expected_size = total
    return out


def read_torch_file(path: str, head: bytes, size: int) -> TorchContents:
    """Read a ``.pt/.pth/.bin/.ckpt`` file's tensor list; raises TorchReadError."""
    try:
        if head.startswith(b"PK\x03\x04") or (head.startswith(b"PK") and zipfile.is_zipfile(path)):
            return _read_zip(path)
        if head.startswith(b"\x80"):
            return _read_legacy(path)
    except TorchReadError:
        raise
    except (ValueError, EOFError, IndexError, KeyError, TypeError, struct.error) as exc:
        raise TorchReadError(f"the pickle cannot be parsed ({exc}); cut short, or not a checkpoint") from None
    raise TorchReadError("neither a zip nor a pickle: not a PyTorch checkpoint")
