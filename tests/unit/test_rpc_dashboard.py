"""The dashboard's route on the RPC server: its fixed files with their content types and policy,
404 for every other path under /ui (traversal included, sent byte for byte), and the same Origin
and Host checks as JSON-RPC calls. The page itself runs in a real Chromium in
tests/integration/test_dashboard.py."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from importlib import resources
from pathlib import Path

import httpx
import pytest
import trio

from chain.keys import dev_keypair
from node.chain_spec import DEV_AUTHORITY, DEV_OPERATOR, resolve_spec
from node.rpc.dashboard import FILES, UI_PATH, content_security_policy, is_dashboard_path
from node.runner import Node, NodeConfig
from tests.integration.harness import ROOT
from tests.unit.test_rpc_server import run, serving

EXPECTED_TYPES = {
    "/ui": "text/html; charset=utf-8",
    "/ui/": "text/html; charset=utf-8",
    "/ui/index.html": "text/html; charset=utf-8",
    "/ui/app.js": "text/javascript; charset=utf-8",
    "/ui/style.css": "text/css; charset=utf-8",
    "/ui/favicon.svg": "image/svg+xml",
}


def packaged(name: str) -> bytes:
    return (resources.files("node.rpc") / "ui" / name).read_bytes()


def test_every_file_is_served_with_its_type_and_policy() -> None:
    assert set(FILES) == set(EXPECTED_TYPES)

    async def scenario() -> None:
        async with serving() as served, httpx.AsyncClient() as client:
            netloc = served.address.netloc
            for path, content_type in EXPECTED_TYPES.items():
                response = await client.get(f"http://{netloc}{path}")
                assert response.status_code == 200, path
                assert response.headers["content-type"] == content_type
                assert response.content == packaged(FILES[path].name)
                assert response.headers["x-content-type-options"] == "nosniff"
                assert response.headers["x-frame-options"] == "DENY"
                assert response.headers["content-security-policy"] == (
                    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                    f"connect-src 'self' ws://{netloc} wss://{netloc}; base-uri 'none'; "
                    "form-action 'none'; frame-ancestors 'none'"
                )
            head = await client.head(f"http://{netloc}/ui/app.js")
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-length"] == str(len(packaged("app.js")))

    run(scenario)


def test_the_page_loads_only_its_own_files() -> None:
    page = packaged("index.html").decode()
    assert "<script>" not in page and " style=" not in page and "http" not in page
    assert 'src="/ui/app.js"' in page and 'href="/ui/style.css"' in page
    script = packaged("app.js").decode()
    # Data reaches the page as text only.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


async def raw_get(port: int, target: bytes, host: bytes = b"127.0.0.1") -> tuple[int, bytes]:
    """The status and body of a GET of `target` exactly as written (httpx would normalise
    the dots and escapes away)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


TRAVERSALS = [
    b"/ui/../node/rpc/server.py",
    b"/ui/..%2fserver.py",
    b"/ui/%2e%2e/%2e%2e/pyproject.toml",
    b"/ui/..\\dashboard.py",
    b"/ui//etc/passwd",
    b"/ui/%2fetc%2fpasswd",
    b"/ui/./app.js",
    b"/ui/app.js/",
    b"/ui/app.js%00.html",
    b"/ui/APP.JS",
    b"/ui/ui/app.js",
    b"/ui/missing.js",
    b"/ui/__init__.py",
    b"/ui/../dashboard.py",
]


def test_every_other_path_under_ui_is_404_and_reads_no_file() -> None:
    async def scenario() -> None:
        async with serving() as served:
            for target in TRAVERSALS:
                status, body = await raw_get(served.address.port, target)
                assert status == 404, target
                assert body == (b"not found: the dashboard's files are /ui/ and its assets"), target
            status, _ = await raw_get(served.address.port, b"/ui/app.js")
            assert status == 200

    run(scenario)


def test_only_get_and_head_and_the_same_origin_and_host_checks_as_calls() -> None:
    async def scenario() -> None:
        async with serving() as served, httpx.AsyncClient() as client:
            url = f"http://{served.address.netloc}/ui"
            response = await client.post(url, content=b"x")
            assert response.status_code == 405
            assert response.headers["allow"] == "GET, HEAD"
            response = await client.get(url, headers={"origin": "https://evil.example"})
            assert response.status_code == 403
            # Loopback: a name rebound to 127.0.0.1 is refused.
            status, body = await raw_get(served.address.port, b"/ui", host=b"evil.example")
            assert status == 403 and b"host not allowed" in body
            # A path that only starts like the dashboard's is JSON-RPC's 404.
            response = await client.get(f"http://{served.address.netloc}/uix")
            assert response.status_code == 404
            assert response.json()["error"]["message"].startswith("not found: /uix")

    run(scenario)


@pytest.mark.parametrize(
    ("host", "connect"),
    [
        ("127.0.0.1:9944", "'self' ws://127.0.0.1:9944 wss://127.0.0.1:9944"),
        ("[::1]:9944", "'self' ws://[::1]:9944 wss://[::1]:9944"),
        ("node.example.org", "'self' ws://node.example.org wss://node.example.org"),
        (None, "'self'"),
        ("", "'self'"),
        ("evil; script-src *", "'self'"),
        ("a b", "'self'"),
        ("host:99999999", "'self'"),
        ("x" * 300, "'self'"),
        ("[::1]; default-src *", "'self'"),
    ],
)
def test_a_host_is_named_in_the_policy_only_when_it_is_a_plain_host(
    host: str | None, connect: str
) -> None:
    policy = content_security_policy(host)
    assert f"; connect-src {connect}; " in policy
    assert policy.count(";") == 7


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/ui", True), ("/ui/", True), ("/ui/x", True), ("/uix", False), ("/", False), ("/u", False)],
)
def test_which_paths_are_the_dashboards(path: str, expected: bool) -> None:
    assert is_dashboard_path(path) is expected


def test_the_files_ship_in_the_package() -> None:
    """An installed node has the page: pyproject's package data names every file of FILES."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["node.rpc"]
    for ui_file in FILES.values():
        assert any(fnmatch.fnmatch(f"ui/{ui_file.name}", p) for p in patterns), ui_file.name
    assert UI_PATH == "/ui"


def test_the_page_calls_only_methods_a_full_node_serves(tmp_path: Path) -> None:
    """Every method the page calls is one a dev node registers, and all but `node_workloads`
    (ready and restarts, which the page does without) are safe: the page works on a node with
    `--rpc-methods safe`."""
    called = set(re.findall(r'rpc\.call\("([A-Za-z_]+)"', packaged("app.js").decode()))
    assert {"chain_subscribeNewHeads", "chain_getBlock", "apps_list", "wallet_list"} <= called
    config = NodeConfig(
        spec=resolve_spec("dev"),
        base_path=tmp_path,
        name="dashboard",
        signer=dev_keypair(DEV_AUTHORITY),
        operator=dev_keypair(DEV_OPERATOR),
        p2p_port=0,
        rpc_port=0,
    )
    node = Node.open(config)
    try:
        served = node.rpc.app.registry
        assert called <= set(served.names())
        safe = set(served.exposed(allow_unsafe=False).names())
        assert called - safe == {"node_workloads"}
    finally:
        node.db.close()
