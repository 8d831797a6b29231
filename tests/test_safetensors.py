"""multienc.formats.safetensors against files written by the reference ``safetensors`` package
(tests/fixtures/weights/, made by tools/make_weight_fixtures.py) and against crafted corrupt files."""
import json
import os
import struct

import numpy as np
import pytest

from multienc.formats import safetensors as st
from multienc.formats.safetensors import SafetensorsError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "weights")


def fixture(name):
    return os.path.join(FIXTURES, name)


def expected(name):
    with np.load(fixture(name)) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------- reading reference files

@pytest.mark.parametrize("mmap", [True, False])
def test_reads_every_numpy_dtype_written_by_reference(mmap):
    want = expected("st_numpy.npz")
    got = st.load_file(fixture("st_numpy.safetensors"), mmap=mmap)
    assert sorted(got) == sorted(want)
    for name, ref in want.items():
        assert got[name].dtype == ref.dtype, name
        assert got[name].shape == ref.shape, name
        np.testing.assert_array_equal(got[name], ref, err_msg=name)
        assert got[name].flags.writeable is (not mmap), name
        assert got[name].flags.aligned, name
    assert got["scalar"].shape == () and got["empty"].shape == (0, 3)


def test_bf16_is_widened_to_float32_exactly():
    want = expected("st_torch.npz")
    got = st.load_file(fixture("st_torch.safetensors"))
    assert got["bf16"].dtype == np.float32 and got["bf16"].shape == (3, 5)
    np.testing.assert_array_equal(got["bf16"], want["bf16"])
    assert got["f16"].dtype == np.float16 and got["i64"].dtype == np.int64
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_bf16_can_come_as_its_stored_bits_and_is_written_back_byte_identical(tmp_path):
    """widen_bf16=False: BF16 tensors come as BFloat16Bits, views of the map whose widen() is the
    reference's values; saving them gives back the reference writer's file byte for byte."""
    want = expected("st_torch.npz")
    got = st.load_file(fixture("st_torch.safetensors"), widen_bf16=False)
    bf16 = got["bf16"]
    assert isinstance(bf16, st.BFloat16Bits) and bf16.shape == (3, 5)
    assert bf16.bits.dtype == np.uint16 and not bf16.bits.flags.owndata and not bf16.bits.flags.writeable
    np.testing.assert_array_equal(bf16.widen(), want["bf16"])
    assert got["f16"].dtype == np.float16 and got["i64"].dtype == np.int64
    out = tmp_path / "again.safetensors"
    st.save_file(got, out, metadata={"format": "pt"})
    assert out.read_bytes() == open(fixture("st_torch.safetensors"), "rb").read()


def test_read_header_returns_validated_infos_and_metadata():
    infos, metadata = st.read_header(fixture("st_torch.safetensors"))
    assert metadata == {"format": "pt"}
    assert infos["bf16"] == st.TensorInfo("BF16", (3, 5), (40, 70))
    assert infos["i64"] == st.TensorInfo("I64", (1, 3), (0, 24))
    assert st.bf16_to_float32(np.array([0x3F80, 0xC000, 0x7F80], dtype=np.uint16)).tolist() == [1.0, -2.0, np.inf]


# ---------------------------------------------------------------- writing

def test_writer_is_byte_identical_to_reference(tmp_path):
    out = tmp_path / "model.safetensors"
    st.save_file(expected("st_numpy.npz"), out, metadata={"format": "np"})
    assert out.read_bytes() == open(fixture("st_numpy.safetensors"), "rb").read()


def test_round_trip_converts_byte_order_and_layout(tmp_path):
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensors = {
        "big_endian": np.arange(5, dtype=">i8"),
        "transposed": base.T,                      # not C-contiguous
        "strided": base[:, ::2],
        "unicode.näme": np.ones(2, dtype=np.float16),
    }
    out = tmp_path / "x.safetensors"
    st.save_file(tensors, out, metadata={"k": "v", "a": "b"})
    got = st.load_file(out)
    for name, ref in tensors.items():
        np.testing.assert_array_equal(got[name], ref, err_msg=name)
    assert got["big_endian"].dtype == np.dtype("<i8")
    assert st.read_header(out)[1] == {"a": "b", "k": "v"}
    assert (os.stat(out).st_mode & 0o777) == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_empty_file_round_trip(tmp_path):
    out = tmp_path / "empty.safetensors"
    st.save_file({}, out)
    assert out.read_bytes() == struct.pack("<Q", 8) + b"{}      "
    assert st.load_file(out) == {} and st.read_header(out) == ({}, {})


