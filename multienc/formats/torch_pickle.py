"""Read ``pytorch_model.bin`` (torch's zip format) without torch and without running its pickle.

``torch.save`` writes a zip archive whose ``data.pkl`` record is a pickle of
the state dict; tensor bytes live in ``data/<key>`` records that the pickle
references by persistent id. Python's ``pickle`` would import and call
whatever the stream names, so this module interprets the stream itself with
a small stack machine that knows only the opcodes torch's writer emits and
only these globals:

* ``collections.OrderedDict`` (the state dict and the empty backward-hooks dict),
* ``torch._utils._rebuild_tensor_v2`` and ``torch._utils._rebuild_parameter``,
* ``torch.FloatStorage``, ``torch.HalfStorage``, ``torch.BFloat16Storage``,
  ``torch.LongStorage`` (only as the storage type inside a persistent id).

Any other global or opcode raises :class:`TorchPickleError` when it is read;
nothing named by the file is ever imported or called. Tensors come back as
numpy arrays of their stored dtype (float32, float16, int64), except bfloat16,
which numpy lacks and which is widened to float32 exactly (or, for a caller that
widens one tensor at a time, returned as its stored bits in a
:class:`~multienc.formats.safetensors.BFloat16Bits`). The storages are read in
place from a read-only memory map of the file (torch stores them uncompressed), each
checked against its CRC-32 and then dropped from resident memory, so loading does not
hold the file's bytes in memory beside the model they are copied into.
"""
from __future__ import annotations

import collections
import io
import math
import mmap
import os
import pickle
import struct
import zipfile
import zlib
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from multienc.formats.safetensors import BFloat16Bits, bf16_to_float32, release_pages

__all__ = ["TorchPickleError", "load_file", "ALLOWED_GLOBALS"]

# The pickled magic number that starts torch's legacy (pre-1.6, non-zip) format: LONG1 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


#: containers (tuples, lists, dicts) nested deeper than this are refused; a state dict needs about 4
MAX_DEPTH = 100
_MAX_DIMS = 64  # numpy's limit on dimensions
_LIMIT = 1 << 63


def _short(value: Any) -> str:
    """A bounded description of a value from the pickle for a message (never a full repr: shared
    sub-containers can make a repr exponentially long)."""
    if isinstance(value, tuple) and len(value) <= _MAX_DIMS and all(type(v) is int and v.bit_length() < 256
                                                                     for v in value):
        return repr(value)
    if isinstance(value, (tuple, list, dict)):
        return f"<{type(value).__name__} of {len(value)} items>"
    if isinstance(value, str):
        return repr(value[:80]) + ("..." if len(value) > 80 else "")
    if type(value) is int:
        return repr(value) if value.bit_length() < 256 else f"<int of {value.bit_length()} bits>"
    if value is None or type(value) in (bool, float):
        return repr(value)
    return f"<{type(value).__name__}>"


def _name(text: str) -> str:
    """A name from the file (record, tensor), cut to a readable length."""
    return text if len(text) <= 200 else text[:200] + "..."


_CONTAINERS = (tuple, list, dict, collections.OrderedDict)
_KEY_TYPES = (str, int, float, bool, type(None))


class TorchPickleError(ValueError):
    """A ``pytorch_model.bin`` is malformed, unsupported or not allowed; names the file."""

    def __init__(self, path: str, message: str, tensor: Optional[str] = None):
        self.path = str(path)
        self.tensor = tensor
        super().__init__(f"{self.path}" + (f", tensor {tensor!r}" if tensor is not None else "") + f": {message}")


class _Refused(Exception):
    """The pickle asks for something outside the allowlist (raised before it could happen)."""


class _StorageType(NamedTuple):
    name: str
    dtype: np.dtype  # little-endian numpy dtype of the stored bytes


class _Storage(NamedTuple):
    key: str
    values: np.ndarray  # 1-D, read-only
    bf16: bool  # values are bfloat16's uint16 bit patterns (load_file's widen_bf16=False)


class _Tensor(NamedTuple):
    array: np.ndarray  # bfloat16: uint16 bit patterns
    bf16: bool


class _Reducer(NamedTuple):
    """An allowed callable; ``fn`` is multienc's own implementation, never the named one."""
    name: str
    fn: Callable[..., Any]


