"""multienc.formats.weights.load_state_dict: file choice, shards, dtype widening, clear errors."""
import json
import os
import shutil

import numpy as np
import pytest

from multienc.formats import safetensors as st
from multienc.formats import weights
from multienc.formats.safetensors import SafetensorsError
from multienc.formats.torch_pickle import TorchPickleError
from multienc.formats.weights import WeightsError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "weights")
TWIN = os.path.join(FIXTURES, "bin_twin.safetensors")


def reference():
    return st.load_file(TWIN)


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_pytorch_bin_folder_matches_safetensors_twin():
    assert_same(weights.load_state_dict(os.path.join(FIXTURES, "bin")), reference())


def test_sharded_pytorch_bin_matches_the_single_file():
    assert_same(weights.load_state_dict(os.path.join(FIXTURES, "bin_sharded")), reference())


def test_half_precision_becomes_float32_and_int64_stays():
    got = weights.load_state_dict(os.path.join(FIXTURES, "bin_half"))
    twin = st.load_file(os.path.join(FIXTURES, "bin_half_twin.safetensors"))
    assert got["w_fp16"].dtype == np.float32 and got["w_bf16"].dtype == np.float32
    assert got["ids"].dtype == np.int64
    np.testing.assert_array_equal(got["w_fp16"], twin["w_fp16"].astype(np.float32))
    np.testing.assert_array_equal(got["w_bf16"], twin["w_bf16"])


def test_half_precision_can_stay_as_stored_for_a_caller_that_widens_each_tensor():
    """widen=False (what an encoder's loading asks for) keeps float16 and bfloat16 tensors as the
    file holds them, views of its map, so no float32 copy of the whole model is made at once.
    bfloat16, which numpy lacks, comes as BFloat16Bits: its widen() gives the float32 values, and
    numpy refuses to convert it rather than read its bit patterns as numbers."""
    got = weights.load_state_dict(os.path.join(FIXTURES, "bin_half"), widen=False)
    twin = st.load_file(os.path.join(FIXTURES, "bin_half_twin.safetensors"))
    assert got["w_fp16"].dtype == np.float16 and not got["w_fp16"].flags.owndata
    np.testing.assert_array_equal(got["w_fp16"], twin["w_fp16"])
    bf16 = got["w_bf16"]
    assert isinstance(bf16, st.BFloat16Bits) and bf16.shape == twin["w_bf16"].shape
    assert bf16.bits.dtype == np.uint16 and not bf16.bits.flags.owndata and not bf16.bits.flags.writeable
    assert bf16.widen().dtype == np.float32
    np.testing.assert_array_equal(bf16.widen(), twin["w_bf16"])
    for convert in (np.asarray, lambda x: np.ascontiguousarray(x, dtype=np.float32), lambda x: np.float32(x)):
        with pytest.raises(TypeError, match="bit patterns"):
            convert(bf16)
    assert got["ids"].dtype == np.int64


def test_safetensors_is_preferred_and_sharded_safetensors_load(tmp_path):
    want = reference()
    shutil.copy(os.path.join(FIXTURES, "bin", "pytorch_model.bin"), tmp_path / "pytorch_model.bin")
    names = sorted(want)
    st.save_file({k: want[k] for k in names[:4]}, tmp_path / "model-00001-of-00002.safetensors")
    st.save_file({k: want[k] for k in names[4:]}, tmp_path / "model-00002-of-00002.safetensors")
    index = {"metadata": {"total_size": 0},
             "weight_map": {k: f"model-0000{1 if i < 4 else 2}-of-00002.safetensors" for i, k in enumerate(names)}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert weights.find_weight_file(str(tmp_path)) == (str(tmp_path / "model.safetensors.index.json"), True)
    assert_same(weights.load_state_dict(tmp_path), want)
    st.save_file({"only": np.zeros(1, np.float32)}, tmp_path / "model.safetensors")
    assert list(weights.load_state_dict(tmp_path)) == ["only"]


def sharded_folder(tmp_path, weight_map):
    shutil.copytree(os.path.join(FIXTURES, "bin_sharded"), tmp_path / "m")
    (tmp_path / "m" / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return tmp_path / "m"


def test_index_naming_a_tensor_its_shard_lacks(tmp_path):
    folder = sharded_folder(tmp_path, {"dense.bias": "pytorch_model-00001-of-00002.bin"})
    with pytest.raises(WeightsError, match="pytorch_model-00001-of-00002.bin: tensor 'dense.bias' listed in"):
        weights.load_state_dict(folder)


def test_index_naming_a_missing_shard(tmp_path):
    folder = sharded_folder(tmp_path, {"dense.bias": "pytorch_model-00003-of-00003.bin"})
    with pytest.raises(WeightsError, match="shard 'pytorch_model-00003-of-00003.bin' .*'dense.bias'.* missing"):
        weights.load_state_dict(folder)


@pytest.mark.parametrize("shard", ["../bin/pytorch_model.bin", "/etc/passwd", "a/../../x.bin", ""])
def test_index_cannot_point_outside_the_folder(tmp_path, shard):
    folder = sharded_folder(tmp_path, {"dense.bias": shard})
    with pytest.raises(WeightsError, match="unsafe file name"):
        weights.load_state_dict(folder)


def test_unreadable_index(tmp_path):
    (tmp_path / "pytorch_model.bin.index.json").write_text("{not json")
    with pytest.raises(WeightsError, match="pytorch_model.bin.index.json: cannot read the shard index"):
        weights.load_state_dict(tmp_path)


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no weight file.*model.safetensors"):
        weights.load_state_dict(tmp_path)


def test_unknown_dtype_error_names_file_and_tensor(tmp_path):
    st.save_file({"encoder.w": np.zeros(2, np.float32)}, tmp_path / "model.safetensors")
    raw = (tmp_path / "model.safetensors").read_bytes().replace(b'"F32"', b'"F99"')
    (tmp_path / "model.safetensors").write_bytes(raw)
    with pytest.raises(SafetensorsError, match=r"model.safetensors, tensor 'encoder.w': unknown dtype 'F99'"):
        weights.load_state_dict(tmp_path)


def test_corrupt_bin_error_names_file(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(TorchPickleError, match="pytorch_model.bin: corrupt zip"):
        weights.load_state_dict(tmp_path)
