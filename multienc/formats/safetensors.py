"""Read and write ``.safetensors`` files with numpy only.

File layout (see docs/ARCHITECTURE.md, "Model files and the hub"): an 8-byte
little-endian header length ``N``, ``N`` bytes of UTF-8 JSON, then the tensor
bytes. The header is validated completely, with the reference reader's rules
and in its order, before a single tensor byte is looked at; every failure is a
:class:`SafetensorsError` naming the file and, where there is one, the tensor.

Dtypes: every dtype numpy can represent is returned as that dtype (little
endian, C order). ``BF16`` is returned **converted to float32** (exact: a
bf16 value is the upper half of a float32), or with ``widen_bf16=False`` as
:class:`BFloat16Bits`, the stored bit patterns for a caller that widens one
tensor at a time. The 4/6/8-bit float formats
(``F4``, ``F6_*``, ``F8_*``) are accepted by :func:`read_header` but
:func:`load_file` refuses them with an error naming the tensor.
"""
from __future__ import annotations

import json
import mmap as _mmap
import os
import struct
import tempfile
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

import numpy as np

__all__ = ["SafetensorsError", "TensorInfo", "BFloat16Bits", "read_header", "load_file", "release_pages",
           "save_file", "bf16_to_float32", "DTYPE_BITS"]

MAX_HEADER_SIZE = 100_000_000
_U64_MAX = (1 << 64) - 1

# Reference dtype enum, in its declaration order (the writer sorts on it), with bit sizes.
DTYPE_BITS: Dict[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
_DTYPE_RANK = {name: i for i, name in enumerate(DTYPE_BITS)}

# safetensors dtype -> numpy dtype (little endian). BF16 is stored as <u2 and converted.
_TO_NUMPY: Dict[str, np.dtype] = {name: np.dtype(code) for name, code in {
    "BOOL": "?", "U8": "u1", "I8": "i1", "I16": "<i2", "U16": "<u2", "F16": "<f2",
    "BF16": "<u2", "I32": "<i4", "U32": "<u4", "F32": "<f4", "C64": "<c8", "F64": "<f8",
    "I64": "<i8", "U64": "<u8"}.items()}
# numpy dtype string without its byte-order character ("f4", "b1", ...) -> safetensors dtype.
_FROM_NUMPY: Dict[str, str] = {dt.str[1:]: name for name, dt in _TO_NUMPY.items() if name != "BF16"}


class SafetensorsError(ValueError):
    """A safetensors file is malformed or cannot be represented.

    ``kind`` is the reference reader's error name (``HeaderTooSmall``,
    ``HeaderTooLarge``, ``InvalidHeaderLength``, ``InvalidHeader``,
    ``InvalidHeaderDeserialization``, ``InvalidOffset``, ``ValidationOverflow``,
    ``MisalignedSlice``, ``TensorInvalidInfo``, ``MetadataIncompleteBuffer``) or
    ``UnsupportedDtype`` / ``InvalidTensor`` for what numpy cannot hold or write.
    """

    def __init__(self, path: str, kind: str, message: str, tensor: Optional[str] = None):
        self.path = str(path)
        self.kind = kind
        self.tensor = tensor
        where = f"{self.path}" + (f", tensor {tensor!r}" if tensor is not None else "")
        super().__init__(f"{where}: {message} [{kind}]")


class TensorInfo(NamedTuple):
    """One validated header entry; ``data_offsets`` are relative to the data buffer."""

    dtype: str
    shape: Tuple[int, ...]
    data_offsets: Tuple[int, int]


def _is_u64(v: object) -> bool:
    return type(v) is int and 0 <= v <= _U64_MAX


def _no_duplicates(path: str):
    def hook(pairs):
        obj = {}
        for k, v in pairs:
            if k in obj:
                raise SafetensorsError(path, "InvalidHeaderDeserialization", f"duplicate key {k!r} in header", k)
            obj[k] = v
        return obj
    return hook


def _deserialize(text: str, path: str) -> Tuple[Dict[str, TensorInfo], Dict[str, str]]:
    """JSON text -> (tensor infos, metadata), checking the header schema."""
    def bad(message: str, tensor: Optional[str] = None) -> SafetensorsError:
        return SafetensorsError(path, "InvalidHeaderDeserialization", message, tensor)

    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates(path))
    except SafetensorsError:
        raise
    except (ValueError, RecursionError) as e:  # JSONDecodeError, over-long integers, deep nesting
        raise bad(f"header is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise bad(f"header must be a JSON object, got {type(obj).__name__}")
    metadata: Dict[str, str] = {}
    infos: Dict[str, TensorInfo] = {}
    for name, entry in obj.items():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise bad("key is not valid Unicode (lone surrogate)", name) from None
        if name == "__metadata__":
            if entry is None:
                continue
            if not isinstance(entry, dict):
                raise bad(f"__metadata__ must be an object of strings, got {type(entry).__name__}")
            for k, v in entry.items():
                if not isinstance(v, str):
                    raise bad(f"__metadata__ value for key {k!r} is {type(v).__name__}, not a string")
                try:
                    (k + v).encode("utf-8")
                except UnicodeEncodeError:
                    raise bad(f"__metadata__ entry {k!r} is not valid Unicode") from None
            metadata = entry
            continue
        if not isinstance(entry, dict):
            raise bad(f"entry must be an object with dtype, shape, data_offsets, got {type(entry).__name__}", name)
        for field in ("dtype", "shape", "data_offsets"):
            if field not in entry:
                raise bad(f"missing field {field!r}", name)
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            raise bad(f"unknown dtype {dtype!r}", name)
        if not isinstance(shape, list) or not all(_is_u64(d) for d in shape):
            raise bad(f"shape must be a list of non-negative integers, got {shape!r}", name)
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_u64(o) for o in offsets)):
            raise bad(f"data_offsets must be [begin, end] non-negative integers, got {offsets!r}", name)
        infos[name] = TensorInfo(dtype, tuple(shape), (offsets[0], offsets[1]))
    return infos, metadata


