"""A local stand-in for the HuggingFace hub, for tests (127.0.0.1, a free port).

Layout served: ``{root}/{repo}/{revision}/{files...}`` where ``{repo}`` is the
repo id with ``/`` written ``--`` (``org--name`` serves ``org/name``, as in the HF
cache) and each ``revision`` folder is a branch or tag. Each
revision gets a fixed 40-hex commit (a hash of its contents), and the files are
also served under that commit. URLs and headers follow the hub
(HF-SEMANTICS.md §8):

* ``HEAD|GET /{repo_id}/resolve/{revision}/{path}`` -> 200 with ``X-Repo-Commit``,
  ``ETag`` (git blob sha1) and ``Content-Length``; with ``lfs=True``, ``*.safetensors``
  and ``*.bin`` files answer 302 to ``http://localhost:{port}/lfs/{sha256}`` (another
  host name, so clients must drop the token) with ``X-Linked-Etag`` and ``X-Linked-Size``.
* errors: unknown repo 404 ``RepoNotFound``; private repo without its token 401
  ``RepoNotFound`` (a wrong token: 401 "Invalid credentials in Authorization header");
  gated repo without its token 403 ``GatedRepo``; unknown revision 404
  ``RevisionNotFound``; unknown file 404 ``EntryNotFound`` with ``X-Repo-Commit``.

Use::

    with HubServer(root, private={"org/secret": "tok"}) as hub:
        os.environ["HF_ENDPOINT"] = hub.url
        ...
        assert hub.downloads() == []          # no file content was sent
        hub.cut("model.safetensors", 100)     # later GETs send 100 bytes, then hang up

``requests`` logs every request as a :class:`Request`.
"""
from __future__ import annotations

import hashlib
import http.server
import os
import threading
import urllib.parse
from typing import Dict, List, NamedTuple, Optional, Tuple


LFS_SUFFIXES = (".safetensors", ".bin")
#: the tiny random-weight repositories under real hub names (tools/make_tiny_hub.py)
TINY_HUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tiny_hub")


class Request(NamedTuple):
    method: str
    path: str
    status: int
    authorization: Optional[str]


class _File(NamedTuple):
    path: str        # on disk
    git_sha1: str
    sha256: str
    size: int


def _hash_file(path: str) -> _File:
    data = open(path, "rb").read()
    git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return _File(path, git, hashlib.sha256(data).hexdigest(), len(data))


