"""The ingress zone's DNS server as users' tools see it: dnspython over real UDP and TCP sockets
(NS, SOA, EDNS0, ANY, truncation and the retry over TCP), several queries on one connection, and
clients that misbehave (malformed packets, bad lengths, slow or idle connections by the dozen)
while the server keeps answering."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.dns import MAX_ANSWERS, ZoneServer
from orchestrator.dns_tcp import DnsPortUnavailable, DnsTcpServer, bind_dns

ZONE = "statemesh.internal"
NAMES = {
    "web.statemesh.internal": ["10.0.0.1", "10.0.0.2", "2001:db8::7"],
    "idle.statemesh.internal": [],
    "big.statemesh.internal": [f"10.0.1.{i}" for i in range(100)],
}
SERVERS = ["127.0.0.1", "10.0.0.53"]
HOST = "127.0.0.1"
TIMEOUT = 5.0
"""For each exchange with a live server: answers come in milliseconds."""


@dataclass(frozen=True, slots=True)
class Served:
    port: int
    zone: ZoneServer
    tcp: DnsTcpServer


def serve(check: Callable[[Served], None], **limits: float) -> None:
    """Run the zone's server over UDP and TCP on a free loopback port while `check` (blocking
    client code, in a thread) talks to it."""

    async def main() -> None:
        zone = ZoneServer(ZONE, NAMES.get, name_servers=lambda: SERVERS)
        tcp = DnsTcpServer(zone, **limits)  # type: ignore[arg-type]
        sockets = await bind_dns(HOST, 0)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(zone.serve, sockets.udp)
                nursery.start_soon(tcp.serve, sockets.tcp)
                await trio.to_thread.run_sync(check, Served(sockets.address[1], zone, tcp))
                nursery.cancel_scope.cancel()
        finally:
            sockets.close()

    trio.run(main)


def udp(port: int, name: str, qtype: str = "A", **make: object) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, **make)  # type: ignore[arg-type]
    return dns.query.udp(query, HOST, port=port, timeout=TIMEOUT)


def tcp(port: int, name: str, qtype: str = "A", **make: object) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, **make)  # type: ignore[arg-type]
    return dns.query.tcp(query, HOST, port=port, timeout=TIMEOUT)


def texts(reply: dns.message.Message, rdtype: str | None = None) -> list[str]:
    return sorted(
        rdata.to_text()
        for rrset in reply.answer
        if rdtype is None or rrset.rdtype == dns.rdatatype.from_text(rdtype)
        for rdata in rrset
    )


def still_answers(port: int) -> None:
    """Over both transports, the server answers a plain query."""
    for ask in (udp, tcp):
        assert texts(ask(port, "web.statemesh.internal")) == ["10.0.0.1", "10.0.0.2"]


def test_ns_and_soa_over_udp_and_tcp() -> None:
    def check(served: Served) -> None:
        for ask in (udp, tcp):
            ns = ask(served.port, ZONE, "NS")
            assert ns.rcode() == dns.rcode.NOERROR and ns.flags & dns.flags.AA
            assert texts(ns) == ["ns1.statemesh.internal.", "ns2.statemesh.internal."]
            glue = {rrset.name.to_text(): rrset[0].to_text() for rrset in ns.additional}
            assert glue == {"ns1.statemesh.internal.": "10.0.0.53", "ns2.statemesh.internal.": HOST}
            (soa,) = ask(served.port, ZONE, "SOA").answer
            mname = soa[0].mname.to_text()
            assert mname == "ns1.statemesh.internal."
            assert texts(ask(served.port, mname)) == ["10.0.0.53"]
            missing = ask(served.port, "nope.statemesh.internal")
            assert missing.rcode() == dns.rcode.NXDOMAIN
            assert [r.rdtype for r in missing.authority] == [dns.rdatatype.SOA]

    serve(check)


def test_edns0_over_udp_payload_sizes_and_an_unknown_version() -> None:
    def check(served: Served) -> None:
        plain = udp(served.port, "web.statemesh.internal")
        assert plain.edns == -1  # no OPT asked, none answered
        for payload, truncated in ((512, True), (1232, False), (4096, False), (100, True)):
            reply = udp(served.port, "big.statemesh.internal", use_edns=0, payload=payload)
            assert reply.edns == 0 and reply.payload == 1232
            assert bool(reply.flags & dns.flags.TC) == truncated
            records = len(texts(reply))
            assert 0 < records < MAX_ANSWERS if truncated else records == MAX_ANSWERS
        with_do = udp(served.port, "web.statemesh.internal", want_dnssec=True)
        assert with_do.ednsflags & dns.flags.DO
        for ask in (udp, tcp):
            badvers = ask(served.port, "web.statemesh.internal", use_edns=1)
            assert badvers.rcode() == dns.rcode.BADVERS and badvers.edns == 0
            assert not badvers.answer

    serve(check)


def test_any_over_udp_and_tcp() -> None:
    def check(served: Served) -> None:
        for ask in (udp, tcp):
            web = ask(served.port, "web.statemesh.internal", "ANY")
            assert texts(web, "A") == ["10.0.0.1", "10.0.0.2"]
            assert texts(web, "AAAA") == ["2001:db8::7"]
            apex = ask(served.port, ZONE, "ANY")
            assert {r.rdtype for r in apex.answer} == {dns.rdatatype.NS, dns.rdatatype.SOA}
            idle = ask(served.port, "idle.statemesh.internal", "ANY")
            assert idle.rcode() == dns.rcode.NOERROR and not idle.answer and idle.authority

    serve(check)


def test_a_truncated_udp_answer_is_asked_again_over_tcp() -> None:
    def check(served: Served) -> None:
        cut = udp(served.port, "big.statemesh.internal")
        assert cut.flags & dns.flags.TC and 0 < len(texts(cut)) < MAX_ANSWERS
        query = dns.message.make_query("big.statemesh.internal", "A")
        reply, over_tcp = dns.query.udp_with_fallback(query, HOST, port=served.port, timeout=5)
        assert over_tcp and not reply.flags & dns.flags.TC
        assert len(texts(reply)) == MAX_ANSWERS
        small, over_tcp = dns.query.udp_with_fallback(
            dns.message.make_query("web.statemesh.internal", "A"), HOST, port=served.port
        )
        assert not over_tcp and texts(small) == ["10.0.0.1", "10.0.0.2"]

    serve(check)


def framed(*queries: dns.message.Message) -> bytes:
    return b"".join(len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries))


def read_framed(sock: socket.socket) -> dns.message.Message:
    length = int.from_bytes(receive_exactly(sock, 2), "big")
    return dns.message.from_wire(receive_exactly(sock, length))


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the server closed the connection"
        data += chunk
    return data


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes `sock` (rather than answering) within the timeout."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    return sock


def test_several_queries_on_one_connection_pipelined_and_answered_in_order() -> None:
    def check(served: Served) -> None:
        with connect(served.port) as sock:
            queries = [
                dns.message.make_query(name, "A")
                for name in ("web.statemesh.internal", "nope.statemesh.internal", ZONE)
            ]
            sock.sendall(framed(*queries))  # all at once, before reading
            replies = [read_framed(sock) for _ in queries]
            assert [r.id for r in replies] == [q.id for q in queries]
            assert [r.rcode() for r in replies] == [0, dns.rcode.NXDOMAIN, 0]
            # The same connection, again, through dnspython.
            again = dns.query.tcp(
                dns.message.make_query(ZONE, "SOA"), HOST, port=served.port, sock=sock
            )
            assert again.answer[0].rdtype == dns.rdatatype.SOA
        assert served.tcp.statistics.accepted == 1

    serve(check)


def test_malformed_udp_packets_leave_the_server_answering() -> None:
    def check(served: Served) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            header = b"\x12\x34\x01\x00\x00\x01" + bytes(6)
            for junk in (b"", b"\x00", header + b"\xff" * 40, header + b"\x3f" * 2000):
                sock.sendto(junk, (HOST, served.port))
            sock.sendto(header + b"\xc0\x0c" + b"\x00\x01\x00\x01", (HOST, served.port))  # loop
            for _ in range(3):  # the three with a header get a FORMERR, the rest nothing
                reply = dns.message.from_wire(sock.recv(600))
                assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
        still_answers(served.port)
        assert served.zone.statistics.malformed == 5  # all of them, answered or not

    serve(check)


@pytest.mark.parametrize("length", [0, 513, 65535])
def test_a_bad_tcp_length_closes_the_connection(length: int) -> None:
    def check(served: Served) -> None:
        with connect(served.port) as sock:
            sock.sendall(length.to_bytes(2, "big") + b"\x00" * 12)
            assert closed_by_server(sock)
        assert served.tcp.statistics.refused_length == 1
        still_answers(served.port)

    serve(check)


def test_a_slow_or_idle_client_is_cut_off() -> None:
    def check(served: Served) -> None:
        with connect(served.port) as slow, connect(served.port) as idle:
            query = framed(dns.message.make_query("web.statemesh.internal", "A"))
            slow.sendall(query[:5])  # a message begun and never finished
            started = time.monotonic()
            assert closed_by_server(slow)
            assert closed_by_server(idle)
            assert time.monotonic() - started < TIMEOUT
        assert served.tcp.statistics.timed_out == 2
        still_answers(served.port)

    serve(check, idle_seconds=1.0, message_seconds=0.3)


def test_a_client_that_never_reads_its_answers_is_dropped() -> None:
    def check(served: Served) -> None:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            sock.connect((HOST, served.port))
            sock.settimeout(TIMEOUT)
            # 400 queries of 1 KB answers: far more than the socket buffers hold.
            sock.sendall(framed(*[dns.message.make_query("big.statemesh.internal", "A")] * 400))
            started = time.monotonic()
            while not served.tcp.statistics.timed_out and time.monotonic() - started < TIMEOUT:
                time.sleep(0.05)  # a thread watching the server, not a wait on the server
            assert served.tcp.statistics.timed_out == 1
            assert served.zone.statistics.queries < 400
        still_answers(served.port)

    serve(check, send_seconds=0.5)


def test_many_idle_connections_cannot_hold_the_server() -> None:
    def check(served: Served) -> None:
        held = [connect(served.port) for _ in range(24)]
        try:
            # UDP never waits on TCP; and a new TCP client is served: the quietest goes.
            still_answers(served.port)
            assert served.tcp.open_connections <= 8
            assert served.tcp.statistics.evicted >= 24 + 1 - 8
            assert sum(closed_by_server(sock) for sock in held[:8]) == 8
        finally:
            for sock in held:
                sock.close()

    serve(check, max_connections=8)


def test_any_bytes_over_tcp_get_framed_answers_or_a_close_never_a_dead_server() -> None:
    query = dns.message.make_query("web.statemesh.internal", "A").to_wire()
    frame = len(query).to_bytes(2, "big") + query

    def check(served: Served) -> None:
        @settings(max_examples=60, deadline=None)
        @given(
            st.lists(
                st.one_of(st.binary(max_size=600), st.just(frame), st.just(frame[:7])),
                max_size=4,
            )
        )
        def exchange(pieces: list[bytes]) -> None:
            with connect(served.port) as sock:
                sock.sendall(b"".join(pieces))
                sock.shutdown(socket.SHUT_WR)  # the server sees the end, answers, closes
                received = b""
                while chunk := sock.recv(65536):
                    received += chunk
            while received:  # only whole answers, each behind its length
                length = int.from_bytes(received[:2], "big")
                assert len(received) >= 2 + length
                dns.message.from_wire(received[2 : 2 + length])
                received = received[2 + length :]

        exchange()
        still_answers(served.port)

    serve(check)


def test_a_port_taken_over_tcp_is_named() -> None:
    busy = socket.socket()
    busy.bind((HOST, 0))
    busy.listen()
    port = busy.getsockname()[1]

    async def main() -> None:
        with pytest.raises(DnsPortUnavailable) as raised:
            await bind_dns(HOST, port)
        assert (raised.value.transport, raised.value.strerror) == ("tcp", "Address already in use")

    try:
        trio.run(main)
    finally:
        busy.close()
