"""Find a model's files: a local folder, the HuggingFace cache, or a download from the hub.

:func:`resolve_model_files` returns a folder holding ``config.json``, the
weights (``model.safetensors``, else its sharded index and shards, else
``pytorch_model.bin``, else its index and shards) and whichever tokenizer
files the model has. Downloads go into the cache layout that
``huggingface_hub`` uses, so models fetched by transformers load offline and
models fetched here are visible to transformers:

    {cache}/models--{org}--{name}/blobs/{etag}               file contents
    {cache}/models--{org}--{name}/snapshots/{commit}/{file}  -> ../../blobs/{etag}
    {cache}/models--{org}--{name}/refs/{revision}            the commit, no newline
    {cache}/models--{org}--{name}/.no_exist/{commit}/{file}  "this optional file does not exist"

The protocol (HF-SEMANTICS.md §8): a HEAD on
``{endpoint}/{repo}/resolve/{revision}/{file}`` without following redirects
gives the commit (``X-Repo-Commit``), the blob id (``X-Linked-Etag`` or
``ETag``) and the size (``X-Linked-Size`` or ``Content-Length``); the GET
goes to the HEAD's ``Location`` (without the token when that is another
host). Once ``config.json`` has named the commit, every further file is
asked for at that commit, so files already in the snapshot and optional files
remembered in ``.no_exist`` cost no request at all.
"""
from __future__ import annotations

import os
import re
import secrets
import tempfile
import urllib.parse
from typing import Dict, List, Optional, Tuple, Union

from multienc.formats.weights import WEIGHT_FILES, check_relative_path, read_index
from multienc.hub import http

__all__ = ["HubError", "RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError",
           "EntryNotFoundError", "NotCachedError", "SENTENCEPIECE_FILES", "TOKENIZER_FILES", "hub_cache_dir", "get_token",
           "is_offline", "repo_folder", "resolve_model_files", "resolve_tokenizer_files"]

DEFAULT_ENDPOINT = "https://huggingface.co"
# SentencePiece models of XLM-RoBERTa, ALBERT and DeBERTa-v2 (binary): fetched only from a repository
# without tokenizer.json, which holds the same tokenizer (transformers' converters made it).
SENTENCEPIECE_FILES: Tuple[str, ...] = ("sentencepiece.bpe.model", "spiece.model", "spm.model")
TOKENIZER_FILES: Tuple[str, ...] = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                    "vocab.txt", "vocab.json", "merges.txt", "bpe.codes", "added_tokens.json",
                                    *SENTENCEPIECE_FILES)
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$", re.ASCII)
_ETAG = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
_TRUE = {"1", "ON", "YES", "TRUE"}


class HubError(OSError):
    """The hub could not provide a model file; the message names the model, file and URL."""

    def __init__(self, message: str, status: Optional[int] = None, url: Optional[str] = None):
        self.status = status
        self.url = url
        super().__init__(message)


class RepositoryNotFoundError(HubError):
    """404 RepoNotFound, or 401 for a private repository without a valid token."""


class GatedRepoError(HubError):
    """The repository is gated: its conditions must be accepted and a token sent."""


class RevisionNotFoundError(HubError):
    """The repository exists but has no such branch, tag or commit."""


class EntryNotFoundError(HubError, FileNotFoundError):
    """The repository does not have a required file (e.g. no weight file at all)."""


class NotCachedError(HubError, FileNotFoundError):
    """Offline (``HF_HUB_OFFLINE``) or unreachable hub, and the files are not in the cache."""


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


def hub_cache_dir() -> str:
    """``$HF_HUB_CACHE``, else ``$HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub`` (HF_HOME defaulting to
    ``$XDG_CACHE_HOME/huggingface`` or ``~/.cache/huggingface``)."""
    cache = _env("HF_HUB_CACHE") or _env("HUGGINGFACE_HUB_CACHE")
    if cache is None:
        cache = os.path.join(_hf_home(), "hub")
    return os.path.expanduser(cache)


