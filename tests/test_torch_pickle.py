"""multienc.formats.torch_pickle: torch.save checkpoints read without torch, and pickles that must never run.

The real checkpoints are made by tools/make_weight_fixtures.py with torch.save; their
safetensors twins by the safetensors package. Malicious pickles are built here with the
stdlib ``pickle`` module (and by hand, opcode by opcode, for tricks pickle.dumps never emits).
"""
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from multienc.formats import safetensors as st
from multienc.formats import torch_pickle as tp
from multienc.formats.torch_pickle import TorchPickleError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "weights")


@pytest.mark.parametrize("name", ["bin", "bin_half"])
def test_torch_save_checkpoint_matches_its_safetensors_twin(name):
    got = tp.load_file(os.path.join(FIXTURES, name, "pytorch_model.bin"))
    want = st.load_file(os.path.join(FIXTURES, f"{name}_twin.safetensors"))
    assert sorted(got) == sorted(want)
    for key, ref in want.items():
        assert got[key].dtype == ref.dtype, key
        assert got[key].shape == ref.shape, key
        np.testing.assert_array_equal(got[key], ref, err_msg=key)
        assert got[key].flags.c_contiguous and not got[key].flags.writeable, key


def test_fixture_covers_views_ties_and_dtypes():
    got = tp.load_file(os.path.join(FIXTURES, "bin", "pytorch_model.bin"))
    np.testing.assert_array_equal(got["embeddings.word_embeddings.weight"], got["cls.predictions.decoder.weight"])
    assert got["embeddings.position_ids"].tolist() == [list(range(8))]
    assert got["embeddings.position_ids"].dtype == np.int64
    assert got["LayerNorm.scale"].shape == () and got["empty"].shape == (0, 4)
    half = tp.load_file(os.path.join(FIXTURES, "bin_half", "pytorch_model.bin"))
    assert half["w_fp16"].dtype == np.float16 and half["w_bf16"].dtype == np.float32
    np.testing.assert_array_equal(half["w_bf16_view"], half["w_bf16"][:, 1:4])


def test_bf16_can_come_as_its_stored_bits():
    """widen_bf16=False: bfloat16 tensors come as BFloat16Bits whose widen() is the default's
    float32; a contiguous one is a view of the file's map, a strided view a copy of its bits."""
    wide = tp.load_file(os.path.join(FIXTURES, "bin_half", "pytorch_model.bin"))
    raw = tp.load_file(os.path.join(FIXTURES, "bin_half", "pytorch_model.bin"), widen_bf16=False)
    assert sorted(raw) == sorted(wide)
    for name in ("w_bf16", "w_bf16_view"):
        assert isinstance(raw[name], st.BFloat16Bits) and raw[name].bits.dtype == np.uint16, name
        np.testing.assert_array_equal(raw[name].widen(), wide[name], err_msg=name)
    assert not raw["w_bf16"].bits.flags.owndata and raw["w_bf16_view"].bits.flags.owndata
    assert raw["w_fp16"].dtype == np.float16
    np.testing.assert_array_equal(raw["w_fp16"], wide["w_fp16"])


def test_tied_bf16_tensors_share_one_float32_copy(tmp_path):
    """Widened (the default), a bfloat16 storage becomes float32 once and the tensors on it (a tied
    weight, a view) stay views of that copy, as torch's are of their storage; as bits they are
    views of the file's map."""
    bits = (np.arange(6, dtype="<f4").view(np.uint32) >> 16).astype("<u2")
    path = write_bin(tmp_path / "tied.bin", state_dict(
        S("a"), tensor("0", 6, 0, (2, 3), (3, 1), "BFloat16Storage"),
        S("b"), tensor("0", 6, 0, (2, 3), (3, 1), "BFloat16Storage"),
        S("row"), tensor("0", 6, 3, (3,), (1,), "BFloat16Storage")), {"0": bits.tobytes()}, align=True)
    got = tp.load_file(path)
    assert got["a"].tolist() == [[0, 1, 2], [3, 4, 5]] and got["row"].tolist() == [3, 4, 5]
    assert np.shares_memory(got["a"], got["b"]) and np.shares_memory(got["a"], got["row"])
    raw = tp.load_file(path, widen_bf16=False)
    assert np.shares_memory(raw["a"].bits, raw["b"].bits) and not raw["a"].bits.flags.owndata
    np.testing.assert_array_equal(raw["row"].widen(), got["row"])


def test_legacy_format_is_refused_clearly():
    path = os.path.join(FIXTURES, "legacy.bin")
    with pytest.raises(TorchPickleError, match="legacy .*non-zip.* format") as info:
        tp.load_file(path)
    assert path in str(info.value)