def _new_ordered_dict(*args: Any) -> "collections.OrderedDict[Any, Any]":
    if args:
        raise ValueError("collections.OrderedDict may only be rebuilt empty")
    return collections.OrderedDict()


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any,
                       backward_hooks: Any, metadata: Any = None) -> _Tensor:
    """torch._utils._rebuild_tensor_v2: a strided view of a storage, checked to stay inside it."""
    if not isinstance(storage, _Storage):
        raise ValueError("_rebuild_tensor_v2 needs a storage as its first argument")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) <= _MAX_DIMS
            and all(type(v) is int and 0 <= v < _LIMIT for v in size + stride)
            and type(storage_offset) is int and 0 <= storage_offset < _LIMIT):
        raise ValueError(f"bad tensor geometry: offset {_short(storage_offset)}, size {_short(size)}, "
                         f"stride {_short(stride)} (at most {_MAX_DIMS} dimensions of values below 2**63)")
    if type(requires_grad) is not bool or not isinstance(backward_hooks, dict) or backward_hooks:
        raise ValueError("tensors with backward hooks are not supported")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError("tensor metadata must be a dict")
    values = storage.values
    numel = math.prod(size)
    if numel > values.size:  # only overlapping views (expand(), stride 0) can; copying them could be huge
        raise ValueError(f"tensor of size {size} has {numel} elements, more elements than its storage "
                         f"{storage.key!r} holds ({values.size}); overlapping views are not materialised")
    if numel == 0:
        arr = np.zeros(size, dtype=values.dtype)
    else:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= values.size:
            raise ValueError(f"tensor (offset {storage_offset}, size {size}, stride {stride}) reaches element "
                             f"{last} of storage {storage.key!r} which has {values.size}")
        if _is_c_contiguous(size, stride):  # a view of the storage (of the file's map)
            arr = values[storage_offset:storage_offset + numel].reshape(size)
        else:
            item = values.itemsize
            view = np.lib.stride_tricks.as_strided(values[storage_offset:], shape=size,
                                                   strides=tuple(s * item for s in stride), writeable=False)
            arr = np.require(view, requirements="C")
            release_pages(values)  # the copy read them
    arr.flags.writeable = False
    return _Tensor(arr, storage.bf16)