def test_overwrite_keeps_earlier_mmapped_arrays_valid(tmp_path):
    out = tmp_path / "w.safetensors"
    st.save_file({"a": np.full(1000, 1.0, np.float32)}, out)
    old = st.load_file(out)["a"]
    st.save_file({"a": np.full(10, 2.0, np.float32)}, out)
    assert old.shape == (1000,) and float(old.sum()) == 1000.0
    assert st.load_file(out)["a"].tolist() == [2.0] * 10


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "w.safetensors"
    st.save_file({"a": np.zeros(3, np.float32)}, out)
    before = out.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")
    monkeypatch.setattr(st.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        st.save_file({"a": np.ones(3, np.float32)}, out)
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.safetensors"]


@pytest.mark.parametrize("tensors, metadata, match", [
    ({"obj": np.array([object()])}, None, "tensor 'obj'.*no safetensors dtype"),
    ({"s": np.array(["x"])}, None, "tensor 's'.*no safetensors dtype"),
    ({"__metadata__": np.zeros(1)}, None, "__metadata__"),
    ({"a": np.zeros(1)}, {"n": 1}, "str to str"),
])
def test_writer_rejects_what_it_cannot_encode(tmp_path, tensors, metadata, match):
    out = tmp_path / "bad.safetensors"
    with pytest.raises(SafetensorsError, match=match):
        st.save_file(tensors, out, metadata)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- corrupt files

def craft(tmp_path, header, data=b"", n=None, raw_header=None):
    """A safetensors file from a header dict (or raw header bytes) and data bytes;
    with neither header, ``data`` is the whole file."""
    path = tmp_path / "bad.safetensors"
    if header is None and raw_header is None:
        path.write_bytes(data)
        return str(path)
    blob = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob) if n is None else n) + blob + data)
    return str(path)


def t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


