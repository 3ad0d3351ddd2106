"""The node's ingress: the HTTP proxy and the DNS server of the ingress zone, both answering from
the endpoint service's routes, so every node routes to every application's ready replicas. The
proxy's data plane is HAProxy where it is installed (`orchestrator.haproxy`, the node renders its
configuration), else the Python proxy served by the HTTP server the node is given (`ServeHttp`),
the one its RPC runs on."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import trio
from prometheus_client import CollectorRegistry

from orchestrator.dns import ZoneServer
from orchestrator.dns_tcp import DnsPortUnavailable, DnsTcpServer, bind_dns
from orchestrator.endpoints import EndpointService
from orchestrator.errors import OrchestratorError
from orchestrator.haproxy import HaproxyError, HaproxyIngress, find_haproxy
from orchestrator.ingress import IngressProxy
from orchestrator.ingress_metrics import DnsMetrics, IngressMetrics

log = logging.getLogger("statemesh.ingress")


class DataPlane(enum.Enum):
    AUTO = "auto"
    """HAProxy if installed, else the Python proxy."""
    HAPROXY = "haproxy"
    PYTHON = "python"


@dataclass(frozen=True, slots=True)
class IngressConfig:
    host: str = "127.0.0.1"
    """Where the proxy and DNS listen."""
    http_port: int = 8080
    """0: any free port."""
    dns_port: int = 8053
    zone: str = "statemesh.internal"
    data_plane: DataPlane = DataPlane.AUTO


class ServeHttp(Protocol):
    """Serves the ASGI app `app` on host:port until cancelled; `task_status` gets the bound
    address as `(host, port, ...)`. Fails with an `OSError` (perhaps inside exception groups)
    when the address cannot be bound."""

    async def __call__(
        self, app: IngressProxy, host: str, port: int, *, task_status: Any = ...
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class IngressAddresses:
    http: tuple[str, int]
    dns: tuple[str, int]


class IngressService:
    def __init__(
        self,
        endpoints: EndpointService,
        config: IngressConfig,
        serve_http: ServeHttp,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """`registry`: where the proxy's and DNS server's metrics are exported (a private
        one if None)."""
        self.config = config
        self.serve_http = serve_http
        metrics = IngressMetrics(registry)
        self.proxy = IngressProxy(endpoints.routes, may_dial=endpoints.may_dial, metrics=metrics)
        self.native: HaproxyIngress | None = None
        if config.data_plane is not DataPlane.PYTHON:
            binary = find_haproxy()
            if binary is not None or config.data_plane is DataPlane.HAPROXY:
                self.native = HaproxyIngress(
                    endpoints.routes, endpoints.may_dial, metrics=metrics, binary=binary
                )
        self.dns = ZoneServer(
            config.zone,
            endpoints.lookup,
            endpoints.has_below,
            partial(_name_servers, endpoints),
            metrics=DnsMetrics(registry),
        )
        self.dns_tcp = DnsTcpServer(self.dns)
        self.addresses: IngressAddresses | None = None

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        try:
            sockets = await bind_dns(config.host, config.dns_port)
        except DnsPortUnavailable as exc:
            raise IngressUnavailable(
                f"cannot serve DNS on {exc.transport} {config.host}:{config.dns_port} "
                f"(--dns-port): {exc.strerror}"
            ) from None
        try:
            async with trio.open_nursery() as nursery:
                serve = (
                    partial(self.serve_http, self.proxy)
                    if self.native is None
                    else self.native.serve
                )
                try:
                    http = await nursery.start(serve, config.host, config.http_port)
                except* OSError as group:
                    raise IngressUnavailable(
                        f"cannot serve the ingress proxy on {config.host}:{config.http_port} "
                        f"(--ingress-port): {_first_strerror(group)}"
                    ) from None
                except* HaproxyError as group:
                    raise IngressUnavailable(
                        f"cannot start the ingress proxy (--ingress-proxy): {group.exceptions[0]}"
                    ) from None
                nursery.start_soon(self.dns.serve, sockets.udp)
                nursery.start_soon(self.dns_tcp.serve, sockets.tcp)
                dns = sockets.address
                self.addresses = IngressAddresses(http[:2], dns)
                log.info(
                    "ingress proxy (%s) on http://%s:%d, DNS for %s on udp and tcp %s:%d",
                    "python" if self.native is None else "haproxy",
                    *http[:2],
                    config.zone,
                    *dns,
                )
                task_status.started(self.addresses)
        finally:
            sockets.close()
            with trio.CancelScope(shield=True):
                await self.proxy.aclose()


def _name_servers(endpoints: EndpointService) -> list[str]:
    """The addresses of the nodes serving the ingress zone: this one and those whose current
    advertisement gives an ingress port (a node serving the proxy serves DNS beside it). Asked
    on each query, so it reads the advertisements as they are, O(nodes); lapsed ones go when the
    routes are rebuilt."""
    return [endpoints.address, *(a.address for a in endpoints.book.fresh() if a.ingress_port)]


class IngressUnavailable(OrchestratorError):
    """The proxy or DNS port cannot be bound."""


def _first_strerror(group: BaseExceptionGroup[OSError]) -> str:
    """What the first bind failure says (the server binds one address, so there is one)."""
    first: OSError | BaseExceptionGroup[OSError] = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first.strerror or str(first)