def _validate(infos: Dict[str, TensorInfo], path: str) -> int:
    """Check offsets and sizes in data_offsets order; return the end of the data buffer."""
    start = 0
    for name, info in sorted(infos.items(), key=lambda item: item[1].data_offsets):
        begin, end = info.data_offsets
        if begin != start or end < begin:
            what = "overlaps the previous tensor" if begin < start else (
                "leaves a gap after the previous tensor" if begin > start else "ends before it begins")
            raise SafetensorsError(path, "InvalidOffset",
                                   f"data_offsets [{begin}, {end}] {what} (expected begin {start})", name)
        start = end
        numel = 1
        for dim in info.shape:  # stop at the first overflow, as the reference's checked_mul fold does
            numel *= dim
            if numel > _U64_MAX:
                break
        nbits = numel * DTYPE_BITS[info.dtype]
        if nbits > _U64_MAX:
            raise SafetensorsError(path, "ValidationOverflow", f"shape {list(info.shape)} overflows", name)
        if nbits % 8:
            raise SafetensorsError(path, "MisalignedSlice",
                                   f"{numel} x {info.dtype} is not a whole number of bytes", name)
        if end - begin != nbits // 8:
            raise SafetensorsError(path, "TensorInvalidInfo",
                                   f"shape {list(info.shape)} of {info.dtype} needs {nbits // 8} bytes "
                                   f"but data_offsets [{begin}, {end}] span {end - begin}", name)
    return start


