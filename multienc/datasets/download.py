"""Downloading corpora into the cache: mirrors, archive extraction, atomic folders.

A corpus folder is trusted only when it holds the marker file written as the
last step of a successful download. Files are downloaded and extracted into a
hidden staging folder beside it, which is renamed into place in one step, so an
interrupted or failed download leaves nothing a later run would use.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Optional, Sequence, Union
from urllib.parse import urlsplit

from multienc.hub.http import DownloadError, download

MARKER = ".multienc-complete"
_ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".gz")


def cache_root() -> Path:
    """The default corpus cache: ``$MULTIENC_CACHE/datasets`` (``~/.cache/multienc/datasets``)."""
    return Path(os.environ.get("MULTIENC_CACHE") or "~/.cache/multienc").expanduser() / "datasets"


def resolve_url(url: str) -> str:
    """The address to fetch ``url`` from: ``$MULTIENC_DATASETS_MIRROR/HOST/PATH`` when set.

    A mirror (or a test server) holds each file under its original host and path,
    for http and https alike; without the variable the original URL is used.
    """
    mirror = os.environ.get("MULTIENC_DATASETS_MIRROR")
    if not mirror:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"cannot mirror {url!r}: only http and https URLs are supported")
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"{mirror.rstrip('/')}/{parts.netloc}{tail}"


def _archive_kind(name: str) -> Optional[str]:
    lower = name.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return suffix
    return None


def _looks_like_html(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _describe(path: Path) -> str:
    """A short account of what a file that should be an archive actually holds."""
    if _looks_like_html(path):
        return "an HTML page"
    with open(path, "rb") as f:
        head = f.read(24)
    return f"{path.stat().st_size} bytes starting {head!r}"


def _inside(root: Path, member: str) -> bool:
    target = (root / member).resolve()
    return target == root.resolve() or root.resolve() in target.parents


def extract(archive: Path, dest: Path, url: str) -> None:
    """Extract a .zip, .gz or tar archive into ``dest`` and delete the archive.

    A file that is not the archive its name promises (an HTML error page, a
    truncated file) raises DownloadError naming ``url``.
    """
    kind = _archive_kind(archive.name)
    try:
        if kind == ".zip":
            if not zipfile.is_zipfile(archive):
                raise DownloadError(url, None, f"expected a zip archive but got {_describe(archive)}")
            with zipfile.ZipFile(archive) as z:
                bad = [m for m in z.namelist() if not _inside(dest, m)]
                if bad:
                    raise DownloadError(url, None, f"zip archive has members outside its folder: {bad[:3]}")
                z.extractall(dest)
        elif kind == ".gz":
            out = dest / archive.name[:-3]
            try:
                with gzip.open(archive, "rb") as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError) as e:
                out.unlink(missing_ok=True)
                raise DownloadError(url, None, f"expected a gzip file but got {_describe(archive)} ({e})") from None
        elif kind is not None:
            try:
                with tarfile.open(archive) as t:
                    bad = [m.name for m in t.getmembers()
                           if not _inside(dest, m.name) or not (m.isfile() or m.isdir())]
                    if bad:
                        raise DownloadError(url, None, f"tar archive has unsafe members: {bad[:3]}")
                    t.extractall(dest)
            except tarfile.TarError as e:
                raise DownloadError(url, None, f"expected a tar archive but got {_describe(archive)} ({e})") from None
    except zipfile.BadZipFile as e:
        raise DownloadError(url, None, f"corrupt zip archive: {e}") from None
    archive.unlink()


def fetch_corpus(folder: Union[str, Path], urls: Sequence[str], desc: str) -> Path:
    """Make sure ``folder`` holds the files of ``urls`` (archives extracted) and return it.

    Nothing is downloaded when the folder's completion marker exists. Otherwise
    each URL (through :func:`resolve_url`) is saved under the text after its last
    ``/``; archives are extracted and removed; HTML pages in place of data files
    are rejected. On any failure the staging folder is deleted and the error,
    naming the failing URL, propagates.
    """
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    try:
        for url in urls:
            name = url.rstrip("/").rsplit("/", 1)[-1]
            source = resolve_url(url)
            path = download(source, str(staging / name), desc=f"{desc}: {name}")
            path = Path(path)
            if _archive_kind(name):
                extract(path, staging, source)
            elif _looks_like_html(path):
                raise DownloadError(source, None, f"expected the data file {name} but got an HTML page")
        (staging / MARKER).write_text(json.dumps({"urls": list(urls)}, indent=1) + "\n")
        if folder.exists():
            if (folder / MARKER).is_file():  # another process finished first
                shutil.rmtree(staging)
                return folder
            shutil.rmtree(folder)  # leftovers without a marker are not trusted
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / MARKER).is_file():
                raise
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
