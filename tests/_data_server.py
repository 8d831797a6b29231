"""A local HTTP mirror for corpus tests: files live under ``root/HOST/PATH`` of their original URL.

Binds 127.0.0.1 on a free port, records every request path, and can answer
chosen paths with a canned response (an HTML error page, a 404) instead.
"""
from __future__ import annotations

import gzip
import io
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Mapping, Tuple, Union
from urllib.parse import urlsplit


class _Handler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        mirror: "MirrorServer" = self.server.mirror  # type: ignore[attr-defined]
        mirror.requests.append(self.path)
        canned = mirror.canned.get(self.path)
        if canned is None:
            super().do_GET()
            return
        status, body = canned
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class MirrorServer:
    """Context manager serving ``root`` as a dataset mirror; ``url`` is the value for MULTIENC_DATASETS_MIRROR."""

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests: List[str] = []
        self.canned: Dict[str, Tuple[int, bytes]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(self.root)))
        self._server.mirror = self  # type: ignore[attr-defined]
        self._server.timeout = 5
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "MirrorServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @staticmethod
    def path_of(url: str) -> str:
        """The request path under which the mirror serves ``url``."""
        parts = urlsplit(url)
        return f"/{parts.netloc}{parts.path}"

    def put(self, url: str, data: Union[bytes, str]) -> Path:
        """Serve ``data`` (str is written as UTF-8) at the mirror location of ``url``."""
        dest = self.root / self.path_of(url).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return dest

    def put_zip(self, url: str, members: Mapping[str, Union[bytes, str]]) -> Path:
        """Serve a zip archive holding ``members`` (archive name -> content) at ``url``."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, content in members.items():
                z.writestr(name, content.encode("utf-8") if isinstance(content, str) else content)
        return self.put(url, buf.getvalue())

    def put_gzip(self, url: str, data: Union[bytes, str]) -> Path:
        """Serve ``data`` gzip-compressed at ``url``."""
        return self.put(url, gzip.compress(data.encode("utf-8") if isinstance(data, str) else data, mtime=0))

    def answer(self, url: str, status: int, body: bytes) -> None:
        """Answer requests for ``url`` with ``status`` and an HTML ``body`` instead of the file."""
        self.canned[self.path_of(url)] = (status, body)

    def count(self, url: str) -> int:
        """How many times ``url`` was requested."""
        return self.requests.count(self.path_of(url))
