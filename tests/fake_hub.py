"""A local stand-in for the Hugging Face Hub: enough of its API for the download functions.

``snapshot_download`` and ``hf_hub_download`` both work against it.

Serves folders as model repos at ``/api/models/{repo}`` (repo info), its ``/tree/{rev}``
(file list) and ``/{repo}/resolve/{revision}/{path}`` (files, in subfolders too, with the
headers huggingface_hub reads). A repo named in ``gated`` answers 401 with the Hub's
``GatedRepo`` error code, as the real Hub does until its terms are accepted.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(ThreadingHTTPServer):
    """Serves ``folder`` as the repo ``repo_id``; ``requests`` logs the paths asked for."""

    daemon_threads = True

    def __init__(self, repo_id: str | dict[str, Path], folder: Path | None = None, *,
                 gated: tuple[str, ...] = (), invalid_token: str | None = None,
                 list_sizes: bool = False):
        super().__init__(("127.0.0.1", 0), _Handler)
        repos = repo_id if isinstance(repo_id, dict) else {repo_id: folder}
        self.repos = {name: {p.relative_to(root).as_posix(): p.read_bytes()
                             for p in sorted(root.rglob("*")) if p.is_file()}
                      for name, root in repos.items()}
        self.repo_id = next(iter(self.repos))
        self.files = self.repos[self.repo_id]  # the first repo's files
        self.gated = set(gated)
        self.invalid_token = invalid_token  # a token answered 401 "Invalid credentials"
        self.list_sizes = list_sizes  # the repo info gives each file's size, as with metadata
        self.requests: list[str] = []
        self.thread = threading.Thread(target=self.serve_forever, name="serve-fake-hub",
                                       daemon=True)

    @property
    def url(self) -> str:
        """Base URL, for HF_ENDPOINT."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join()


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        hub = self.server
        path = self.path.split("?")[0]
        hub.requests.append(f"{self.command} {path}")
        repo_id = next((r for r in hub.repos
                        if path.startswith((f"/api/models/{r}", f"/{r}/resolve/"))), None)
        if repo_id is None:
            self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"}, body)
            return
        files = hub.repos[repo_id]
        if hub.invalid_token and self.headers.get("Authorization") == \
                f"Bearer {hub.invalid_token}":
            self._send(401, b'{"error": "Invalid credentials in Authorization header"}', {
                "X-Error-Message": "Invalid credentials in Authorization header"}, body)
            return
        if repo_id in hub.gated:
            self._send(401, b'{"error": "gated"}', {
                "X-Error-Code": "GatedRepo",
                "X-Error-Message": f"Access to model {repo_id} is restricted. You must have "
                                   "access to it and be authenticated to access it."}, body)
            return
        info_prefix = f"/api/models/{repo_id}"
        file_prefix = f"/{repo_id}/resolve/"
        if path.startswith(info_prefix + "/tree/"):
            data = json.dumps([{"type": "file", "path": n, "size": len(c),
                                "oid": hashlib.sha1(c).hexdigest()}
                               for n, c in files.items()]).encode()
            self._send(200, data, {"Content-Type": "application/json"}, body)
        elif path == info_prefix or path.startswith(info_prefix + "/revision/"):
            data = json.dumps({"id": repo_id, "modelId": repo_id, "sha": COMMIT,
                               "siblings": [{"rfilename": n, **({"size": len(c)}
                                                                 if hub.list_sizes else {})}
                                            for n, c in files.items()]}).encode()
            self._send(200, data, {"Content-Type": "application/json"}, body)
        elif path.startswith(file_prefix):
            revision, _, name = path[len(file_prefix):].partition("/")
            # A pinned commit is answered as itself, as the Hub does; a branch as COMMIT.
            commit = revision if re.fullmatch(r"[0-9a-f]{40}", revision) else COMMIT
            if name not in files:
                self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"}, body)
                return
            content = files[name]
            self._send(200, content, {"X-Repo-Commit": commit,
                                      "ETag": f'"{hashlib.sha256(content).hexdigest()}"'}, body)
        else:
            self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"}, body)

    def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)


class SlowHub(FakeHub):
    """FakeHub sending files over ``slow_above`` bytes in ``piece``-byte pieces, ``pause`` s apart.

    ``sent`` counts the bytes of each such file that went out, to tell that a cancel stopped it.
    """

    def __init__(self, repo_id: str, folder: Path, pause: float, *, piece: int = 256 * 1024,
                 slow_above: int = 1024 * 1024, list_sizes: bool = False):
        super().__init__(repo_id, folder, list_sizes=list_sizes)
        self.RequestHandlerClass = _SlowHandler
        self.pause, self.piece, self.slow_above = pause, piece, slow_above
        self.sent: dict[str, int] = {}

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client hanging up on a cancel is the point
        super().handle_error(request, client_address)


class _SlowHandler(_Handler):
    server: SlowHub

    def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
        hub = self.server
        if not body or len(data) <= hub.slow_above:
            super()._send(status, data, headers, body)
            return
        name = self.path.split("?")[0].rsplit("/", 1)[-1]
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        for start in range(0, len(data), hub.piece):
            self.wfile.write(data[start:start + hub.piece])
            hub.sent[name] = min(len(data), start + hub.piece)
            time.sleep(hub.pause)