def _is_c_contiguous(size: Tuple[int, ...], stride: Tuple[int, ...]) -> bool:
    """Whether elements laid out by ``stride`` are the row-major layout of ``size``."""
    expected = 1
    for n, s in zip(reversed(size), reversed(stride)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> _Tensor:
    """torch._utils._rebuild_parameter: a Parameter is just its tensor here."""
    if not isinstance(data, _Tensor) or type(requires_grad) is not bool or backward_hooks:
        raise ValueError("bad _rebuild_parameter arguments")
    return data


ALLOWED_GLOBALS: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _Reducer("collections.OrderedDict", _new_ordered_dict),
    ("torch._utils", "_rebuild_tensor_v2"): _Reducer("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _Reducer("torch._utils._rebuild_parameter", _rebuild_parameter),
    ("torch", "FloatStorage"): _StorageType("FloatStorage", np.dtype("<f4")),
    ("torch", "HalfStorage"): _StorageType("HalfStorage", np.dtype("<f2")),
    ("torch", "BFloat16Storage"): _StorageType("BFloat16Storage", np.dtype("<u2")),
    ("torch", "LongStorage"): _StorageType("LongStorage", np.dtype("<i8")),
}


class _Machine:
    """A pickle interpreter for torch's protocol-2 state dicts; values are plain data only."""

    def __init__(self, data: bytes, load_storage: Callable[[str, _StorageType, int], _Storage]):
        self.stream = io.BytesIO(data)
        self.load_storage = load_storage
        self.stack: List[Any] = []
        self.metastack: List[List[Any]] = []
        self.memo: Dict[int, Any] = {}
        # Nesting depth of every container built so far (by id; `alive` keeps them so ids stay unique),
        # and the containers already put inside another one, which may no longer change: a depth
        # counted when a container is built would otherwise miss what is added to it later.
        self.depth: Dict[int, int] = {}
        self.alive: List[Any] = []
        self.sealed: set = set()
        #: the last string pushed directly into a dict's SETITEMS: the name of the tensor being read
        self.last_key: Optional[str] = None

    def _item_depth(self, value: Any) -> int:
        return self.depth.get(id(value), 1) if type(value) in _CONTAINERS else 0

    def contain(self, container: Any, items: List[Any]) -> Any:
        """Record that ``container`` (new, or being filled) holds ``items``; refuse too deep a nesting."""
        key = id(container)
        if key in self.sealed and type(container) is not tuple:  # tuples are new (or the shared ())
            raise ValueError("a list or dict is modified after it was put inside another container")
        if key not in self.depth:
            self.alive.append(container)
        depth = max([self.depth.get(key, 1)] + [1 + self._item_depth(v) for v in items])
        if depth > MAX_DEPTH:
            raise ValueError(f"containers nested deeper than {MAX_DEPTH} levels (a state dict needs about 4)")
        self.depth[key] = depth
        self.sealed.update(id(v) for v in items if type(v) in _CONTAINERS)
        return container

    def read(self, n: int) -> bytes:
        b = self.stream.read(n)
        if len(b) != n:
            raise ValueError("pickle ends in the middle of an instruction")
        return b

    def readline(self) -> str:
        line = self.stream.readline()
        if not line.endswith(b"\n"):
            raise ValueError("pickle ends in the middle of a GLOBAL instruction")
        return line[:-1].decode("utf-8")

    def pop_mark(self) -> List[Any]:
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def run(self) -> Any:
        P = pickle
        push = lambda v: self.stack.append(v)  # noqa: E731  (self.stack is rebound by MARK)
        while True:
            op = self.read(1)
            if op == P.PROTO:
                proto = self.read(1)[0]
                if proto > 2:
                    raise _Refused(f"pickle protocol {proto} (torch writes protocol 2)")
            elif op == P.STOP:
                if self.metastack or len(self.stack) != 1:
                    raise ValueError("pickle stops with an unbalanced stack")
                return self.stack.pop()
            elif op == P.GLOBAL:
                module, name = self.readline(), self.readline()
                if (module, name) not in ALLOWED_GLOBALS:
                    raise _Refused(f"global {module}.{name} is not allowed: only torch tensor rebuilding "
                                          f"of float32/float16/bfloat16/int64 storages is (nothing was executed)")
                push(ALLOWED_GLOBALS[(module, name)])
            elif op == P.REDUCE:
                args = self.stack.pop()
                func = self.stack[-1]
                if not isinstance(func, _Reducer) or not isinstance(args, tuple):
                    raise _Refused(f"REDUCE of {_short(func)} is not allowed")
                self.stack[-1] = result = func.fn(*args)
                if type(result) in _CONTAINERS:
                    self.contain(result, [])
            elif op == P.BUILD:
                state = self.stack.pop()
                if type(self.stack[-1]) is not collections.OrderedDict or not isinstance(state, dict):
                    raise _Refused(f"BUILD is only allowed on an OrderedDict, not {type(self.stack[-1])}")
                # The state is the state dict's `_metadata` (per-module versions); multienc does not need it.
            elif op == P.BINPERSID:
                pid = self.stack.pop()
                if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                        and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                        and isinstance(pid[3], str) and type(pid[4]) is int and pid[4] >= 0):
                    raise _Refused(f"persistent id {_short(pid)} is not a torch storage reference")
                push(self.load_storage(pid[2], pid[1], pid[4]))
            elif op == P.MARK:
                self.metastack.append(self.stack)
                self.stack = []
            elif op in (P.APPEND, P.APPENDS):
                items = [self.stack.pop()] if op == P.APPEND else self.pop_mark()
                if type(self.stack[-1]) is not list:
                    raise ValueError("APPEND to something that is not a list")
                self.contain(self.stack[-1], items).extend(items)
            elif op in (P.SETITEM, P.SETITEMS):
                items = self.stack[-2:] if op == P.SETITEM else self.pop_mark()
                if op == P.SETITEM:
                    del self.stack[-2:]
                target = self.stack[-1]
                if type(target) not in (dict, collections.OrderedDict) or len(items) % 2:
                    raise ValueError("SETITEM(S) on something that is not a dict")
                bad = [k for k in items[::2] if type(k) not in _KEY_TYPES]
                if bad:
                    raise ValueError(f"dict key {_short(bad[0])} is not a string or number")
                self.contain(target, items[1::2])
                for i in range(0, len(items), 2):
                    target[items[i]] = items[i + 1]
            elif op == P.TUPLE:
                items = self.pop_mark()
                push(self.contain(tuple(items), items))
            elif op in (P.TUPLE1, P.TUPLE2, P.TUPLE3):
                n = {P.TUPLE1: 1, P.TUPLE2: 2, P.TUPLE3: 3}[op]
                if len(self.stack) < n:
                    raise ValueError("tuple of missing items")
                self.stack[-n:] = [self.contain(tuple(self.stack[-n:]), self.stack[-n:])]
            elif op in (P.NONE, P.NEWFALSE, P.NEWTRUE):
                push({P.NONE: None, P.NEWFALSE: False, P.NEWTRUE: True}[op])
            elif op == P.EMPTY_TUPLE:
                push(self.contain((), []))
            elif op == P.EMPTY_LIST:
                push(self.contain([], []))
            elif op == P.EMPTY_DICT:
                push(self.contain({}, []))
            elif op == P.BININT:
                push(struct.unpack("<i", self.read(4))[0])
            elif op == P.BININT1:
                push(self.read(1)[0])
            elif op == P.BININT2:
                push(struct.unpack("<H", self.read(2))[0])
            elif op == P.LONG1:
                push(int.from_bytes(self.read(self.read(1)[0]), "little", signed=True))
            elif op == P.BINFLOAT:
                push(struct.unpack(">d", self.read(8))[0])
            elif op == P.BINUNICODE:
                push(self.read(struct.unpack("<I", self.read(4))[0]).decode("utf-8", "surrogatepass"))
                if self.metastack and self.metastack[-1] and type(self.metastack[-1][-1]) in _CONTAINERS[2:]:
                    self.last_key = self.stack[-1]
            elif op == P.SHORT_BINSTRING:
                push(self.read(self.read(1)[0]).decode("ascii"))
            elif op in (P.BINPUT, P.LONG_BINPUT):
                idx = self.read(1)[0] if op == P.BINPUT else struct.unpack("<I", self.read(4))[0]
                self.memo[idx] = self.stack[-1]
            elif op in (P.BINGET, P.LONG_BINGET):
                idx = self.read(1)[0] if op == P.BINGET else struct.unpack("<I", self.read(4))[0]
                push(self.memo[idx])
            else:
                raise _Refused(f"pickle opcode {op!r} is not allowed")


def _check_not_legacy(path: str) -> None:
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return
    if head[:2] == b"\x80\x02" and head[2:14] == _LEGACY_MAGIC:
        raise TorchPickleError(path, "this is torch's legacy (pre-1.6, non-zip) format, which multienc does not "
                                     "read; re-save it with torch>=1.6 or convert it to safetensors")
    raise TorchPickleError(path, "not a torch zip checkpoint (no zip signature)")


def _check_stored(info: zipfile.ZipInfo, archive_size: int, path: str) -> None:
    """Check that a record is stored as torch writes it: uncompressed, not encrypted, inside the
    archive. So no record can expand to more than the file's own size."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x61:  # encrypted, patch data, strong encryption
        raise TorchPickleError(path, f"record {_name(info.filename)} is compressed or encrypted (method "
                                     f"{info.compress_type}, flags {info.flag_bits:#x}); torch.save writes every "
                                     "record uncompressed")
    if info.header_offset < 0:  # the end record's central-directory offset points past where the directory is
        raise TorchPickleError(path, f"corrupt zip archive: record {_name(info.filename)} would start at byte "
                                     f"{info.header_offset}, before the file's start")
    if info.file_size != info.compress_size or info.header_offset + info.compress_size > archive_size:
        raise TorchPickleError(path, f"record {_name(info.filename)} declares {info.file_size} bytes, more than the "
                         f"{archive_size}-byte file holds")


def _read_record(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int, path: str) -> bytes:
    """A record's bytes (:func:`_check_stored` first)."""
    _check_stored(info, archive_size, path)
    return zf.read(info)


_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader: 30 bytes


def _stored_offset(mapped: mmap.mmap, info: zipfile.ZipInfo, path: str) -> int:
    """Where a stored record's bytes begin in the file's map, after the checks zipfile makes when it
    reads one (a local header with the right magic and name, the bytes inside the file, their
    CRC-32). :func:`_check_stored`'s checks come first."""
    start = info.header_offset
    if start + _LOCAL_HEADER.size > len(mapped):
        raise TorchPickleError(path, f"corrupt zip archive: record {_name(info.filename)}'s header at byte {start} "
                                     f"is outside the {len(mapped)}-byte file")
    fields = _LOCAL_HEADER.unpack_from(mapped, start)
    magic, flags, name_len, extra_len = fields[0], fields[3], fields[10], fields[11]
    name = mapped[start + _LOCAL_HEADER.size:start + _LOCAL_HEADER.size + name_len]
    if magic != b"PK\x03\x04" or name.decode("utf-8" if flags & 0x800 else "cp437", "replace") != info.orig_filename:
        raise TorchPickleError(path, f"corrupt zip archive: record {_name(info.filename)}'s local header is "
                                     "not where the directory says")
    begin = start + _LOCAL_HEADER.size + name_len + extra_len
    if begin + info.compress_size > len(mapped):
        raise TorchPickleError(path, f"record {_name(info.filename)} declares {info.file_size} bytes, more than the "
                                     f"{len(mapped)}-byte file holds")
    with memoryview(mapped) as view:
        if zlib.crc32(view[begin:begin + info.compress_size]) != info.CRC:
            raise TorchPickleError(path, f"corrupt zip archive: Bad CRC-32 for record {_name(info.filename)}")
    return begin