CORRUPT = [
    # (id, header, data, n override, raw header, expected kind, tensor named in the message)
    ("too_small", None, b"\x08\0\0", None, None, "HeaderTooSmall", None),
    ("too_large", {}, b"", 100_000_001, None, "HeaderTooLarge", None),
    ("header_past_eof", {"a": t("F32", [1], 0, 4)}, b"\0" * 4, 10_000, None, "InvalidHeaderLength", None),
    ("not_utf8", None, b"", None, b'{"\xff":1}', "InvalidHeader", None),
    ("not_json", None, b"", None, b"{not json", "InvalidHeaderDeserialization", None),
    ("not_object", None, b"", None, b"[1, 2]", "InvalidHeaderDeserialization", None),
    ("unknown_dtype", {"w": t("F128", [1], 0, 16)}, b"\0" * 16, None, None, "InvalidHeaderDeserialization", "w"),
    ("missing_field", {"w": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, None, None,
     "InvalidHeaderDeserialization", "w"),
    ("negative_dim", {"w": t("F32", [-1], 0, 4)}, b"\0" * 4, None, None, "InvalidHeaderDeserialization", "w"),
    ("bool_dim", {"w": t("F32", [True], 0, 4)}, b"\0" * 4, None, None, "InvalidHeaderDeserialization", "w"),
    ("float_offset", {"w": t("F32", [1], 0, 4.0)}, b"\0" * 4, None, None, "InvalidHeaderDeserialization", "w"),
    ("three_offsets", {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}, b"\0" * 4, None, None,
     "InvalidHeaderDeserialization", "w"),
    ("metadata_not_string", {"__metadata__": {"epochs": 3}, "w": t("F32", [1], 0, 4)}, b"\0" * 4, None, None,
     "InvalidHeaderDeserialization", None),
    ("metadata_not_object", {"__metadata__": "x"}, b"", None, None, "InvalidHeaderDeserialization", None),
    ("duplicate_key", None, b"\0" * 4, None,
     b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
     "InvalidHeaderDeserialization", "w"),
    ("first_not_at_zero", {"w": t("F32", [1], 4, 8)}, b"\0" * 8, None, None, "InvalidOffset", "w"),
    ("overlap", {"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, b"\0" * 12, None, None, "InvalidOffset", "b"),
    ("gap", {"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, b"\0" * 12, None, None, "InvalidOffset", "b"),
    ("end_before_begin", {"a": t("F32", [1], 0, 4), "b": t("F32", [0], 4, 2)}, b"\0" * 4, None, None,
     "InvalidOffset", "b"),
    ("size_mismatch", {"w": t("F32", [2, 3], 0, 20)}, b"\0" * 20, None, None, "TensorInvalidInfo", "w"),
    ("overflow", {"w": t("F32", [2**32, 2**32], 0, 4)}, b"\0" * 4, None, None, "ValidationOverflow", "w"),
    ("overflow_before_zero_dim", {"w": t("F32", [2**63, 2**63, 0], 0, 0)}, b"", None, None, "ValidationOverflow", "w"),
    ("misaligned_bits", {"w": t("F4", [3], 0, 2)}, b"\0" * 2, None, None, "MisalignedSlice", "w"),
    ("out_of_range", {"w": t("F32", [4], 0, 16)}, b"\0" * 8, None, None, "MetadataIncompleteBuffer", "w"),
    ("trailing_bytes", {"w": t("F32", [1], 0, 4)}, b"\0" * 5, None, None, "MetadataIncompleteBuffer", "w"),
]


@pytest.mark.parametrize("case", CORRUPT, ids=[c[0] for c in CORRUPT])
@pytest.mark.parametrize("reader", ["read_header", "load_file"])
def test_corrupt_files_are_rejected_with_the_reference_error(tmp_path, case, reader):
    _, header, data, n, raw, kind, tensor = case
    path = craft(tmp_path, header, data, n, raw)
    with pytest.raises(SafetensorsError) as info:
        getattr(st, reader)(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.kind == kind
    assert path in str(err)
    assert err.tensor == tensor
    if tensor is not None:
        assert repr(tensor) in str(err)


@pytest.mark.parametrize("cut", [1, 300])
def test_truncated_reference_file_is_rejected(tmp_path, cut):
    data = open(fixture("st_torch.safetensors"), "rb").read()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:-cut])
    with pytest.raises(SafetensorsError) as info:
        st.load_file(path)
    assert info.value.kind == ("MetadataIncompleteBuffer" if cut == 1 else "InvalidHeaderLength")


def test_valid_edge_cases_are_accepted(tmp_path):
    # leading whitespace, zero-size tensors sharing an offset, null metadata, unaligned F32 after one byte
    raw = (b' {"__metadata__":null,"z0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},'
           b'"z1":{"dtype":"I64","shape":[2,0],"data_offsets":[0,0]},'
           b'"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
           b'"f":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}}')
    path = craft(tmp_path, None, b"\x07" + np.array([1.5, -2.0], "<f4").tobytes(), raw_header=raw)
    got = st.load_file(path)
    assert got["z0"].shape == (0,) and got["z1"].shape == (2, 0) and got["z1"].dtype == np.int64
    assert got["b"].tolist() == [7]
    assert got["f"].tolist() == [1.5, -2.0] and got["f"].flags.aligned and not got["f"].flags.writeable
    assert st.read_header(path)[1] == {}


def test_fp8_header_is_valid_but_not_loadable(tmp_path):
    path = craft(tmp_path, {"q": t("F8_E4M3", [2], 0, 2)}, b"\0\0")
    assert st.read_header(path)[0]["q"].dtype == "F8_E4M3"
    with pytest.raises(SafetensorsError, match="tensor 'q'.*F8_E4M3") as info:
        st.load_file(path)
    assert info.value.kind == "UnsupportedDtype"


def _mapped_rss_kib(path) -> int:
    """Resident KiB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


def test_release_pages_drops_a_loaded_tensors_pages_and_keeps_its_values(tmp_path):
    """Loading copies each tensor out of the memory map and then releases its pages, so that a
    model's file is never resident whole beside its copy: release_pages unmaps them from this
    process (the mapping's resident size falls to nothing) and a later read maps them back with
    the same values. Arrays that are not views of a map (written ones, a converted bf16) are left."""
    path = tmp_path / "big.safetensors"
    want = {"a": np.arange(600 * 500, dtype=np.float32).reshape(600, 500), "b": np.full(70_001, 0.5, np.float32)}
    st.save_file(want, str(path))
    got = st.load_file(str(path))
    assert sum(float(v.sum()) for v in got.values()) == float(want["a"].sum()) + 0.5 * 70_001  # every page read
    assert _mapped_rss_kib(path) >= (600 * 500 + 70_001) * 4 // 1024
    for v in got.values():
        st.release_pages(v)
    assert _mapped_rss_kib(path) == 0
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    own = np.ones(4, np.float32)
    st.release_pages(own)
    st.release_pages(st.bf16_to_float32(np.array([0x3F80], np.uint16)))
    np.testing.assert_array_equal(own, 1.0)
