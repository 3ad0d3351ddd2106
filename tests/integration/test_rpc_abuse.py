"""The JSON-RPC server of real dev nodes under the attacks of issue 13, each asserting that the
attack now fails: unsafe methods on an external server, a web page's Origin, DNS rebinding
(Host), one address taking every connection, bodies that never arrive, and 20,000 head
subscriptions that are never read.

Clients play several addresses on loopback (127.0.0.2, 127.0.0.3, ...: all of 127.0.0.0/8 is
this machine), so the per-address limit can be told apart from the global one. To the server
they are other clients than the operator's tools, which call from 127.0.0.1 itself."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.rpc.client import RpcCallError, RpcClient
from node.rpc.limits import RpcLimits
from testkit import floods
from tests.integration.harness import NodeProcess, cli_json

pytestmark = [pytest.mark.integration, pytest.mark.serial]

SLOT_MS = 1000
LIGHT = ["--dev", "--no-presence", "--no-compute", "--no-ingress"]
"""A dev node authoring every slot, without the services these tests do not need."""
DEFAULTS = RpcLimits()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """RPC on loopback (the default): unsafe methods served, Host checked."""
    node = NodeProcess(tmp_path_factory.mktemp("rpc") / "local", args=LIGHT).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """RPC on every interface (`--rpc-external`): `auto` means safe methods only."""
    node = NodeProcess(
        tmp_path_factory.mktemp("rpc") / "external", args=[*LIGHT, "--rpc-external"]
    ).start()
    try:
        yield node
    finally:
        node.stop()


def rpc_error(node: NodeProcess, method: str) -> RpcCallError:
    with pytest.raises(RpcCallError) as caught:
        RpcClient(node.url).call(method)
    return caught.value


# -- who may call what -------------------------------------------------------------------------


def test_unsafe_method_on_an_external_safe_server_is_refused(external: NodeProcess) -> None:
    error = rpc_error(external, "system_peers")
    assert error.code == -32601
    assert error.message == "RPC call is unsafe to be called externally"
    assert error.data.startswith("system_peers is an unsafe method")
    assert "--rpc-methods unsafe" in error.data
    assert "--rpc-methods unsafe" in str(error)  # what the CLI shows
    listed = external.call("rpc_methods")["methods"]
    assert "system_peers" not in listed
    assert "node_workloads" not in listed
    assert {"chain_getHeader", "author_submitExtrinsic", "chain_subscribeNewHeads"} <= set(listed)
    assert external.best_number() >= 0  # safe methods are served


def test_unsafe_methods_are_served_when_asked_for(tmp_path: Path) -> None:
    node = NodeProcess(
        tmp_path / "unsafe",
        args=[*LIGHT, "--rpc-external", "--rpc-methods", "unsafe", "--rpc-max-subscriptions", "3"],
    ).start()
    try:
        assert isinstance(node.call("system_peers"), list)
        assert "system_peers" in node.call("rpc_methods")["methods"]
        # The node-wide subscription budget, over several connections.
        sockets = []
        answers = []
        for _ in range(2):
            sock, status = floods.websocket_handshake(node.port)
            assert status == 101
            sockets.append(sock)
            floods.send_text(sock, floods.subscribe_batch(2))
            for message in floods.read_texts(sock, 5):
                answers.append(message)
                if len([a for a in answers if "id" in a]) % 2 == 0:
                    break
        answers = [a for a in answers if "id" in a]
        results = [a for a in answers if "result" in a]
        errors = [a["error"] for a in answers if "error" in a]
        assert len(results) == 3
        assert errors == [
            {
                "code": -32006,
                "message": "too many subscriptions: the server already serves 3, its limit, "
                "try again later",
            }
        ]
        for sock in sockets:
            sock.close()
    finally:
        node.stop()


def test_loopback_server_serves_unsafe_methods_and_only_to_this_machine(
    local: NodeProcess,
) -> None:
    assert isinstance(local.call("system_peers"), list)
    for host in ("localhost", f"localhost:{local.port}", f"127.0.0.1:{local.port}", "[::1]:1"):
        status, _, _ = floods.rpc_call(local.port, headers={"Host": host})
        assert status == 200, host
    # A name rebound to 127.0.0.1 by its owner's DNS: a browser sends its own Host.
    for host in ("evil.example", f"evil.example:{local.port}", "localhost.evil.example"):
        status, _, answer = floods.rpc_call(local.port, headers={"Host": host})
        assert status == 403, host
        assert b"host not allowed" in answer
    sock, status = floods.websocket_handshake(local.port, host=f"evil.example:{local.port}")
    sock.close()
    assert status == 403


def test_web_page_of_another_origin_is_refused(external: NodeProcess) -> None:
    evil = "http://evil.example"
    sock, status = floods.websocket_handshake(external.port, origin=evil)
    sock.close()
    assert status == 403
    status, headers, answer = floods.rpc_call(external.port, headers={"Origin": evil})
    assert status == 403
    assert b"origin not allowed: http://evil.example" in answer
    assert "access-control-allow-origin" not in headers
    preflight = {"Origin": evil, "Access-Control-Request-Method": "POST"}
    status, headers, _ = floods.http_request(external.port, "OPTIONS", headers=preflight)
    assert status == 403
    assert "access-control-allow-origin" not in headers
    # Pages served from this machine are allowed, with CORS headers and a granted preflight.
    mine = "http://localhost:3000"
    sock, status = floods.websocket_handshake(external.port, origin=mine)
    sock.close()
    assert status == 101
    status, headers, answer = floods.rpc_call(external.port, headers={"Origin": mine})
    assert (status, headers["access-control-allow-origin"]) == (200, mine)
    status, headers, _ = floods.http_request(
        external.port, "OPTIONS", headers={**preflight, "Origin": mine}
    )
    assert status == 204
    assert headers["access-control-allow-origin"] == mine
    assert "content-type" in headers["access-control-allow-headers"]


# -- how much ------------------------------------------------------------------------------------


def test_one_address_cannot_take_every_connection(external: NodeProcess) -> None:
    cap = DEFAULTS.max_connections_per_ip
    opened = []
    try:
        for _ in range(cap):
            sock, status = floods.websocket_handshake(external.port, source="127.0.0.3")
            opened.append(sock)
            assert status == 101
        sock, status = floods.websocket_handshake(external.port, source="127.0.0.3")
        opened.append(sock)
        assert status == 101  # accepted, to be told why it is closed at once
        code, reason = floods.read_close_code(sock)
        assert (code, reason) == (
            1013,
            f"server is busy: the limit of {cap} connections from one address is reached",
        )
        status, _, _ = floods.rpc_call(external.port, source="127.0.0.3")
        assert status == 503
        # Everybody else is served.
        assert external.call("system_name") == "statemesh"
    finally:
        for sock in opened:
            sock.close()


def test_a_few_addresses_cannot_take_the_operators_connections(external: NodeProcess) -> None:
    """Four addresses, each within its cap, take every place they may (90 of 100): the next
    from anywhere but 127.0.0.1 is refused, and the operator's calls and CLI are answered."""
    cap = DEFAULTS.max_connections_per_ip
    others = DEFAULTS.max_connections - DEFAULTS.reserved_for_local
    opened = []
    try:
        for n in range(others):
            source = f"127.0.0.{2 + n // cap}"
            sock, status = floods.websocket_handshake(external.port, source=source)
            opened.append(sock)
            assert status == 101
        sock, status = floods.websocket_handshake(external.port, source="127.0.0.9")
        opened.append(sock)
        assert status == 101  # accepted, to be told why it is closed at once
        assert floods.read_close_code(sock) == (
            1013,
            f"server is busy: the limit of {others} connections from addresses other than "
            "127.0.0.1 and ::1 is reached",
        )
        assert floods.rpc_call(external.port, source="127.0.0.10")[0] == 503
        assert floods.rpc_call(external.port, source="127.0.0.1")[0] == 200
        assert external.call("system_name") == "statemesh"
        assert int(cli_json("query", "block", "--rpc", external.url)["header"]["number"], 16) > 0
    finally:
        for sock in opened:
            sock.close()