def _read_validated(f, path: str) -> Tuple[Dict[str, TensorInfo], Dict[str, str], int]:
    """Validate the whole header of open file ``f``; return (infos, metadata, data start)."""
    size = os.fstat(f.fileno()).st_size
    head = f.read(8)
    if len(head) < 8:
        raise SafetensorsError(path, "HeaderTooSmall", f"file is {size} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER_SIZE:
        raise SafetensorsError(path, "HeaderTooLarge", f"header length {n} exceeds {MAX_HEADER_SIZE}")
    if 8 + n > size:
        raise SafetensorsError(path, "InvalidHeaderLength", f"header length {n} runs past the end of the {size}-byte file")
    raw = f.read(n)
    if len(raw) != n:
        raise SafetensorsError(path, "InvalidHeaderLength", f"file ended inside the {n}-byte header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SafetensorsError(path, "InvalidHeader", f"header is not UTF-8: {e}") from None
    infos, metadata = _deserialize(text, path)
    end = _validate(infos, path)
    if end + 8 + n != size:
        last = max(infos, key=lambda k: infos[k].data_offsets) if infos else None
        raise SafetensorsError(path, "MetadataIncompleteBuffer",
                               f"header describes {8 + n + end} bytes but the file has {size}"
                               + (" (truncated?)" if size < 8 + n + end else " (trailing bytes)"), last)
    return infos, metadata, 8 + n


def _check_numpy_shape(info: TensorInfo, path: str, name: str) -> None:
    """numpy holds at most 64 dimensions, each below 2**63, whose non-zero product times the item
    size stays below 2**63; the format allows more (a zero-size tensor may declare any dims)."""
    nonzero = 1
    for dim in info.shape:
        nonzero *= max(dim, 1)
    if len(info.shape) > 64 or any(d >= 1 << 63 for d in info.shape) or \
            nonzero * _TO_NUMPY[info.dtype].itemsize >= 1 << 63:
        raise SafetensorsError(path, "InvalidTensor",
                               f"shape of {len(info.shape)} dimensions {list(info.shape)[:8]}"
                               f"{'...' if len(info.shape) > 8 else ''} cannot be held by numpy (at most 64 "
                               f"dimensions, sizes below 2**63)", name)


def read_header(path: "os.PathLike[str] | str") -> Tuple[Dict[str, TensorInfo], Dict[str, str]]:
    """Validate ``path``'s header and return ``({name: TensorInfo}, metadata)``.

    ``metadata`` is the ``__metadata__`` string map (``{}`` when absent). Reads
    only the header; raises :class:`SafetensorsError` on any violation.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        infos, metadata, _ = _read_validated(f, path)
    return infos, metadata


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 values (given as uint16 bit patterns) to float32, exactly (one new
    array: the shift is in place)."""
    wide = np.asarray(bits, dtype="<u2").astype("<u4")
    wide <<= 16
    return wide.view("<f4")


class BFloat16Bits:
    """A bfloat16 tensor as its file stores it, for a caller that widens one tensor at a time
    (loading a model then never holds a float32 copy of every tensor at once).

    ``bits`` holds the uint16 bit patterns (from :func:`load_file` with its default ``mmap=True``:
    a read-only view of the file's memory map where the file allows, which :func:`release_pages`
    accepts); :meth:`widen` returns the float32 values, and :func:`save_file` writes it as BF16.
    numpy has no bfloat16, so this is deliberately not an array: converting it with numpy
    (``np.asarray``, ``np.ascontiguousarray(x, np.float32)``, ...) raises TypeError rather than
    reading the bit patterns as numbers."""

    __slots__ = ("bits",)

    def __init__(self, bits: np.ndarray):
        if bits.dtype != np.dtype("<u2"):
            raise TypeError(f"bfloat16 bit patterns are uint16, got {bits.dtype}")
        self.bits = bits

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.bits.shape

    def widen(self) -> np.ndarray:
        """The values as a new read-only float32 array (exact)."""
        out = bf16_to_float32(self.bits)
        out.flags.writeable = False
        return out

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        raise TypeError("a BFloat16Bits holds bfloat16 bit patterns, not numbers: call .widen() for float32 values")

    def __repr__(self) -> str:
        return f"BFloat16Bits(shape={self.shape})"


def load_file(path: "os.PathLike[str] | str", mmap: bool = True,
              widen_bf16: bool = True) -> Dict[str, "np.ndarray | BFloat16Bits"]:
    """Load every tensor of ``path`` as ``{name: numpy.ndarray}`` (header order).

    With ``mmap=True`` (default) arrays are read-only views of a memory map of
    the file (copied only when a tensor is misaligned in the file or is BF16,
    which becomes float32); the file must not be modified in place while they
    live (:func:`save_file` replaces files atomically, which is safe). With
    ``mmap=False`` the file is read into memory and arrays are writable.
    ``widen_bf16=False`` returns BF16 tensors as :class:`BFloat16Bits` (their
    stored bits, views of the map like the other dtypes) instead of float32.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        infos, _, start = _read_validated(f, path)
        for name, info in infos.items():
            if info.dtype not in _TO_NUMPY:
                raise SafetensorsError(path, "UnsupportedDtype",
                                       f"dtype {info.dtype} has no numpy equivalent", name)
            _check_numpy_shape(info, path, name)
        if mmap:
            buf = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
        else:
            f.seek(0)
            buf = bytearray(f.read())
    out: Dict[str, "np.ndarray | BFloat16Bits"] = {}
    for name, info in infos.items():
        dt, bf16 = _TO_NUMPY[info.dtype], info.dtype == "BF16"
        begin, end = info.data_offsets
        if end == begin:
            arr = np.zeros(info.shape, dtype=dt)
        else:
            arr = np.frombuffer(buf, dtype=dt, count=(end - begin) // dt.itemsize,
                                offset=start + begin).reshape(info.shape)
            if not arr.flags.aligned:
                arr = arr.copy()
        if bf16 and widen_bf16:
            arr = bf16_to_float32(arr)
        if mmap:
            arr.flags.writeable = False
        out[name] = BFloat16Bits(arr) if bf16 and not widen_bf16 else arr
    return out


def release_pages(arr: np.ndarray) -> None:
    """Drop the file pages under ``arr``, a memory-mapped array of :func:`load_file` (or of
    :func:`multienc.formats.torch_pickle.load_file`, which maps its storages the same way), from
    this process's resident memory, once its values have been copied elsewhere: the pages stay in the
    kernel's page cache and reading ``arr`` again maps them back in, so ``arr`` keeps its values.
    Loading copies each tensor and releases it, so a model's file is never resident whole beside
    its copy. Nothing to do for an array that is not a view of such a map."""
    view = arr
    while isinstance(view, np.ndarray):
        view = view.base
    if (not isinstance(view, memoryview) or not isinstance(view.obj, _mmap.mmap) or arr.nbytes == 0
            or not arr.flags.c_contiguous):
        return
    mapped = view.obj
    start = arr.ctypes.data - np.frombuffer(mapped, np.uint8).ctypes.data
    page = _mmap.PAGESIZE
    first, end = start // page * page, min(len(mapped), -(-(start + arr.nbytes) // page) * page)
    mapped.madvise(_mmap.MADV_DONTNEED, first, end - first)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_file(tensors: Mapping[str, "np.ndarray | BFloat16Bits"], path: "os.PathLike[str] | str",
              metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write ``tensors`` to ``path`` in the reference writer's byte layout.

    Tensors are laid out by dtype (widest first, the reference enum order
    reversed), then by name; ``__metadata__`` comes first in the compact JSON
    header, which is padded with spaces to a multiple of 8. The file is written
    to a temporary file in the same folder, fsynced and renamed over ``path``,
    so ``path`` is either the old file or the complete new one. Arrays must
    have a numpy dtype with a safetensors equivalent; BF16 tensors are written
    from :class:`BFloat16Bits` (what ``load_file(..., widen_bf16=False)`` returns).
    """
    path = os.fspath(path)
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SafetensorsError(path, "InvalidHeaderDeserialization",
                                       f"metadata must map str to str, got {k!r}: {type(v).__name__}")
    entries = []
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise SafetensorsError(path, "InvalidTensor", "tensor names must be strings other than '__metadata__'",
                                   str(name))
        if isinstance(value, BFloat16Bits):
            dtype, arr = "BF16", value.bits
        else:
            arr = np.asarray(value)
            dtype = _FROM_NUMPY.get(arr.dtype.str[1:])
            if dtype is None:
                raise SafetensorsError(path, "UnsupportedDtype", f"numpy dtype {arr.dtype} has no safetensors dtype",
                                       name)
        data = np.require(arr, dtype=_TO_NUMPY[dtype], requirements="C")
        entries.append((name, dtype, data))
    entries.sort(key=lambda e: (-_DTYPE_RANK[e[1]], e[0]))

    header: Dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset = 0
    for name, dtype, data in entries:
        header[name] = {"dtype": dtype, "shape": list(data.shape), "data_offsets": [offset, offset + data.nbytes]}
        offset += data.nbytes
    try:
        blob = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError as e:
        raise SafetensorsError(path, "InvalidTensor", f"name or metadata is not valid Unicode: {e}") from None
    blob += b" " * (-len(blob) % 8)
    if len(blob) > MAX_HEADER_SIZE:
        raise SafetensorsError(path, "HeaderTooLarge", f"header would be {len(blob)} bytes")

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(struct.pack("<Q", len(blob)))
            out.write(blob)
            for _, _, data in entries:
                if data.nbytes:
                    out.write(data.reshape(-1).view(np.uint8).data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
