"""A tiny Hugging Face Hub on 127.0.0.1 that the real huggingface_hub client talks to. Stdlib only.

It answers the calls that huggingface_hub 0.36 makes for `snapshot_download(local_dir=...)` and
`HfApi.model_info(files_metadata=True)`:
  GET  /api/models/<org>/<name>/revision/<rev>[?blobs=true]   id, sha, siblings (with blobs=true:
       size, blobId, and lfs {sha256, size, pointerSize} for LFS files)
  HEAD /<org>/<name>/resolve/<rev>/<path>   X-Repo-Commit, ETag = git blob id, Content-Length;
       an LFS file also X-Linked-Etag = sha256 and X-Linked-Size (the client prefers these)
  GET  /<org>/<name>/resolve/<rev>/<path>   the bytes
Errors carry X-Error-Code like the Hub's: RepoNotFound, RevisionNotFound, EntryNotFound, and for
a gated repo GatedRepo with 401 (no Authorization header) or 403 (a token without access).
No X-Xet-* headers are sent, so the client downloads over plain HTTP and hf-xet is never used.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


def git_blob_id(data: bytes) -> str:
    """The id git (and the Hub's blobId) gives to a file: sha1 of "blob <size>\\0" + content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    content: bytes
    lfs: bool = False
    served: bytes | None = None  # bytes sent instead of `content`; the published metadata stays

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def pointer(self) -> bytes:
        """The LFS pointer file that git stores in place of an LFS file."""
        return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
            self.sha256.encode(),
            len(self.content),
        )

    def sibling(self, name: str, blobs: bool) -> dict:
        if not blobs:
            return {"rfilename": name}
        if not self.lfs:
            return {
                "rfilename": name,
                "size": len(self.content),
                "blobId": git_blob_id(self.content),
            }
        lfs = {"sha256": self.sha256, "size": len(self.content), "pointerSize": len(self.pointer)}
        return {
            "rfilename": name,
            "size": len(self.content),
            "blobId": git_blob_id(self.pointer),
            "lfs": lfs,
        }


@dataclass
class HubRepo:
    repo_id: str  # "org/name"
    sha: str  # the 40-hex commit that the revision "main" points to
    files: dict[str, HubFile]
    gated_token: str | None = None  # set: the repo is gated and only this token may read files


@dataclass
class FakeHub:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # "GET /path?query", in arrival order

    def start(self) -> str:
        """Serve on a free port; returns the endpoint URL (for HF_ENDPOINT)."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        """Shut the server down; safe to call twice."""
        if getattr(self, "_server", None) is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet: no stderr per request
            pass

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            hub.requests.append(f"{self.command} {self.path}")
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] == "revision":
                repo, rev, path = "/".join(parts[2:4]), parts[5], None
            elif len(parts) >= 5 and parts[2] == "resolve":
                repo, rev, path = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            else:
                return self._error(404, "RepoNotFound", body)
            r = hub.repos.get(repo)
            if r is None:
                return self._error(404, "RepoNotFound", body)
            if rev not in (r.sha, "main"):
                return self._error(404, "RevisionNotFound", body)
            if path is None:
                blobs = "blobs=true" in url.query.lower()
                siblings = [f.sibling(n, blobs) for n, f in sorted(r.files.items())]
                info = {
                    "id": r.repo_id,
                    "modelId": r.repo_id,
                    "sha": r.sha,
                    "private": False,
                    "gated": "manual" if r.gated_token else False,
                    "siblings": siblings,
                }
                return self._send(
                    200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body
                )
            if r.gated_token is not None:
                auth = self.headers.get("Authorization")
                if auth is None:
                    return self._error(401, "GatedRepo", body)
                if auth != f"Bearer {r.gated_token}":
                    return self._error(403, "GatedRepo", body)
            f = r.files.get(path)
            if f is None:
                return self._error(404, "EntryNotFound", body)
            headers = {
                "X-Repo-Commit": r.sha,
                "ETag": f'"{git_blob_id(f.pointer if f.lfs else f.content)}"',
            }
            if f.lfs:
                headers |= {"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(len(f.content))}
            return self._send(200, f.content if f.served is None else f.served, headers, body)

        def _error(self, status: int, code: str, body: bool) -> None:
            message = json.dumps({"error": f"{code} (fake hub)"}).encode()
            self._send(
                status, message, {"X-Error-Code": code, "Content-Type": "application/json"}, body
            )

        def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler
