"""The dashboard: the fixed set of static files in `node/rpc/ui/` (shipped in the package, no
build step), served by the RPC server under `/ui` with a Content-Security-Policy that lets the
page load only its own files and talk only to this node's WebSocket.

Only the paths of `FILES` are served, by exact match: a path is never joined to a folder, so no
spelling of `..` can reach another file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from node.rpc.serving import AsgiSend, send_plain

UI_PATH = "/ui"


@dataclass(frozen=True, slots=True)
class UiFile:
    name: str
    """The file's name in `node/rpc/ui/`."""
    content_type: str


_HTML = UiFile("index.html", "text/html; charset=utf-8")

FILES: dict[str, UiFile] = {
    UI_PATH: _HTML,
    UI_PATH + "/": _HTML,
    UI_PATH + "/index.html": _HTML,
    UI_PATH + "/app.js": UiFile("app.js", "text/javascript; charset=utf-8"),
    UI_PATH + "/style.css": UiFile("style.css", "text/css; charset=utf-8"),
    UI_PATH + "/favicon.svg": UiFile("favicon.svg", "image/svg+xml"),
}
"""Each served path and the file it answers with."""

# A Host header that is a plain host name or address with an optional port: only then is it
# named in the policy (a header value is the client's, and must not add policy directives).
_SAFE_HOST = re.compile(r"(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def is_dashboard_path(path: str) -> bool:
    """Whether `path` is the dashboard's to answer (served or refused)."""
    return path == UI_PATH or path.startswith(UI_PATH + "/")


def content_security_policy(host: str | None) -> str:
    """The page's policy: its scripts, styles and images from this origin only, no inline code,
    no frames, no forms, and connections only to this origin and this node's WebSocket (the
    same host, over ws: or wss:)."""
    connect = ["'self'"]
    if host is not None and _SAFE_HOST.fullmatch(host):
        connect += [f"ws://{host}", f"wss://{host}"]
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src {' '.join(connect)}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


@cache
def _read(name: str) -> bytes:
    return (resources.files("node.rpc") / "ui" / name).read_bytes()


async def serve_dashboard(send: AsgiSend, method: str, path: str, host: str | None) -> None:
    """Answer a request for a path under `/ui`: a file of `FILES` (GET and HEAD), else 404, or
    405 for another method. The caller has already checked the request's Origin and Host."""
    found = FILES.get(path)
    if found is None:
        await send_plain(
            send, 404, f"not found: the dashboard's files are {UI_PATH}/ and its assets"
        )
        return
    if method not in ("GET", "HEAD"):
        await send_plain(
            send, 405, f"{UI_PATH} answers GET and HEAD only", [(b"allow", b"GET, HEAD")]
        )
        return
    body = _read(found.name)
    headers = [
        (b"content-type", found.content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"content-security-policy", content_security_policy(host).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-cache"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