# What reading a damaged zip can raise besides BadZipFile: names that are not UTF-8, offsets that
# point before the file start, unknown compression methods, encryption, truncation.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, UnicodeDecodeError,
               NotImplementedError, RuntimeError, OverflowError, zlib.error)


def load_file(path: "os.PathLike[str] | str", widen_bf16: bool = True) -> Dict[str, "np.ndarray | BFloat16Bits"]:
    """Read the state dict in ``path`` (a ``torch.save`` zip) as ``{name: numpy.ndarray}``.

    Arrays are read-only and C-contiguous; float32/float16/int64 keep their
    dtype, bfloat16 becomes float32 (``widen_bf16=False``: a
    :class:`~multienc.formats.safetensors.BFloat16Bits` of the stored bits, for a
    caller that widens one tensor at a time). Raises :class:`TorchPickleError` for a
    legacy or corrupt file, a compressed record (torch writes them uncompressed, so
    no record expands beyond the file's size), any global or opcode outside the
    allowlist, containers nested deeper than :data:`MAX_DEPTH`, a storage record of the
    wrong size, a tensor with more elements than its storage (an overlapping view), or a
    result that is not a flat mapping from names to tensors.
    """
    path = os.fspath(path)
    _check_not_legacy(path)
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            names = zf.namelist()
            if not names or "/" not in names[0]:
                raise TorchPickleError(path, "zip has no top-level folder, so it was not written by torch.save")
            prefix = names[0].split("/", 1)[0]
            infos = {i.filename: i for i in zf.infolist()}
            if f"{prefix}/byteorder" in infos and _read_record(zf, infos[f"{prefix}/byteorder"], size, path) != b"little":
                raise TorchPickleError(path, "big-endian checkpoints are not supported")
            if f"{prefix}/data.pkl" not in infos:
                raise TorchPickleError(path, f"missing record {prefix}/data.pkl")
            storages: Dict[str, _Storage] = {}

            def load_storage(key: str, stype: _StorageType, numel: int) -> _Storage:
                if key in storages:
                    if storages[key].values.size != numel:
                        raise ValueError(f"storage {_short(key)} is referenced with two different sizes")
                    return storages[key]
                record = f"{prefix}/data/{key}"
                need = numel * stype.dtype.itemsize
                if record not in infos or infos[record].file_size != need:
                    have = infos[record].file_size if record in infos else "no"
                    raise ValueError(f"storage record {_name(record)} has {have} bytes, {stype.name} of {numel} "
                                     f"needs {need}")
                _check_stored(infos[record], size, path)
                stored = np.frombuffer(mapped, dtype=stype.dtype, count=numel,
                                       offset=_stored_offset(mapped, infos[record], path))
                bf16 = stype.name == "BFloat16Storage"
                if bf16 and widen_bf16:  # once per storage: its tensors (ties, views) share the float32 copy
                    values, bf16 = bf16_to_float32(stored), False
                else:
                    values = stored if stored.flags.aligned else stored.copy()
                values.flags.writeable = False
                release_pages(stored)  # the CRC check read them; the caller reads them again when it copies
                storages[key] = _Storage(key, values, bf16)
                return storages[key]

            machine = _Machine(_read_record(zf, infos[f"{prefix}/data.pkl"], size, path), load_storage)
            try:
                obj = machine.run()
            except _Refused as e:
                raise TorchPickleError(path, f"refused: {e}") from None
            except (ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError, struct.error,
                    OverflowError) as e:
                if isinstance(e, TorchPickleError):
                    raise
                near = None if machine.last_key is None else _name(machine.last_key)
                raise TorchPickleError(path, f"malformed data.pkl: {type(e).__name__}: {e}", near) from None
    except _ZIP_ERRORS as e:
        raise TorchPickleError(path, f"corrupt zip archive: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict):
        raise TorchPickleError(path, f"expected a state dict, found {type(obj).__name__}")
    out: Dict[str, "np.ndarray | BFloat16Bits"] = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _Tensor):
            raise TorchPickleError(path, f"state dict entry is {type(value).__name__}, not a tensor",
                                  _name(name) if isinstance(name, str) else _short(name))
        out[name] = BFloat16Bits(value.array) if value.bf16 else value.array
    return out
