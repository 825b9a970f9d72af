"""A local stand-in for the Hugging Face Hub: serves chosen files on 127.0.0.1 the way `huggingface_hub` reads them.

`hf_hub_download` (and so `from_pretrained`) fetches `{HF_ENDPOINT}/{repo_id}/resolve/{revision}/{path}`: a HEAD for
the metadata (commit, ETag, size) and a GET for the bytes. This server answers both for the files it is given (at
every revision, or only at those `revisions` names for a repository), with the Hub's `X-Error-Code` header for
anything else (401 for an unknown repository, 404 for an unknown revision or file, or for a call to the Hub's API
about a known repository: transformers reads that as "no such folder"), and records every request, so a test can
point `HF_ENDPOINT` at it and check what a command downloads.
"""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/")


class LocalHub:
    """`with LocalHub({"user/repo": {"path/in/repo": local_path}}) as hub:` serves those files at `hub.endpoint`;
    `revisions={"user/repo": {"v1"}}` serves that repository's files at revision v1 only; with `token`, every
    repository is gated: a request without that token gets the Hub's 401 for a gated repository. Setting `outage`
    makes every request fail with a 503, as during a Hub outage; adding a file's path in its repository to `failing`
    makes the requests for it fail with a 500."""

    def __init__(self, repos: dict[str, dict[str, Path]], revisions: dict[str, set[str]] | None = None,
                 token: str | None = None):
        self.repos = {repo: {name: Path(path) for name, path in files.items()} for repo, files in repos.items()}
        self.revisions = revisions or {}
        self.token = token
        self.outage = False
        self.failing: set[str] = set()
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) of every request
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):  # noqa: N802 (http.server's naming)
                hub._answer(self, body=False)

            def do_GET(self):  # noqa: N802
                hub._answer(self, body=True)

            def log_message(self, *args):  # keep the test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def file_requests(self) -> list[tuple[str, str, int]]:
        """Every request for a file (`/resolve/`), answered or not; huggingface_hub's own API calls left out."""
        return [request for request in self.requests if "/resolve/" in request[1]]

    def downloads(self) -> list[str]:
        """Paths of the files sent (GET requests answered with a file)."""
        return [path for method, path, status in self.requests if method == "GET" and status == 200]

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        code, local = self._find(unquote(handler.path.split("?")[0]))
        if self.token and handler.headers.get("Authorization") != f"Bearer {self.token}":
            code, local = "GatedRepo", None
        status = 200 if local else 401 if code in ("RepoNotFound", "GatedRepo") else 404
        if self.outage:
            code, local, status = "", None, 503
        elif (match := _RESOLVE.match(unquote(handler.path.split("?")[0]))) and match["path"] in self.failing:
            code, local, status = "", None, 500
        self.requests.append((handler.command, unquote(handler.path), status))
        if local is None:
            return self._error(handler, status, code)
        data = local.read_bytes()
        handler.send_response(200)
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    def _find(self, path: str) -> tuple[str, Path | None]:
        """The Hub's error code for `path` ("RepoNotFound", "RevisionNotFound", "EntryNotFound"), or "" and the
        local file it serves."""
        match = _RESOLVE.match(path) or _API.match(path)
        files = self.repos.get(match["repo"]) if match else None
        if files is None:
            return "RepoNotFound", None
        if _API.match(path):
            return "EntryNotFound", None
        if match["revision"] not in self.revisions.get(match["repo"], {match["revision"]}):
            return "RevisionNotFound", None
        local = files.get(match["path"])
        return ("", local) if local else ("EntryNotFound", None)

    @staticmethod
    def _error(handler: BaseHTTPRequestHandler, status: int, code: str) -> None:
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        if code == "EntryNotFound":  # as the Hub does: huggingface_hub then records the file as missing in the cache
            handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
