"""The ingress service serves its proxy on the HTTP server it is given, and says which port it
cannot bind in words the operator can act on."""

from __future__ import annotations

import socket
from collections.abc import Callable
from types import SimpleNamespace

import dns.message
import dns.query
import httpx
import pytest
import trio

from node.errors import sole_cause
from node.rpc.serving import serve_asgi
from orchestrator import haproxy, ingress_service
from orchestrator.ingress import RouteTable
from orchestrator.ingress_service import (
    DataPlane,
    IngressConfig,
    IngressService,
    IngressUnavailable,
)


def endpoints() -> SimpleNamespace:
    return SimpleNamespace(
        routes=lambda: RouteTable({}),
        may_dial=lambda backend: False,
        lookup=lambda name: None,
        has_below=lambda name: False,
        address="127.0.0.1",
        # Advertisements as the endpoint service holds them: a peer's, and one of a node
        # without ingress (never a peer's with port 0 in fact, but this node's own may be).
        book=SimpleNamespace(
            fresh=lambda: [
                SimpleNamespace(address="192.0.2.7", ingress_port=8080),
                SimpleNamespace(address="127.0.0.1", ingress_port=8080),
                SimpleNamespace(address="192.0.2.8", ingress_port=0),
            ]
        ),
    )


@pytest.mark.parametrize("plane", [DataPlane.PYTHON, DataPlane.HAPROXY, DataPlane.AUTO])
def test_the_proxy_is_served_on_the_given_server_and_dns_beside_it(plane: DataPlane) -> None:
    async def main() -> None:
        config = IngressConfig(http_port=0, dns_port=0, data_plane=plane)
        service = IngressService(endpoints(), config, serve_asgi)  # type: ignore[arg-type]
        # HAProxy is installed here: the default is the native data plane.
        assert (service.native is None) == (plane is DataPlane.PYTHON)
        async with trio.open_nursery() as nursery:
            addresses = await nursery.start(service.run)
            assert addresses.http[0] == "127.0.0.1" and addresses.http[1] > 0
            assert addresses.dns[0] == "127.0.0.1" and addresses.dns[1] > 0
            async with httpx.AsyncClient() as client:
                answer = await client.get(
                    f"http://127.0.0.1:{addresses.http[1]}/", headers={"host": "nowhere.test"}
                )
            assert answer.status_code == 404
            nursery.cancel_scope.cancel()

    trio.run(main)


def unavailable(busy_port: Callable[[int], IngressConfig]) -> tuple[int, str]:
    """What the service says when the port a TCP listener holds is the one `busy_port` puts
    in its configuration."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]

    async def main() -> None:
        service = IngressService(endpoints(), busy_port(port), serve_asgi)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)

    try:
        with pytest.raises(BaseException) as raised:
            trio.run(main)
    finally:
        busy.close()
    cause = sole_cause(raised.value)
    assert isinstance(cause, IngressUnavailable)
    return port, str(cause)


@pytest.mark.parametrize("plane", [DataPlane.PYTHON, DataPlane.HAPROXY])
def test_a_busy_proxy_port_is_named_with_its_flag(plane: DataPlane) -> None:
    port, message = unavailable(
        lambda port: IngressConfig(http_port=port, dns_port=0, data_plane=plane)
    )
    assert message == (
        f"cannot serve the ingress proxy on 127.0.0.1:{port} (--ingress-port): "
        "Address already in use"
    )


def test_a_data_plane_that_is_not_installed_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (ingress_service, haproxy):
        monkeypatch.setattr(module, "find_haproxy", lambda: None)
    _, message = unavailable(
        lambda port: IngressConfig(http_port=0, dns_port=0, data_plane=DataPlane.HAPROXY)
    )
    assert message == (
        "cannot start the ingress proxy (--ingress-proxy): "
        "haproxy is not installed (Debian package haproxy)"
    )
    auto = IngressService(endpoints(), IngressConfig(), serve_asgi)  # type: ignore[arg-type]
    assert auto.native is None  # the Python proxy, where HAProxy is missing


def test_dns_is_served_over_udp_and_tcp_on_one_port_naming_the_nodes_with_ingress() -> None:
    async def main() -> None:
        config = IngressConfig(http_port=0, dns_port=0)
        service = IngressService(endpoints(), config, serve_asgi)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            addresses = await nursery.start(service.run)

            def ask() -> None:
                query = dns.message.make_query(config.zone, "NS")
                port = addresses.dns[1]
                for send in (dns.query.udp, dns.query.tcp):
                    reply = send(query, "127.0.0.1", port=port, timeout=5)
                    glue = sorted(rrset[0].to_text() for rrset in reply.additional)
                    assert glue == ["127.0.0.1", "192.0.2.7"]  # not the node without ingress

            await trio.to_thread.run_sync(ask)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_dns_port_busy_over_tcp_is_named_with_its_flag() -> None:
    port, message = unavailable(lambda port: IngressConfig(http_port=0, dns_port=port))
    assert message == (
        f"cannot serve DNS on tcp 127.0.0.1:{port} (--dns-port): Address already in use"
    )