def _hf_home() -> str:
    home = _env("HF_HOME") or os.path.join(_env("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return os.path.expanduser(home)


def get_token() -> Optional[str]:
    """``$HF_TOKEN``, else ``$HUGGING_FACE_HUB_TOKEN``, else the file ``$HF_TOKEN_PATH`` (default
    ``$HF_HOME/token``), whitespace stripped; None when there is none."""
    token = _env("HF_TOKEN") or _env("HUGGING_FACE_HUB_TOKEN")
    if token is None:
        try:
            with open(os.path.expanduser(_env("HF_TOKEN_PATH") or os.path.join(_hf_home(), "token"))) as f:
                token = f.read()
        except OSError:
            return None
    return token.strip() or None


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is 1/ON/YES/TRUE (any case)."""
    return any((os.environ.get(v) or "").upper() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def repo_folder(repo_id: str, cache_dir: Optional[str] = None) -> str:
    """The cache folder of a model repository: ``{cache}/models--{org}--{name}``."""
    return os.path.join(cache_dir or hub_cache_dir(), "models--" + repo_id.replace("/", "--"))


def _timeout(name: str) -> float:
    return float(os.environ.get(name) or 10)


def _atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _atomic_symlink(target: str, path: str) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(8)}.link")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class _Repo:
    """One model repository on one endpoint, with its cache folder."""

    def __init__(self, repo_id: str, cache_dir: Optional[str], token: Union[str, bool, None], progress: bool):
        self.repo_id = repo_id
        self.storage = repo_folder(repo_id, cache_dir)
        self.endpoint = (_env("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self.token = get_token() if token is None or token is True else (token or None)
        self.offline = is_offline()
        self.progress = progress

    def url(self, revision: str, filename: str) -> str:
        return (f"{self.endpoint}/{self.repo_id}/resolve/{urllib.parse.quote(revision, safe='')}/"
                f"{urllib.parse.quote(filename)}")

    def headers(self) -> Dict[str, str]:
        h = {"Accept-Encoding": "identity"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def cached(self, revision: str, filename: str) -> Union[str, bool, None]:
        """From the cache alone: the file's path, False if known not to exist, None if unknown."""
        commit = revision
        if not _COMMIT.match(revision):
            try:
                with open(os.path.join(self.storage, "refs", revision)) as f:
                    commit = f.read().strip()
            except OSError:
                return None
        pointer = os.path.join(self.storage, "snapshots", commit, filename)
        if os.path.isfile(pointer):
            return pointer
        if os.path.isfile(os.path.join(self.storage, ".no_exist", commit, filename)):
            return False
        return None

    def head(self, revision: str, filename: str) -> Tuple[str, str, str, int]:
        """HEAD the file; return (commit, etag, download location, size) or raise HubError.

        A missing file raises EntryNotFoundError after remembering it in ``.no_exist``.
        """
        url = self.url(revision, filename)
        for _ in range(5):  # relative redirects (renamed repositories) are followed, absolute ones are not
            try:
                status, h = http.request_headers(url, self.headers(), timeout=_timeout("HF_HUB_ETAG_TIMEOUT"))
            except http.DownloadError as e:
                raise HubError(f"cannot reach the hub for {self.repo_id}/{filename}: {e}", None, url) from None
            location = h.get("Location")
            if 300 <= status < 400 and location and not urllib.parse.urlsplit(location).netloc:
                url = urllib.parse.urljoin(url, location)
                continue
            break
        else:
            raise HubError(f"too many redirects for {self.repo_id}/{filename}", status, url)
        if status >= 400:
            self.raise_for_status(status, h, url, revision, filename)
        commit = h.get("X-Repo-Commit")
        etag = (h.get("X-Linked-Etag") or h.get("ETag") or "").lstrip("W/").strip('"')
        size = h.get("X-Linked-Size") or (h.get("Content-Length") if status < 300 else None)
        if not commit or not etag or not size or not size.isdigit():
            raise HubError(f"{url} did not answer like the hub (X-Repo-Commit, ETag and size are required); "
                           f"check HF_ENDPOINT", status, url)
        if not _ETAG.match(etag):
            raise HubError(f"{url} sent an unusable ETag {etag!r}", status, url)
        return commit, etag, (location if 300 <= status < 400 and location else url), int(size)

    def raise_for_status(self, status: int, h, url: str, revision: str, filename: str) -> None:
        code = h.get("X-Error-Code")
        message = h.get("X-Error-Message") or ""
        where = f"{self.repo_id} at {self.endpoint}"
        if code == "EntryNotFound" or (status == 404 and code is None):
            commit = h.get("X-Repo-Commit")
            if commit and _COMMIT.match(commit):
                _atomic_write(os.path.join(self.storage, ".no_exist", commit, filename), b"")
                self.remember_ref(revision, commit)
            raise EntryNotFoundError(f"{filename} does not exist in {where} (revision {revision})", status, url)
        if code == "RevisionNotFound":
            raise RevisionNotFoundError(f"revision {revision!r} does not exist in {where}", status, url)
        if code == "GatedRepo":
            raise GatedRepoError(f"{self.repo_id} is a gated model: accept its conditions on the hub and set "
                                 f"HF_TOKEN to a token of that account ({message or status})", status, url)
        if status == 401 and message == "Invalid credentials in Authorization header":
            raise HubError(f"the hub rejected the token for {self.repo_id}: check HF_TOKEN", status, url)
        if code == "RepoNotFound" or status == 401:
            hint = "" if self.token else "; if it is private or gated, set HF_TOKEN"
            raise RepositoryNotFoundError(f"repository {where} not found or not accessible (HTTP {status}){hint}",
                                          status, url)
        raise HubError(f"the hub answered HTTP {status} for {filename} of {self.repo_id} "
                       f"{('(' + message + ')') if message else ''}".rstrip(), status, url)

    def remember_ref(self, revision: str, commit: str) -> None:
        if revision != commit:
            check_relative_path(revision, self.repo_id)
            _atomic_write(os.path.join(self.storage, "refs", revision), commit.encode())

    def fetch(self, revision: str, filename: str) -> Union[str, bool]:
        """The file's path in the snapshot (downloading it if needed), or False if the repo lacks it.

        Raises HubError when it cannot tell: offline or hub unreachable with
        nothing cached (NotCachedError), repository/revision errors, failed downloads.
        """
        check_relative_path(filename, self.repo_id)
        if _COMMIT.match(revision):
            hit = self.cached(revision, filename)
            if hit is not None:
                return hit
        if self.offline:
            return self.from_cache(revision, filename, "HF_HUB_OFFLINE is set")
        try:
            commit, etag, location, size = self.head(revision, filename)
        except EntryNotFoundError:
            return False
        except (RevisionNotFoundError, RepositoryNotFoundError, GatedRepoError):
            raise
        except HubError as e:
            if e.status is None:  # the network is down: do not wait for it again for every other file
                self.offline = True
            return self.from_cache(revision, filename, str(e))
        pointer = os.path.join(self.storage, "snapshots", commit, filename)
        if not os.path.isfile(pointer):
            blob = os.path.join(self.storage, "blobs", etag)
            if not (os.path.isfile(blob) and os.path.getsize(blob) == size):
                headers = self.headers()
                if urllib.parse.urlsplit(location).netloc != urllib.parse.urlsplit(self.endpoint).netloc:
                    headers.pop("Authorization", None)
                try:
                    http.download(location, blob, headers=headers, desc=f"{self.repo_id}/{filename}",
                                   expected_size=size, progress=self.progress,
                                   timeout=_timeout("HF_HUB_DOWNLOAD_TIMEOUT"))
                except http.DownloadError as e:
                    raise HubError(f"downloading {filename} of {self.repo_id} failed: {e}", e.status, location) from None
            _atomic_symlink(os.path.relpath(blob, os.path.dirname(pointer)), pointer)
        self.remember_ref(revision, commit)
        return pointer

    def from_cache(self, revision: str, filename: str, reason: str) -> Union[str, bool]:
        hit = self.cached(revision, filename)
        if hit is None:
            raise NotCachedError(f"{self.repo_id}: {filename} (revision {revision}) is not in the cache "
                                 f"{self.storage} and cannot be downloaded: {reason}")
        return hit


def _check_repo_id(model: str) -> None:
    if not _REPO_ID.match(model) or ".." in model or len(model) > 96:
        raise ValueError(f"{model!r} is neither an existing folder nor a hub model id like 'org/name'")


def resolve_model_files(model: str, revision: Optional[str] = None, token: Union[str, bool, None] = None,
                        cache_dir: Optional[str] = None, progress: bool = True) -> str:
    """Return a folder with ``model``'s config, weights and tokenizer files.

    ``model`` is a local folder (used as is; it must hold ``config.json``) or a
    hub id ``name`` / ``org/name``. Hub ids are looked up in the cache
    (:func:`hub_cache_dir` or ``cache_dir``) and downloaded from
    ``$HF_ENDPOINT`` (default the HuggingFace hub) at ``revision`` (branch,
    tag or commit; default ``main``) when missing, with a progress bar unless
    ``progress`` is False. ``token``: None/True read :func:`get_token`, False
    sends none, a string is sent as is. Returns ``snapshots/{commit}``.

    Raises FileNotFoundError for a local folder without ``config.json``,
    ValueError for a name that is neither a folder nor a hub id, and a
    :class:`HubError` subclass naming the model, files and URL otherwise.
    """
    if os.path.isdir(model):
        if not os.path.isfile(os.path.join(model, "config.json")):
            raise FileNotFoundError(f"{model}: local model folder has no config.json")
        return os.path.abspath(model)
    _check_repo_id(model)
    repo = _Repo(model, cache_dir, token, progress)
    revision = revision or "main"

    weight_names = ", ".join(name for name, _ in WEIGHT_FILES)
    try:
        config = repo.fetch(revision, "config.json")
    except NotCachedError as e:
        raise NotCachedError(f"{model} (revision {revision}) is missing from the cache and cannot be "
                             f"downloaded; missing files: config.json and one of {weight_names}. {e}") from None
    if config is False:
        raise EntryNotFoundError(f"{model} (revision {revision}) has no config.json, so it is not a "
                                 f"transformers model", 404, repo.url(revision, "config.json"))
    folder = os.path.dirname(config)
    commit = os.path.basename(folder)

    not_cached: List[str] = []
    for name, is_index in WEIGHT_FILES:
        try:
            path = repo.fetch(commit, name)
        except NotCachedError as e:
            not_cached.append(str(e))
            continue
        if path is False:
            continue
        if is_index:
            for shard in sorted(set(read_index(path).values())):
                if repo.fetch(commit, shard) is False:
                    raise EntryNotFoundError(f"{model}: shard {shard} named by {name} does not exist", 404,
                                             repo.url(commit, shard))
        break
    else:
        error = NotCachedError if not_cached else EntryNotFoundError
        raise error(f"{model} (revision {revision}, commit {commit}): none of the weight files "
                    f"{weight_names} is available" + (f"; {not_cached[0]}" if not_cached else ""))
    _fetch_tokenizer_files(repo, commit)
    return folder


def _fetch_tokenizer_files(repo: _Repo, revision: str) -> Optional[str]:
    """Fetch whichever of :data:`TOKENIZER_FILES` the repository has (those not cached while offline
    are skipped; :data:`SENTENCEPIECE_FILES` only when there is no tokenizer.json); return the
    snapshot folder holding them, or None if none is available.

    The first file found names the commit; the others are asked for at that commit.
    """
    folder = None
    has_tokenizer_json = False
    for name in TOKENIZER_FILES:
        if has_tokenizer_json and name in SENTENCEPIECE_FILES:
            continue
        try:
            path = repo.fetch(revision, name)
        except NotCachedError:
            continue
        has_tokenizer_json = has_tokenizer_json or bool(path and name == "tokenizer.json")
        if path and folder is None:
            folder = os.path.dirname(path)
            revision = os.path.basename(folder)
    return folder


def resolve_tokenizer_files(model: str, revision: Optional[str] = None, token: Union[str, bool, None] = None,
                            cache_dir: Optional[str] = None, progress: bool = True) -> str:
    """Return a folder with ``model``'s tokenizer files only (no config, no weights).

    For taking the tokenizer of another model (e.g. ``bert-base-cased`` for a checkpoint
    that ships none). ``model`` is a local folder (returned as is) or a hub id; the
    arguments are those of :func:`resolve_model_files`. Raises a :class:`HubError`
    subclass when the repository has none of :data:`TOKENIZER_FILES` (NotCachedError
    when offline or unreachable and nothing is cached).
    """
    if os.path.isdir(model):
        return os.path.abspath(model)
    _check_repo_id(model)
    repo = _Repo(model, cache_dir, token, progress)
    folder = _fetch_tokenizer_files(repo, revision or "main")
    if folder is None:
        error = NotCachedError if repo.offline else EntryNotFoundError
        raise error(f"{model} (revision {revision or 'main'}): none of the tokenizer files "
                    f"{', '.join(TOKENIZER_FILES)} is available" +
                    (" in the cache (offline or the hub is unreachable)" if repo.offline else ""))
    return folder
