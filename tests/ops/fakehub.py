"""A tiny fake Hugging Face hub for tests: the routes huggingface_hub's snapshot_download calls.

GET  /api/models/{owner}/{name}/revision/{rev}   model info with siblings (sizes, LFS sha256 when ?blobs=true)
GET  /api/models/{owner}/{name}/tree/{rev}       recursive file listing (one page)
HEAD /{owner}/{name}/resolve/{rev}/{path}        X-Repo-Commit, ETag, Content-Length
GET  /{owner}/{name}/resolve/{rev}/{path}        the bytes (Range supported, so resumes work)

Knobs on the server object: `gated` (401/403 unless the right Bearer token is sent), `token`,
`listed_size_delta` (lie about one file's size in the listings), `requests` (log of (method, path, auth)).
"""
from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def safetensors_bytes(tensors: dict[str, int]) -> bytes:
    """A valid safetensors file with float32 tensors of the given element counts (all zeros)."""
    header, offset = {}, 0
    for name, count in tensors.items():
        header[name] = {"dtype": "F32", "shape": [count], "data_offsets": [offset, offset + 4 * count]}
        offset += 4 * count
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


def tiny_repo() -> dict[str, bytes]:
    """A small diffusers-shaped SD1.5 repository, with files that the catalogue must NOT take."""
    cfg = json.dumps({"_class_name": "X"}).encode()
    return {
        "model_index.json": json.dumps({"_class_name": "StableDiffusionPipeline",
                                        "unet": ["diffusers", "UNet2DConditionModel"]}).encode(),
        "scheduler/scheduler_config.json": cfg,
        "text_encoder/config.json": cfg,
        "text_encoder/model.safetensors": safetensors_bytes({"w": 16}),
        "tokenizer/tokenizer_config.json": cfg,
        "tokenizer/vocab.json": json.dumps({"a": 0}).encode(),
        "tokenizer/merges.txt": b"#version: 0.2\n",
        "unet/config.json": cfg,
        "unet/diffusion_pytorch_model.safetensors": safetensors_bytes({"conv.weight": 64, "conv.bias": 8}),
        "unet/diffusion_pytorch_model.fp16.safetensors": safetensors_bytes({"x": 4}),
        "unet/diffusion_pytorch_model.bin": b"pickle-bytes-not-wanted",
        "vae/config.json": cfg,
        "vae/diffusion_pytorch_model.safetensors": safetensors_bytes({"enc": 32}),
        "v1-5-pruned.safetensors": safetensors_bytes({"big": 8}),
        "safety_checker/pytorch_model.bin": b"not wanted",
        "README.md": b"# tiny\n",
    }


class FakeHub:
    """Serve one or more repositories {repo_id: {path: bytes}} on 127.0.0.1:<random port>."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.gated: int | None = None        # 401 or 403 when set, unless Authorization matches `token`
        self.token: str | None = None
        self.listed_size_delta: dict[str, int] = {}
        self.requests: list[tuple[str, str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def downloads(self, path: str) -> int:
        """How many GETs of a file's bytes were served."""
        return sum(1 for m, p, _ in self.requests if m == "GET" and "/resolve/" in p and p.endswith("/" + path))

    # ------------------------------------------------------------------ request handling
    def _sibling(self, path: str, data: bytes, lfs: bool) -> dict:
        size = len(data) + self.listed_size_delta.get(path, 0)
        out = {"rfilename": path, "size": size, "blobId": hashlib.sha1(data).hexdigest()}
        if lfs and path.endswith(".safetensors"):
            out["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": size, "pointerSize": 134}
        return out

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head and body:
                    self.wfile.write(body)

            def _json(self, obj, status: int = 200, head: bool = False, headers: dict | None = None):
                self._send(status, json.dumps(obj).encode(),
                           {"Content-Type": "application/json", **(headers or {})}, head)

            def _denied(self) -> bool:
                if hub.gated is None:
                    return False
                if hub.token and self.headers.get("Authorization") == f"Bearer {hub.token}":
                    return False
                self._json({"error": "Access to this repo is restricted"}, hub.gated,
                           headers={"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"})
                return True

            def do_HEAD(self):
                self._route(head=True)

            def do_GET(self):
                self._route(head=False)

            def _route(self, head: bool):
                url = urlparse(self.path)
                path = unquote(url.path)
                hub.requests.append(("HEAD" if head else "GET", path, self.headers.get("Authorization") or ""))
                if path == "/api/agent-harnesses":
                    return self._json({"standardEnvVars": [], "harnesses": {}})
                m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(/.*)?)?$", path)
                if m:
                    repo = hub.repos.get(m.group(1))
                    if repo is None:
                        return self._json({"error": "Repository not found"}, 404,
                                          headers={"X-Error-Code": "RepoNotFound"})
                    if self._denied():
                        return
                    if m.group(2) in (None, "revision"):
                        siblings = [hub._sibling(p, d, "blobs=true" in url.query.lower()) for p, d in repo.items()]
                        return self._json({"id": m.group(1), "modelId": m.group(1), "sha": COMMIT,
                                           "siblings": siblings, "private": False, "gated": bool(hub.gated)})
                    items = []
                    for p, d in repo.items():
                        s = hub._sibling(p, d, True)
                        item = {"type": "file", "path": p, "size": s["size"], "oid": s["blobId"]}
                        if "lfs" in s:
                            item["lfs"] = {"oid": s["lfs"]["sha256"], "size": s["size"], "pointerSize": 134}
                        items.append(item)
                    return self._json(items)
                m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                if m and m.group(1) in hub.repos:
                    if self._denied():
                        return
                    data = hub.repos[m.group(1)].get(m.group(3))
                    if data is None:
                        return self._json({"error": "Entry not found"}, 404,
                                          headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
                    etag = '"' + hashlib.sha256(data).hexdigest() + '"'
                    headers = {"X-Repo-Commit": COMMIT, "ETag": etag, "Accept-Ranges": "bytes"}
                    rng = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
                    if rng and not head:
                        start = int(rng.group(1))
                        part = data[start:]
                        headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                        return self._send(206, part, headers)
                    headers["Content-Length"] = len(data)
                    return self._send(200, data, headers, head)
                self._json({"error": "not found"}, 404)

        return Handler
