"""Input mutators for the fuzz harnesses: bytes, JSON trees, safetensors headers, torch zips and
bundles of named files. Every function takes a ``random.Random`` and returns new bytes; none of
them needs the format to be valid (a mutator that cannot parse its input falls back to bytes)."""
from __future__ import annotations

import copy
import io
import json
import random
import struct
import zipfile
import zlib
from typing import Any, Callable, Dict, List

# Values that broke parsers before: huge and negative integers, non-finite floats, wrong types.
INTERESTING_JSON: List[Any] = [
    0, 1, -1, 2, 255, 256, 2 ** 15, 2 ** 16, 2 ** 30 - 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 63 - 1,
    2 ** 63, 2 ** 64, -(2 ** 63), 10 ** 30, 1e308, 1e-320, -0.0, 0.5, float("nan"), float("inf"), float("-inf"),
    True, False, None, "", "x", "\x00", "\ud800", "[UNK]", "A", "B", "##", "é" * 3, [], [1], [None], ["a", "b"],
    {}, {"type": "x"}, {"content": ""}, [[[[[]]]]], "a" * 300,
]
INTERESTING_BYTES = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\x00\x00\x00\x80",
                     b"\xff\xff\xff\x7f", b"\x00" * 8, b"\xff" * 8, b"\n", b"\t", b'"', b"\\", b"{", b"]", b"\xc3",
                     b"\xed\xa0\x80", b"NaN", b"Infinity", b"-1", b"1e999", b"99999999999999999999"]


def mutate_bytes(rnd: random.Random, data: bytes, pool: List[bytes]) -> bytes:
    """One to eight byte-level edits: flips, interesting values, inserts, deletes, copies, splices."""
    buf = bytearray(data)
    for _ in range(rnd.choice([1, 1, 2, 3, 8])):
        n = len(buf)
        kind = rnd.randrange(8)
        if kind == 0 and n:
            buf[rnd.randrange(n)] ^= 1 << rnd.randrange(8)
        elif kind == 1 and n:
            v = rnd.choice(INTERESTING_BYTES)
            i = rnd.randrange(n)
            buf[i:i + len(v)] = v
        elif kind == 2:
            i = rnd.randrange(n + 1)
            buf[i:i] = rnd.choice(INTERESTING_BYTES) if rnd.random() < 0.5 else bytes(rnd.randrange(256)
                                                                                       for _ in range(rnd.randrange(1, 9)))
        elif kind == 3 and n:
            i = rnd.randrange(n)
            del buf[i:i + rnd.randrange(1, min(64, n - i) + 1)]
        elif kind == 4 and n:
            i, j = rnd.randrange(n), rnd.randrange(n)
            chunk = buf[i:i + rnd.randrange(1, 65)]
            buf[j:j] = chunk * rnd.choice([1, 1, 2, 16])
        elif kind == 5 and pool:
            other = rnd.choice(pool)
            if other:
                i, j = rnd.randrange(n + 1), rnd.randrange(len(other))
                buf[i:] = other[j:j + rnd.randrange(1, 4096)] + buf[i:]
        elif kind == 6 and n:
            del buf[rnd.randrange(n):]
        elif kind == 7 and n >= 4:
            i = rnd.randrange(n - 3)
            struct.pack_into("<I", buf, i, rnd.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, n, n * 2]))
    return bytes(buf)


def _paths(node: Any, path: tuple = ()) -> List[tuple]:
    out = [path]
    if len(path) >= 64:
        return out
    if isinstance(node, dict):
        for k, v in list(node.items())[:200]:
            out += _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:50]):
            out += _paths(v, path + (i,))
    return out


def _get(node: Any, path: tuple) -> Any:
    for p in path:
        node = node[p]
    return node


def mutate_json_tree(rnd: random.Random, tree: Any) -> Any:
    """Replace, delete, duplicate or retype one node of a parsed JSON value (in place when possible)."""
    paths = _paths(tree)
    for _ in range(rnd.choice([1, 1, 2, 4])):
        path = rnd.choice(paths)
        value = copy.deepcopy(rnd.choice(INTERESTING_JSON))  # never share (and so never mutate) the table
        if not path:
            if rnd.random() < 0.05:
                return value
            continue
        parent, key = _get(tree, path[:-1]), path[-1]
        try:
            old = parent[key]
        except (KeyError, IndexError, TypeError):
            continue
        kind = rnd.randrange(6)
        if kind == 0 and isinstance(parent, dict):
            del parent[key]
        elif kind == 1 and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(old))
        elif kind == 2 and isinstance(old, int) and not isinstance(old, bool):
            parent[key] = old + rnd.choice([-1, 1, 2 ** 31, -(2 ** 31), old, -2 * old])
        elif kind == 3 and isinstance(old, str):
            parent[key] = old + rnd.choice(["", "\x00", "é", " ", "##", "\ud800"]) if rnd.random() < 0.5 else old[::-1]
        elif kind == 4 and isinstance(parent, dict):
            parent[rnd.choice(["type", "id", "vocab", "ids", "type_id", "content", "x", "", key + "_"])] = value
        else:
            parent[key] = value
        paths = _paths(tree)
    return tree


def mutate_json(rnd: random.Random, data: bytes, pool: List[bytes]) -> bytes:
    """A structural edit of the JSON in ``data`` (bytes edits when it does not parse)."""
    try:
        tree = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return mutate_bytes(rnd, data, pool)
    if rnd.random() < 0.15:
        return mutate_bytes(rnd, data, pool)
    tree = mutate_json_tree(rnd, tree)
    try:
        return json.dumps(tree, ensure_ascii=rnd.random() < 0.5).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return data


def mutate_safetensors(rnd: random.Random, data: bytes, pool: List[bytes],
                       meta_json: bool = False) -> bytes:
    """Edit the header JSON (and keep its length field right), or with ``meta_json`` one of the
    JSON values inside ``__metadata__`` (multienc checkpoints); bytes edits otherwise."""
    if len(data) < 8 or rnd.random() < 0.2:
        return mutate_bytes(rnd, data, pool)
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        return mutate_bytes(rnd, data, pool)
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return mutate_bytes(rnd, data, pool)
    rest = data[8 + n:]
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if meta_json and isinstance(meta, dict) and meta and rnd.random() < 0.85:
        key = rnd.choice(sorted(meta))
        try:
            value = json.loads(meta[key])
            meta[key] = json.dumps(mutate_json_tree(rnd, value), ensure_ascii=False)
        except (ValueError, TypeError, RecursionError):
            meta[key] = rnd.choice(["", "{}", "[]", "1", "null", meta[key][: len(meta[key]) // 2]])
    else:
        header = mutate_json_tree(rnd, header)
    try:
        blob = json.dumps(header, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return data
    blob += b" " * (-len(blob) % 8)
    return struct.pack("<Q", len(blob)) + blob + rest


PICKLE_SNIPPETS = [b"(", b"t", b")", b"}", b"]", b"N", b"\x85", b"\x86", b"\x87", b"\x88", b"\x89", b"s", b"u",
                   b"a", b"e", b"R", b"b", b"Q", b"0", b"q\x00", b"h\x00", b"r\xff\xff\xff\x7f", b"j\xff\xff\xff\x7f",
                   b"K\xff", b"M\xff\xff", b"J\xff\xff\xff\x7f", b"J\x00\x00\x00\x80", b"\x8a\x09" + b"\xff" * 9,
                   b"X\x00\x00\x00\x00", b"X\xff\xff\xff\x7f", b"U\x01\xff", b"G" + b"\x7f\xf0" + b"\x00" * 6,
                   b"ccollections\nOrderedDict\n", b"ctorch\nFloatStorage\n", b"ctorch._utils\n_rebuild_tensor_v2\n",
                   b"cos\nsystem\n", b"\x80\x02", b"\x80\x05", b"."]


# What reading a damaged zip raises (the mutator then edits the archive's bytes instead).
_ZIP_DAMAGE = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
               RuntimeError, zlib.error, OverflowError)


def _zip_members(data: bytes) -> Dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _zip(members: Dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, content in members.items():
            z.writestr(name, content)
    return out.getvalue()


def mutate_torch_zip(rnd: random.Random, data: bytes, pool: List[bytes]) -> bytes:
    """Edit data.pkl (opcode snippets or bytes) or another record and re-zip with valid CRCs; or
    edit the zip's own bytes."""
    if rnd.random() < 0.25:
        return mutate_bytes(rnd, data, pool)
    try:
        members = _zip_members(data)
    except _ZIP_DAMAGE:
        return mutate_bytes(rnd, data, pool)
    if not members:
        return mutate_bytes(rnd, data, pool)
    pkl = [n for n in members if n.endswith("data.pkl")]
    name = pkl[0] if pkl and rnd.random() < 0.8 else rnd.choice(sorted(members))
    body = bytearray(members[name])
    if name.endswith("data.pkl") and rnd.random() < 0.6:
        for _ in range(rnd.choice([1, 2, 4])):
            i = rnd.randrange(len(body) + 1)
            snippet = rnd.choice(PICKLE_SNIPPETS)
            if rnd.random() < 0.5:
                body[i:i] = snippet * rnd.choice([1, 1, 3, 200])
            else:
                body[i:i + len(snippet)] = snippet
    else:
        body = bytearray(mutate_bytes(rnd, bytes(body), pool))
    members[name] = bytes(body)
    if rnd.random() < 0.1:
        members[rnd.choice(sorted(members)) + rnd.choice(["x", "/", "\u00e9"])] = b"little"
    return _zip(members)


def pack_bundle(files: Dict[str, bytes]) -> bytes:
    """Several named files as one input: per file a u16 name length, the UTF-8 name, a u32 size, the bytes."""
    out = bytearray()
    for name, content in files.items():
        raw = name.encode()
        out += struct.pack("<H", len(raw)) + raw + struct.pack("<I", len(content)) + content
    return bytes(out)


def unpack_bundle(data: bytes) -> Dict[str, bytes]:
    """The files of a bundle (a damaged tail is dropped)."""
    files, i = {}, 0
    while i + 2 <= len(data):
        (n,) = struct.unpack_from("<H", data, i)
        name = data[i + 2:i + 2 + n].decode("utf-8", "replace")
        i += 2 + n
        if i + 4 > len(data):
            break
        (size,) = struct.unpack_from("<I", data, i)
        files[name] = data[i + 4:i + 4 + size]
        i += 4 + size
    return files


def mutate_bundle(rnd: random.Random, data: bytes, pool: List[bytes],
                  per_file: Callable[[str], Callable[[random.Random, bytes, List[bytes]], bytes]]) -> bytes:
    """Edit one file of a bundle with the mutator ``per_file(name)`` picks; sometimes drop one."""
    files = unpack_bundle(data)
    if not files:
        return data
    name = rnd.choice(sorted(files))
    if rnd.random() < 0.05 and len(files) > 1:
        del files[name]
    else:
        files[name] = per_file(name)(rnd, files[name], [f for b in pool for f in unpack_bundle(b).values()])
    return pack_bundle(files)


def mutate_lines(rnd: random.Random, data: bytes, pool: List[bytes]) -> bytes:
    """Corpus-file edits: lines swapped, duplicated, emptied, fields replaced by odd values."""
    lines = data.split(b"\n")
    for _ in range(rnd.choice([1, 2, 3])):
        i = rnd.randrange(len(lines))
        kind = rnd.randrange(5)
        if kind == 0:
            fields = lines[i].split(b"\t")
            fields[rnd.randrange(len(fields))] = rnd.choice(
                [b"nan", b"inf", b"-Infinity", b"1e999", b"", b" ", b'"', b'"a""b', b"\xff", b"-DOCSTART-", b"B-",
                 b"I-X", b"0", b"-1", b"99", b"\t\t", b"\r", b"x" * 1000])
            lines[i] = b"\t".join(fields)
        elif kind == 1:
            lines.insert(i, lines[rnd.randrange(len(lines))])
        elif kind == 2:
            lines[i] = b""
        elif kind == 3:
            lines[i] = lines[i].replace(b"\t", rnd.choice([b" ", b",", b"\t\t", b""]))
        else:
            return mutate_bytes(rnd, data, pool)
    return b"\n".join(lines)
