"""A small stdlib HTTP client shared by the hub loader and the corpus downloader.

Downloads stream into a temporary file beside the destination and are renamed
into place only when complete, so an interrupted download never leaves a file
that a later run would trust.
"""
from __future__ import annotations

import http.client
import os
import tempfile
import urllib.error
import urllib.request
from typing import Mapping, Optional, Tuple

from tqdm.auto import tqdm

DEFAULT_TIMEOUT = float(os.environ.get("MULTIENC_HTTP_TIMEOUT", "30"))
USER_AGENT = "multienc/0.1 (+python-urllib)"


class DownloadError(OSError):
    """A download failed; ``url`` and ``status`` (None for network errors) say where and how."""

    def __init__(self, url: str, status: Optional[int], message: str):
        self.url = url
        self.status = status
        super().__init__(f"{message} (url: {url}" + (f", HTTP {status})" if status else ")"))


def open_url(url: str, headers: Optional[Mapping[str, str]] = None, method: str = "GET",
             timeout: float = DEFAULT_TIMEOUT):
    """Open ``url`` and return the response; HTTP and network errors become DownloadError."""
    req = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT, **(headers or {})})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DownloadError(url, e.code, f"server answered {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(url, None, f"could not reach the server: {reason}") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib hook)
        return None


_NO_REDIRECT_OPENER = urllib.request.build_opener(_NoRedirect)


def request_headers(url: str, headers: Optional[Mapping[str, str]] = None, method: str = "HEAD",
                    timeout: float = DEFAULT_TIMEOUT) -> Tuple[int, "http.client.HTTPMessage"]:
    """Send a request without following redirects; return (status, response headers) for any status.

    Only network failures raise (DownloadError with status None); 3xx, 4xx and
    5xx answers are returned for the caller to interpret.
    """
    req = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT, **(headers or {})})
    try:
        with _NO_REDIRECT_OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.headers
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(url, None, f"could not reach the server: {reason}") from None


def download(url: str, dest: str, headers: Optional[Mapping[str, str]] = None,
             desc: Optional[str] = None, expected_size: Optional[int] = None,
             progress: bool = True, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Download ``url`` to ``dest`` atomically (temp file + rename) and return ``dest``.

    A response whose length differs from its Content-Length or from
    ``expected_size`` raises DownloadError and leaves nothing at ``dest``.
    """
    folder = os.path.dirname(os.path.abspath(dest))
    os.makedirs(folder, exist_ok=True)
    resp = open_url(url, headers=headers, timeout=timeout)
    with resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else expected_size
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".incomplete")
        got = 0
        try:
            with os.fdopen(fd, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                                  desc=desc or os.path.basename(dest),
                                                  disable=not progress, leave=False) as bar:
                while True:
                    try:
                        chunk = resp.read(1 << 20)
                    except (OSError, ValueError, http.client.HTTPException) as e:
                        raise DownloadError(url, None, f"connection lost after {got} bytes: {e}") from None
                    if not chunk:
                        break
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            for want in {total, expected_size} - {None}:
                if got != want:
                    raise DownloadError(url, None, f"incomplete download: got {got} of {want} bytes")
            os.replace(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return dest
