"""A registry a hostile tenant might name, on loopback: it speaks just enough of the registry API
(v2) for the engine to pull one image of one layer, whose blob it floods (as fast as it can,
up to a declared size far above any cap) or trickles (a byte now and then: a stalled pull), and
it records what the engine read and when it hung up; or it accepts connections and never
answers (silent)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["flood", "trickle", "silent"]
_CHUNK = b"\0" * 65536
_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class BlobRecord:
    """What happened to the requests for the layer's blob."""

    requests: int = 0
    bytes_sent: int = 0
    closed_at: list[float] = field(default_factory=list)
    """When the engine hung up on each (monotonic clock)."""


class HostileRegistry:
    """Serves `REPOSITORY:TAG` for any repository and tag, as one image whose single layer
    declares `layer_bytes`."""

    def __init__(self, mode: Mode, layer_bytes: int) -> None:
        self.mode = mode
        self.layer_bytes = layer_bytes
        self.blob = BlobRecord()
        self.held = 0
        """Connections a silent registry accepted and left unanswered."""
        self.seen: list[tuple[float, str, str]] = []
        """Every request: when (monotonic clock), its method and path."""
        self._stop = threading.Event()
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [_digest(b"layer")]},
        }
        self.config = json.dumps(config).encode()
        # A digest of its own: the engine downloads a layer once for all pulls that want it.
        self.layer_digest = _digest(os.urandom(16))
        manifest = {
            "schemaVersion": 2,
            "mediaType": _MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(self.config),
                "digest": _digest(self.config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": layer_bytes,
                    "digest": self.layer_digest,
                }
            ],
        }
        self.manifest = json.dumps(manifest).encode()
        self.digest = _digest(self.manifest)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HostileRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def handle(self) -> None:
                if registry.mode == "silent":
                    registry.held += 1
                    registry._stop.wait()
                    return
                # The engine tries TLS first; hanging up on its handshake makes it fall back to
                # plain HTTP at once (a handshake left waiting takes it 10 s).
                with contextlib.suppress(OSError):
                    if self.request.recv(1, socket.MSG_PEEK) == b"\x16":
                        return
                super().handle()

            def _answer(self, body: bytes, content_type: str, digest: str | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                if digest is not None:
                    self.send_header("Docker-Content-Digest", digest)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                registry.seen.append((time.monotonic(), self.command, path))
                if path in ("/v2/", "/v2"):
                    self._answer(b"{}", "application/json")
                elif "/manifests/" in path:
                    self._answer(registry.manifest, _MANIFEST_TYPE, registry.digest)
                elif path.endswith(f"/blobs/{_digest(registry.config)}"):
                    self._answer(registry.config, "application/octet-stream")
                elif path.endswith(f"/blobs/{registry.layer_digest}"):
                    self._layer()
                else:
                    self.send_error(404)

            def _layer(self) -> None:
                record = registry.blob
                record.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(registry.layer_bytes))
                self.send_header("Docker-Content-Digest", registry.layer_digest)
                self.end_headers()
                try:
                    while record.bytes_sent < registry.layer_bytes and not registry._stop.is_set():
                        if registry.mode == "flood":
                            self.wfile.write(_CHUNK)
                            record.bytes_sent += len(_CHUNK)
                        else:
                            self.wfile.write(b"\0")
                            self.wfile.flush()
                            record.bytes_sent += 1
                            registry._stop.wait(0.2)
                except OSError:
                    record.closed_at.append(time.monotonic())

        return Handler