class HubServer:
    """Serve ``root`` with the hub's URL layout and headers; see the module docstring."""

    def __init__(self, root: str, private: Optional[Dict[str, str]] = None,
                 gated: Optional[Dict[str, str]] = None, lfs: bool = False):
        self.root = root
        self.private = dict(private or {})
        self.gated = dict(gated or {})
        self.lfs = lfs
        self.requests: List[Request] = []
        self._cut: Dict[str, int] = {}
        self._httpd: Optional[http.server.ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self.url = ""

    # ------------------------------------------------------------------ control
    def start(self) -> str:
        """Scan ``root``, start serving and return the base URL (``http://127.0.0.1:{port}``)."""
        self._scan()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self.url

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None

    def __enter__(self) -> "HubServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def commit(self, repo_id: str, revision: str) -> str:
        """The commit hash served for a revision folder."""
        return self._commits[(repo_id, revision)]

    def cut(self, filename: str, after_bytes: Optional[int]) -> None:
        """Make GETs of ``filename`` (a file's basename) stop after ``after_bytes`` bytes; None undoes it."""
        if after_bytes is None:
            self._cut.pop(filename, None)
        else:
            self._cut[filename] = after_bytes

    def downloads(self) -> List[str]:
        """Paths of the GET requests that were answered with file content (200)."""
        return [r.path for r in self.requests if r.method == "GET" and r.status == 200]

    # ------------------------------------------------------------------ content
    def _scan(self) -> None:
        self._trees: Dict[Tuple[str, str], Dict[str, _File]] = {}
        self._commits: Dict[Tuple[str, str], str] = {}
        self._lfs: Dict[str, _File] = {}
        for repo_dir in sorted(os.listdir(self.root)):
            repo_id = repo_dir.replace("--", "/")
            for revision in sorted(os.listdir(os.path.join(self.root, repo_dir))):
                folder = os.path.join(self.root, repo_dir, revision)
                tree = {}
                for dirpath, _, filenames in os.walk(folder):
                    for name in filenames:
                        full = os.path.join(dirpath, name)
                        tree[os.path.relpath(full, folder).replace(os.sep, "/")] = _hash_file(full)
                listing = "".join(f"{p}\0{f.git_sha1}\n" for p, f in sorted(tree.items()))
                self._trees[(repo_id, revision)] = tree
                self._commits[(repo_id, revision)] = hashlib.sha1(
                    f"{repo_id}\0{revision}\0{listing}".encode()).hexdigest()
                self._lfs.update({f.sha256: f for f in tree.values()})

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _answer(self, status: int, headers: Dict[str, str], file: Optional[_File] = None,
                        body: bool = False):
                server.requests.append(Request(self.command, self.path, status,
                                               self.headers.get("Authorization")))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(file.size if file else 0))
                self.end_headers()
                if body and file is not None:
                    data = open(file.path, "rb").read()
                    limit = server._cut.get(os.path.basename(file.path))
                    self.wfile.write(data if limit is None else data[:limit])
                    self.wfile.flush()
                    if limit is not None:
                        self.close_connection = True

            def _error(self, status: int, code: Optional[str], message: str, extra: Optional[Dict] = None):
                headers = {"X-Error-Message": message, **(extra or {})}
                if code:
                    headers["X-Error-Code"] = code
                self._answer(status, headers)

            def _serve(self, body: bool):
                path = urllib.parse.urlsplit(self.path).path
                if path.startswith("/lfs/"):
                    file = server._lfs.get(path[len("/lfs/"):])
                    if file is None:
                        return self._error(404, None, "no such object")
                    return self._answer(200, {"ETag": f'"{file.sha256}"'}, file, body)
                if "/resolve/" not in path:
                    return self._error(404, None, "not a resolve URL")
                repo_part, rest = path.lstrip("/").split("/resolve/", 1)
                repo_id = urllib.parse.unquote(repo_part)
                revision, _, filename = rest.partition("/")
                revision, filename = urllib.parse.unquote(revision), urllib.parse.unquote(filename)
                revisions = {rev: c for (rid, rev), c in server._commits.items() if rid == repo_id}
                if not revisions:
                    return self._error(404, "RepoNotFound", "Repository not found")
                auth = self.headers.get("Authorization")
                for table, status, code in ((server.private, 401, "RepoNotFound"),
                                            (server.gated, 403, "GatedRepo")):
                    if repo_id in table and auth != f"Bearer {table[repo_id]}":
                        if auth and status == 401:
                            return self._error(401, None, "Invalid credentials in Authorization header")
                        return self._error(status, code, "Access denied")
                by_commit = {c: rev for rev, c in revisions.items()}
                rev = revision if revision in revisions else by_commit.get(revision)
                if rev is None:
                    return self._error(404, "RevisionNotFound", "Invalid rev id: " + revision)
                commit = revisions[rev]
                file = server._trees[(repo_id, rev)].get(filename)
                if file is None:
                    return self._error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit})
                if server.lfs and filename.endswith(LFS_SUFFIXES):
                    return self._answer(302, {
                        "X-Repo-Commit": commit, "ETag": f'"{file.git_sha1}"',
                        "X-Linked-Etag": f'"{file.sha256}"', "X-Linked-Size": str(file.size),
                        "Location": f"http://localhost:{server.port}/lfs/{file.sha256}"})
                return self._answer(200, {"X-Repo-Commit": commit, "ETag": f'"{file.git_sha1}"'}, file, body)

        return Handler


#: Environment variables that steer HF hub clients; tests start with none of them set.
HF_ENV = ("HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "HF_TOKEN",
          "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
