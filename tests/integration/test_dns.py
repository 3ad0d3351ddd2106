"""A real node's DNS port seen by dnspython: the name server at the apex and its name over UDP
and TCP, EDNS0, and more idle TCP connections than the server keeps, after which it still
answers over both transports and counts what it answered on the node's metrics."""

from __future__ import annotations

import socket

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import httpx
import pytest

from orchestrator.dns_tcp import MAX_CONNECTIONS
from tests.integration.harness import NodeProcess

pytestmark = pytest.mark.integration

ZONE = "statemesh.internal"
TIMEOUT = 10.0
"""Per exchange: a node on a loaded machine answers in milliseconds, rarely in seconds."""
UDP_ATTEMPTS = 3
"""Queries one UDP exchange sends at most: a stub resolver asks again when no answer came."""


def ask(
    node: NodeProcess, name: str, qtype: str, *, tcp: bool, **make: object
) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, **make)  # type: ignore[arg-type]
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=node.dns_port, timeout=TIMEOUT)
    # A datagram may be lost (a full socket buffer on a loaded machine): like a stub resolver,
    # ask again before giving up.
    for _ in range(UDP_ATTEMPTS - 1):
        try:
            return dns.query.udp(query, "127.0.0.1", port=node.dns_port, timeout=TIMEOUT)
        except dns.exception.Timeout:
            continue
    return dns.query.udp(query, "127.0.0.1", port=node.dns_port, timeout=TIMEOUT)


def test_the_nodes_dns_is_an_authoritative_server_over_udp_and_tcp(dev_node: NodeProcess) -> None:
    for tcp in (False, True):
        ns = ask(dev_node, ZONE, "NS", tcp=tcp)
        assert ns.rcode() == dns.rcode.NOERROR and ns.flags & dns.flags.AA
        assert [r.to_text() for r in ns.answer[0]] == ["ns1.statemesh.internal."]
        address = ask(dev_node, "ns1.statemesh.internal", "A", tcp=tcp)
        assert [r.to_text() for r in address.answer[0]] == ["127.0.0.1"]  # its --node-ip
        (soa,) = ask(dev_node, ZONE, "SOA", tcp=tcp, use_edns=0, payload=4096).answer
        assert soa[0].mname.to_text() == "ns1.statemesh.internal."
        nothing = ask(dev_node, "nothing.statemesh.internal", "A", tcp=tcp, use_edns=0)
        assert nothing.rcode() == dns.rcode.NXDOMAIN and nothing.edns == 0
        assert [r.rdtype for r in nothing.authority] == [dns.rdatatype.SOA]
    badvers = ask(dev_node, ZONE, "SOA", tcp=False, use_edns=1)
    assert badvers.rcode() == dns.rcode.BADVERS

    held = [
        socket.create_connection(("127.0.0.1", dev_node.dns_port), timeout=TIMEOUT)
        for _ in range(MAX_CONNECTIONS + 16)
    ]
    try:
        for tcp in (False, True):
            assert ask(dev_node, ZONE, "NS", tcp=tcp).answer
        assert dev_node.call("system_health") is not None
    finally:
        for sock in held:
            sock.close()

    metrics = httpx.get(f"http://127.0.0.1:{dev_node.prometheus_port}/metrics", timeout=TIMEOUT)
    assert 'statemesh_dns_queries_total{rcode="BADVERS"} 1.0' in metrics.text
    assert 'statemesh_dns_queries_total{rcode="NXDOMAIN"} 2.0' in metrics.text