def test_non_checkpoint_files_are_refused(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(TorchPickleError, match="not a torch zip checkpoint"):
        tp.load_file(path)
    good = open(os.path.join(FIXTURES, "bin", "pytorch_model.bin"), "rb").read()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(TorchPickleError, match="corrupt zip"):
        tp.load_file(path)


# ------------------------------------------------------------------ hand-assembled pickles

def G(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def S(text):
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def I(n):
    return b"J" + struct.pack("<i", n)


def tup(*items):
    return b"(" + b"".join(items) + b"t"


def tensor(key, numel, offset, size, stride, storage="FloatStorage"):
    """Opcodes torch.save emits for one tensor (see HF-SEMANTICS.md §6)."""
    pid = tup(S("storage"), G("torch", storage), S(key), S("cpu"), I(numel)) + b"Q"
    hooks = G("collections", "OrderedDict") + b")R"
    return (G("torch._utils", "_rebuild_tensor_v2")
            + tup(pid, I(offset), tup(*map(I, size)), tup(*map(I, stride)), b"\x89", hooks) + b"R")


def state_dict(*entries):
    return b"\x80\x02" + G("collections", "OrderedDict") + b")R(" + b"".join(entries) + b"u."


def write_bin(path, pkl, records=None, align=False):
    """A torch-style zip: archive/data.pkl, byteorder, data/<key> and version records; with
    ``align`` each record's bytes at a multiple of 64 in the file, as torch.save places them
    (padding in the local header's extra field)."""
    members = [("archive/data.pkl", pkl), ("archive/byteorder", b"little")]
    members += [(f"archive/data/{key}", data) for key, data in (records or {}).items()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members + [("archive/version", b"3\n")]:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            if align:
                pad = -(z.fp.tell() + 30 + len(name) + 4) % 64
                info.extra = struct.pack("<HH", 0x4246, pad) + bytes(pad)
            z.writestr(info, data)
    return str(path)


SIX = np.arange(6, dtype="<f4").tobytes()


def test_hand_assembled_state_dict_loads(tmp_path):
    path = write_bin(tmp_path / "ok.bin",
                     state_dict(S("w"), tensor("0", 6, 0, (2, 3), (3, 1)), S("wt"), tensor("0", 6, 1, (2, 2), (1, 3))),
                     {"0": SIX})
    got = tp.load_file(path)
    assert got["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert got["wt"].tolist() == [[1, 4], [2, 5]]


@pytest.mark.parametrize("pkl, records, match", [
    (state_dict(S("w"), tensor("0", 6, 4, (2, 3), (3, 1))), {"0": SIX}, "reaches element 9 of storage '0'"),
    (state_dict(S("w"), tensor("0", 7, 0, (7,), (1,))), {"0": SIX}, "has 24 bytes, FloatStorage of 7 needs 28"),
    (state_dict(S("w"), tensor("1", 6, 0, (6,), (1,))), {"0": SIX}, "archive/data/1 has no bytes"),
    (state_dict(S("w"), tensor("0", 3, 0, (3,), (1,), "DoubleStorage")), {"0": SIX},
     "global torch.DoubleStorage is not allowed"),
    (state_dict(S("w"), tensor("0", 6, 0, (2, 3), (-3, 1))), {"0": SIX}, "bad tensor geometry"),
    (state_dict(S("w"), I(3)), {}, "tensor 'w': state dict entry is int"),
    (b"\x80\x02]" + S("w") + b"a.", {}, "expected a state dict, found list"),
    (b"\x80\x04" + state_dict()[2:], {}, "refused: pickle protocol 4"),
    (state_dict(S("w"), tensor("0", 6, 0, (6,), (1,)))[:-5], {"0": SIX}, "malformed data.pkl"),
])
def test_malformed_checkpoints_are_rejected(tmp_path, pkl, records, match):
    path = write_bin(tmp_path / "bad.bin", pkl, records)
    with pytest.raises(TorchPickleError, match=match) as info:
        tp.load_file(path)
    assert path in str(info.value)


def test_flipped_storage_byte_fails_the_crc(tmp_path):
    path = write_bin(tmp_path / "crc.bin", state_dict(S("w"), tensor("0", 6, 0, (6,), (1,))), {"0": SIX})
    data = bytearray(open(path, "rb").read())
    data[data.find(SIX) + 3] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(TorchPickleError, match="corrupt zip archive.*CRC"):
        tp.load_file(path)


def test_storages_are_read_in_place_from_a_map_and_released(tmp_path):
    """load_file maps the file and reads each storage in place: after its CRC check the storage's
    pages leave this process (nothing of the map is resident once load_file returns), the arrays
    are read-only views of the map with the stored values, a strided view is a copy, and
    release_pages drops a view's pages again after a read (what Encoder loading does after
    copying each tensor), so a checkpoint is never held whole beside the model it loads into.
    (Reading a record's local header maps it and, by the kernel's fault-around, up to 64 KiB of
    file pages around it: what stays resident is at most that, against 2.3 MB of storages.)"""
    from test_safetensors import _mapped_rss_kib
    around = 64
    values = np.arange(600 * 500, dtype="<f4")
    path = write_bin(tmp_path / "big.bin",
                     state_dict(S("w"), tensor("0", values.size, 0, (600, 500), (500, 1)),
                                S("wt"), tensor("1", values.size, 0, (500, 600), (1, 500))),
                     {"0": values.tobytes(), "1": values.tobytes()}, align=True)
    got = tp.load_file(path)
    assert _mapped_rss_kib(path) <= around
    assert not got["w"].flags.writeable and not got["w"].flags.owndata
    np.testing.assert_array_equal(got["w"], values.reshape(600, 500))
    assert _mapped_rss_kib(path) >= values.nbytes // 1024
    st.release_pages(got["w"])
    assert _mapped_rss_kib(path) <= around
    np.testing.assert_array_equal(got["wt"], values.reshape(600, 500).T)
    assert _mapped_rss_kib(path) <= around  # the transposed view was copied at load


@pytest.mark.parametrize("flag", [0x1, 0x20, 0x40])
def test_a_storage_flagged_encrypted_or_patch_data_is_refused(tmp_path, flag):
    """Storages are read from the file's map, not through zipfile: the flags zipfile refuses
    (encryption, patch data, strong encryption) are refused for them too."""
    path = write_bin(tmp_path / "flag.bin", state_dict(S("w"), tensor("0", 6, 0, (6,), (1,))), {"0": SIX})
    data = bytearray(open(path, "rb").read())
    entry = data.find(b"PK\x01\x02")  # the central directory's entries, to the storage's
    while not data[entry + 46:].startswith(b"archive/data/0"):
        entry = data.find(b"PK\x01\x02", entry + 1)
    struct.pack_into("<H", data, entry + 8, flag)
    open(path, "wb").write(bytes(data))
    with pytest.raises(TorchPickleError, match=f"archive/data/0.* is compressed or encrypted .*flags {flag:#x}"):
        tp.load_file(path)


# ------------------------------------------------------------------ malicious pickles

class Reduce:
    """pickle.dumps(Reduce(f, args)) emits GLOBAL f + args + REDUCE, as an attacker's __reduce__ would."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker):
    """Pickles that each create ``marker`` when unpickled by the stdlib (proven in the test)."""
    touch = f"open({str(marker)!r}, 'w').close()"
    import builtins
    return {
        "os.system": pickle.dumps({"w": Reduce(os.system, (f"touch '{marker}'",))}, protocol=2),
        "builtins.eval": pickle.dumps(Reduce(builtins.eval, (touch,)), protocol=2),
        "builtins.exec": pickle.dumps(Reduce(builtins.exec, (touch,)), protocol=2),
        "os.system_by_name": b"\x80\x02" + G("os", "system") + tup(S(f"touch '{marker}'")) + b"R.",
        "subprocess.Popen": pickle.dumps(Reduce(subprocess.Popen, (["touch", str(marker)],)), protocol=2),
        # protocol 4: STACK_GLOBAL builds the callable's name from strings at run time
        "stack_global": pickle.dumps(Reduce(builtins.exec, (touch,)), protocol=4),
        # protocol 0: INST opcode instantiates module.name directly
        "inst": b"(V" + touch.encode() + b"\nibuiltins\nexec\n.",
        # an allowed callable reached, then an unlisted one hidden inside the state dict
        "hidden_in_state_dict": state_dict(S("w"), G("builtins", "exec") + tup(S(touch)) + b"R"),
        # BUILD / REDUCE on an allowed global that is not an allowed callable
        "build_on_storage": b"\x80\x02" + G("torch", "FloatStorage") + b"}" + S("x") + S("y") + b"sb.",
        "reduce_on_storage": b"\x80\x02" + G("torch", "FloatStorage") + tup(I(3)) + b"R.",
        # persistent id that is not a storage reference
        "persid_not_storage": b"\x80\x02" + tup(S("module"), S("os"), S("system")) + b"Q.",
    }


@pytest.mark.parametrize("kind", list(payloads("x")))
def test_malicious_pickles_are_refused_and_never_run(tmp_path, kind):
    marker = tmp_path / "pwned"
    pkl = payloads(marker)[kind]
    path = write_bin(tmp_path / "evil.bin", pkl)
    with pytest.raises(TorchPickleError, match="refused") as info:
        tp.load_file(path)
    assert path in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["os.system", "os.system_by_name", "builtins.eval", "builtins.exec",
                                  "subprocess.Popen", "stack_global", "inst"])
def test_payloads_are_live_under_the_stdlib_unpickler(tmp_path, kind):
    """Control: the same bytes really do create the file when given to pickle.loads (in a child process)."""
    marker = tmp_path / "control"
    pkl = payloads(marker)[kind]
    script = "import pickle, sys; obj = pickle.loads(sys.stdin.buffer.read()); getattr(obj, 'wait', int)()"
    subprocess.run([sys.executable, "-c", script],
                   input=pkl, check=False, timeout=60, capture_output=True)
    assert marker.exists()
