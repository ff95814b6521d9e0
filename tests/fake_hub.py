"""A local stand-in for the Hugging Face Hub: enough of its HTTP API for ``snapshot_download``.

Serves one folder as a model repo at ``/api/models/{repo}`` (repo info), its ``/tree/{rev}``
(file list) and ``/{repo}/resolve/{revision}/{file}`` (files, with the headers huggingface_hub
reads).
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(ThreadingHTTPServer):
    """Serves ``folder`` as the repo ``repo_id``; ``requests`` logs the paths asked for."""

    daemon_threads = True

    def __init__(self, repo_id: str, folder: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repo_id = repo_id
        self.files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
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
        info_prefix = f"/api/models/{hub.repo_id}"
        file_prefix = f"/{hub.repo_id}/resolve/"
        if path.startswith(info_prefix + "/tree/"):
            data = json.dumps([{"type": "file", "path": n, "size": len(c),
                                "oid": hashlib.sha1(c).hexdigest()}
                               for n, c in hub.files.items()]).encode()
            self._send(200, data, {"Content-Type": "application/json"}, body)
        elif path == info_prefix or path.startswith(info_prefix + "/revision/"):
            data = json.dumps({"id": hub.repo_id, "modelId": hub.repo_id, "sha": COMMIT,
                               "siblings": [{"rfilename": n} for n in hub.files]}).encode()
            self._send(200, data, {"Content-Type": "application/json"}, body)
        elif path.startswith(file_prefix):
            name = path[len(file_prefix):].split("/", 1)[-1]
            if name not in hub.files:
                self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"}, body)
                return
            content = hub.files[name]
            self._send(200, content, {"X-Repo-Commit": COMMIT,
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
