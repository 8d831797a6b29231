"""multienc.hub against a real local HTTP server speaking the hub protocol (tests/_hub_server.py)."""
import json
import os
import shutil

import numpy as np
import pytest

from multienc import hub
from multienc.formats import weights
from multienc.formats import safetensors as st
from multienc.hub import (EntryNotFoundError, GatedRepoError, HubError, NotCachedError, RepositoryNotFoundError,
                          RevisionNotFoundError)

from _hub_server import HubServer

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "weights")
TWIN = os.path.join(FIXTURES, "bin_twin.safetensors")
BIN = os.path.join(FIXTURES, "bin", "pytorch_model.bin")


def make_repo(root, repo_id, revision="main", **files):
    folder = root / repo_id.replace("/", "--") / revision
    folder.mkdir(parents=True)
    for name, source in files.items():
        name = name.replace("__", ".")
        if isinstance(source, bytes):
            (folder / name).write_bytes(source)
        else:
            shutil.copy(source, folder / name)
    return folder


def config(tag):
    return json.dumps({"model_type": "bert", "tag": tag}).encode()


@pytest.fixture
def hub_root(tmp_path):
    root = tmp_path / "hub"
    make_repo(root, "google/tiny-electra", config__json=config("main"), model__safetensors=TWIN,
              vocab__txt=b"[PAD]\n[UNK]\n", tokenizer_config__json=b"{}")
    make_repo(root, "google/tiny-electra", "v1", config__json=config("v1"), pytorch_model__bin=BIN)
    make_repo(root, "tiny-bin", config__json=config("bin"), pytorch_model__bin=BIN)
    make_repo(root, "org/secret", config__json=config("secret"), model__safetensors=TWIN)
    make_repo(root, "org/gated", config__json=config("gated"), model__safetensors=TWIN)
    make_repo(root, "org/noweights", config__json=config("none"), vocab__txt=b"a\n")
    make_repo(root, "org/noconfig", model__safetensors=TWIN)
    want = st.load_file(TWIN)
    names = sorted(want)
    sharded = make_repo(root, "org/sharded", config__json=config("sharded"))
    weight_map = {}
    for i, part in enumerate((names[:3], names[3:]), start=1):
        shard = f"model-0000{i}-of-00002.safetensors"
        st.save_file({k: want[k] for k in part}, sharded / shard)
        weight_map.update({k: shard for k in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return root


@pytest.fixture
def server(hub_root, env):
    with HubServer(str(hub_root), private={"org/secret": "hf_secret"}, gated={"org/gated": "hf_ok"}) as s:
        env.setenv("HF_ENDPOINT", s.url)
        yield s


def cache(tmp_path, repo_id):
    return tmp_path / "hf_home" / "hub" / ("models--" + repo_id.replace("/", "--"))


def assert_twin_weights(folder):
    got, want = weights.load_state_dict(folder), st.load_file(TWIN)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_first_load_fills_the_hf_cache_layout(server, tmp_path):
    folder = hub.resolve_model_files("google/tiny-electra", progress=False)
    commit = server.commit("google/tiny-electra", "main")
    repo = cache(tmp_path, "google/tiny-electra")
    assert folder == str(repo / "snapshots" / commit)
    assert (repo / "refs" / "main").read_bytes() == commit.encode()
    link = repo / "snapshots" / commit / "config.json"
    assert link.is_symlink() and os.readlink(link).startswith("../../blobs/")
    assert json.loads(link.read_text())["tag"] == "main"
    assert (repo / "snapshots" / commit / "vocab.txt").read_bytes() == b"[PAD]\n[UNK]\n"
    for missing in ("tokenizer.json", "merges.txt", "vocab.json", "special_tokens_map.json", "added_tokens.json"):
        assert (repo / ".no_exist" / commit / missing).is_file(), missing
    assert not (repo / ".no_exist" / commit / "model.safetensors.index.json").exists()  # never asked
    assert sorted(os.path.basename(p) for p in server.downloads()) == [
        "config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"]
    assert not [b for b in os.listdir(repo / "blobs") if "incomplete" in b or b.startswith(".")]
    assert_twin_weights(folder)


def test_second_load_downloads_nothing(server):
    first = hub.resolve_model_files("google/tiny-electra", progress=False)
    server.requests.clear()
    assert hub.resolve_model_files("google/tiny-electra", progress=False) == first
    assert [(r.method, r.path) for r in server.requests] == [("HEAD", "/google/tiny-electra/resolve/main/config.json")]
    server.requests.clear()
    commit = os.path.basename(first)
    assert hub.resolve_model_files("google/tiny-electra", revision=commit, progress=False) == first
    assert server.requests == []  # a commit already in the cache needs no request at all


def test_revision_and_pytorch_bin(server, tmp_path):
    folder = hub.resolve_model_files("google/tiny-electra", revision="v1", progress=False)
    commit = server.commit("google/tiny-electra", "v1")
    repo = cache(tmp_path, "google/tiny-electra")
    assert folder.endswith(commit) and (repo / "refs" / "v1").read_text() == commit
    assert json.loads(open(os.path.join(folder, "config.json")).read())["tag"] == "v1"
    assert (repo / ".no_exist" / commit / "model.safetensors").is_file()
    assert (repo / ".no_exist" / commit / "model.safetensors.index.json").is_file()
    assert weights.find_weight_file(folder)[0].endswith("pytorch_model.bin")
    assert_twin_weights(folder)
    assert_twin_weights(hub.resolve_model_files("tiny-bin", progress=False))


def test_sharded_safetensors_download(server):
    folder = hub.resolve_model_files("org/sharded", progress=False)
    assert sorted(f for f in os.listdir(folder) if f.startswith("model-")) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert_twin_weights(folder)


def test_offline_uses_the_cache_only(server, env):
    folder = hub.resolve_model_files("google/tiny-electra", progress=False)
    server.requests.clear()
    env.setenv("HF_HUB_OFFLINE", "1")
    assert hub.resolve_model_files("google/tiny-electra", progress=False) == folder
    assert server.requests == []
    assert_twin_weights(folder)


@pytest.mark.parametrize("variable, value", [("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "yes")])
def test_offline_with_empty_cache_names_model_and_files(server, env, variable, value):
    env.setenv(variable, value)
    with pytest.raises(NotCachedError) as info:
        hub.resolve_model_files("google/tiny-electra", progress=False)
    message = str(info.value)
    for part in ("google/tiny-electra", "config.json", "model.safetensors", "pytorch_model.bin", "HF_HUB_OFFLINE"):
        assert part in message
    assert server.requests == []


def test_unreachable_hub_falls_back_to_the_cache(server, env):
    folder = hub.resolve_model_files("google/tiny-electra", progress=False)
    server.stop()
    assert hub.resolve_model_files("google/tiny-electra", progress=False) == folder
    with pytest.raises(NotCachedError, match="tiny-bin.*config.json.*cannot reach"):
        hub.resolve_model_files("tiny-bin", progress=False)


def test_unknown_repo_revision_and_files(server):
    with pytest.raises(RepositoryNotFoundError, match="nobody/nothing") as info:
        hub.resolve_model_files("nobody/nothing", progress=False)
    assert info.value.status == 404 and "/nobody/nothing/resolve/main/config.json" in info.value.url
    with pytest.raises(RevisionNotFoundError, match="'v9'"):
        hub.resolve_model_files("google/tiny-electra", revision="v9", progress=False)
    with pytest.raises(EntryNotFoundError, match="org/noweights.*none of the weight files model.safetensors"):
        hub.resolve_model_files("org/noweights", progress=False)
    with pytest.raises(EntryNotFoundError, match="org/noconfig .*no config.json"):
        hub.resolve_model_files("org/noconfig", progress=False)


def test_private_and_gated_repos(server, env):
    with pytest.raises(RepositoryNotFoundError, match="org/secret.*HTTP 401.*HF_TOKEN") as info:
        hub.resolve_model_files("org/secret", progress=False)
    assert info.value.status == 401
    with pytest.raises(HubError, match="rejected the token"):
        hub.resolve_model_files("org/secret", token="wrong", progress=False)
    with pytest.raises(GatedRepoError, match="org/gated.*gated"):
        hub.resolve_model_files("org/gated", progress=False)
    env.setenv("HF_TOKEN", "hf_secret")
    server.requests.clear()
    assert_twin_weights(hub.resolve_model_files("org/secret", progress=False))
    assert {r.authorization for r in server.requests} == {"Bearer hf_secret"}
    assert_twin_weights(hub.resolve_model_files("org/gated", token="hf_ok", progress=False))


def test_token_file(env, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("  hf_from_file\n")
    env.setenv("HF_TOKEN_PATH", str(token_file))
    assert hub.get_token() == "hf_from_file"
    env.setenv("HF_TOKEN", "hf_env")
    assert hub.get_token() == "hf_env"


def test_cut_download_leaves_nothing_trusted(server, env, tmp_path):
    server.cut("model.safetensors", 100)
    with pytest.raises(HubError, match="downloading model.safetensors of google/tiny-electra failed"):
        hub.resolve_model_files("google/tiny-electra", progress=False)
    repo = cache(tmp_path, "google/tiny-electra")
    commit = server.commit("google/tiny-electra", "main")
    assert not (repo / "snapshots" / commit / "model.safetensors").exists()
    assert sorted(os.listdir(repo / "blobs")) == sorted(  # only config.json's blob; no partial file
        [os.path.basename(os.readlink(repo / "snapshots" / commit / "config.json"))])
    env.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NotCachedError, match="none of the weight files"):
        hub.resolve_model_files("google/tiny-electra", progress=False)
    env.delenv("HF_HUB_OFFLINE")
    server.cut("model.safetensors", None)
    assert_twin_weights(hub.resolve_model_files("google/tiny-electra"))  # with its progress bar


def test_lfs_redirect_drops_the_token_for_another_host(hub_root, env, tmp_path):
    with HubServer(str(hub_root), private={"org/secret": "hf_secret"}, lfs=True) as server:
        env.setenv("HF_ENDPOINT", server.url)
        folder = hub.resolve_model_files("org/secret", token="hf_secret", progress=False)
        lfs = [r for r in server.requests if r.path.startswith("/lfs/")]
        assert [r.method for r in lfs] == ["GET"] and lfs[0].authorization is None
        sha256 = lfs[0].path.rsplit("/", 1)[1]
    assert os.readlink(os.path.join(folder, "model.safetensors")) == f"../../blobs/{sha256}"
    assert_twin_weights(folder)


def test_local_folders_and_bad_names(server, tmp_path, env):
    local = tmp_path / "my-model"
    local.mkdir()
    with pytest.raises(FileNotFoundError, match="my-model: local model folder has no config.json"):
        hub.resolve_model_files(str(local))
    (local / "config.json").write_text("{}")
    assert hub.resolve_model_files(str(local)) == str(local)
    for bad in ("./missing/folder", "a/b/c", "../x", "org/na me"):
        with pytest.raises(ValueError, match="neither an existing folder nor a hub model id"):
            hub.resolve_model_files(bad)
    assert server.requests == []
    env.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    folder = hub.resolve_model_files("tiny-bin", progress=False)
    assert folder.startswith(str(tmp_path / "elsewhere" / "models--tiny-bin" / "snapshots"))


def test_cache_is_shared_with_huggingface_hub(hub_root, env, tmp_path):
    """huggingface_hub (a transformers dependency) is the independent reference for the cache layout."""
    import huggingface_hub

    with HubServer(str(hub_root), lfs=True) as server:
        env.setenv("HF_ENDPOINT", server.url)
        # huggingface_hub reads its environment once, at import: pass endpoint and cache explicitly
        theirs = [huggingface_hub.hf_hub_download("google/tiny-electra", f, endpoint=server.url, token=False,
                                                  cache_dir=str(tmp_path / "hf_home" / "hub"))
                  for f in ("config.json", "model.safetensors")]
        env.setenv("HF_HUB_OFFLINE", "1")
        server.requests.clear()
        assert hub.resolve_model_files("google/tiny-electra") == os.path.dirname(theirs[0])  # ours reads theirs
        assert server.requests == []
        env.delenv("HF_HUB_OFFLINE")
        env.setenv("HF_HOME", str(tmp_path / "ours"))
        folder = hub.resolve_model_files("tiny-bin", progress=False)
    cache_dir = str(tmp_path / "ours" / "hub")  # theirs reads ours, including the .no_exist markers
    assert huggingface_hub.try_to_load_from_cache("tiny-bin", "pytorch_model.bin", cache_dir=cache_dir) == \
        os.path.join(folder, "pytorch_model.bin")
    assert huggingface_hub.try_to_load_from_cache("tiny-bin", "model.safetensors", cache_dir=cache_dir) is \
        huggingface_hub.file_download._CACHED_NO_EXIST