def test_bodies_that_never_arrive_do_not_stop_legitimate_calls(external: NodeProcess) -> None:
    """100 stalled bodies from 127.0.0.1, the address the CLI calls from: they wait in a pool
    of their own (25 from one address), so the calls keep their connection slots."""
    client = RpcClient(external.url, timeout=5)
    timeout = DEFAULTS.request_body_timeout
    with floods.slow_bodies(external.port, count=100, source="127.0.0.1") as stalled:
        started = time.monotonic()
        answered = 0
        while time.monotonic() - started < timeout - 1:
            assert client.call("system_name") == "statemesh"
            answered += 1
            time.sleep(0.1)
        # The CLI itself, while the 100 sockets are still open.
        assert int(cli_json("query", "block", "--rpc", external.url)["header"]["number"], 16) > 0
        # Every stalled request was answered and disconnected: 503 at once beyond the
        # address's share of bodies in progress, 408 once the body timeout passed for the rest.
        statuses = []
        for sock in stalled:
            sock.settimeout(timeout + 5)
            status, headers, _ = floods.read_response_head(sock)
            statuses.append(status)
            assert headers.get("connection") == "close"
            assert _closed_by_server(sock)
        elapsed = time.monotonic() - started
    assert answered >= (timeout - 1) * 5
    cap = DEFAULTS.max_connections_per_ip
    assert sorted(statuses) == [408] * cap + [503] * (100 - cap)
    assert elapsed < timeout + 15
    assert floods.rpc_call(external.port)[0] == 200


def test_unread_subscriptions_do_not_delay_authoring(external: NodeProcess) -> None:
    reader, status = floods.websocket_handshake(external.port)
    assert status == 101
    floods.send_text(reader, floods.subscribe_batch(1))
    with floods.unread_subscriptions(
        external.port, sockets=20, per_socket=1000, source="127.0.0.4"
    ) as flooded:
        intervals = floods.authoring_intervals(external, 12)
        assert len(intervals.gaps_ms) >= 9, intervals
        assert intervals.p95 <= 1.2 * SLOT_MS, intervals
        # A subscriber that reads got every head meanwhile.
        heads = [
            int(m["params"]["result"]["number"], 16)
            for m in floods.read_texts(reader, 2)
            if m.get("method") == "chain_newHead"
        ]
        reader.close()
        first = intervals.first + 1
        assert set(range(first, first + len(intervals.gaps_ms))) <= set(heads)
        assert heads == list(range(heads[0], heads[0] + len(heads)))
        # The subscribers that never read were told they were dropped (read now, they find it
        # after the notifications that fitted).
        told = next(
            (m for m in floods.read_texts(flooded[0], 20) if "error" in m.get("params", {})),
            None,
        )
    assert told is not None, "no subscription was dropped"
    assert told["method"] == "chain_newHead"
    error = told["params"]["error"]
    assert error["code"] == -32021
    assert error["message"].startswith("subscription dropped: the client is too slow")
    assert external.call("system_name") == "statemesh"


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True
