"""The ingress zone's DNS server: answers by record type, the zone's edges, bad messages, and one
exchange over a real UDP socket."""

from __future__ import annotations

import socket

import trio
from dnslib import CLASS, QTYPE, RCODE, DNSHeader, DNSQuestion, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.dns import MAX_ANSWERS, ZoneServer, bind_udp
from orchestrator.ingress import Backend, Route, RouteTable

NAMES = {
    "web.statemesh.internal": ["127.0.0.1", "10.0.0.2", "2001:db8::7"],
    "idle.statemesh.internal": [],
    "big.statemesh.internal": [f"10.0.1.{i}" for i in range(100)],
}


def server() -> ZoneServer:
    return ZoneServer("statemesh.internal", NAMES.get)


def ask(zone: ZoneServer, name: str, qtype: str = "A", *, tcp: bool = False) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    reply = zone.answer(query.pack(), tcp=tcp)
    assert reply is not None
    parsed = DNSRecord.parse(reply)
    assert parsed.header.id == query.header.id and parsed.header.qr == 1
    return parsed


def values(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


def test_addresses_by_record_type() -> None:
    zone = server()
    a = ask(zone, "web.statemesh.internal")
    assert a.header.rcode == RCODE.NOERROR and a.header.aa == 1 and a.header.ra == 0
    assert values(a) == ["127.0.0.1", "10.0.0.2"] and all(rr.ttl == 5 for rr in a.rr)
    assert values(ask(zone, "WEB.statemesh.internal.", "AAAA")) == ["2001:db8::7"]
    mx = ask(zone, "web.statemesh.internal", "MX")
    assert mx.header.rcode == RCODE.NOERROR and not mx.rr and mx.auth[0].rtype == QTYPE.SOA


def test_the_edges_of_the_zone() -> None:
    zone = server()
    idle = ask(zone, "idle.statemesh.internal")
    assert idle.header.rcode == RCODE.NOERROR and not idle.rr  # known, no ready replica
    missing = ask(zone, "nope.statemesh.internal")
    assert missing.header.rcode == RCODE.NXDOMAIN and missing.auth[0].rtype == QTYPE.SOA
    outside = ask(zone, "example.com")
    assert outside.header.rcode == RCODE.REFUSED and outside.header.aa == 0
    assert ask(zone, "notstatemesh.internal").header.rcode == RCODE.REFUSED
    apex = ask(zone, "statemesh.internal", "SOA")
    assert apex.header.rcode == RCODE.NOERROR and apex.rr[0].rtype == QTYPE.SOA
    assert zone.statistics.refused == 2 and zone.statistics.nxdomain == 1


def test_many_addresses_are_capped_and_rotated() -> None:
    zone = server()
    first = values(ask(zone, "big.statemesh.internal", tcp=True))
    second = values(ask(zone, "big.statemesh.internal", tcp=True))
    assert len(first) == len(second) == MAX_ANSWERS and first != second
    # Over UDP without EDNS0 the answer is cut to 512 bytes and says so (TC).
    udp = ask(zone, "big.statemesh.internal")
    assert len(udp.pack()) <= 512 and udp.header.tc == 1 and 0 < len(udp.rr) < MAX_ANSWERS


def test_bad_messages() -> None:
    zone = server()
    assert zone.answer(b"") is None and zone.answer(b"\x01\x02") is None
    garbage = b"\x12\x34" + b"\x01\x00" + b"\x00\x01" + b"\x00" * 6 + b"\xff" * 5
    reply = zone.answer(garbage)
    assert reply is not None
    parsed = DNSRecord.parse(reply)
    assert parsed.header.id == 0x1234 and parsed.header.rcode == RCODE.FORMERR
    response = DNSRecord.question("web.statemesh.internal").reply()
    assert zone.answer(response.pack()) is None  # never answer an answer
    notify = DNSRecord(DNSHeader(opcode=4), q=DNSQuestion("web.statemesh.internal"))
    assert DNSRecord.parse(zone.answer(notify.pack()) or b"").header.rcode == RCODE.NOTIMP
    two = DNSRecord.question("web.statemesh.internal")
    two.add_question(DNSQuestion("idle.statemesh.internal"))
    assert DNSRecord.parse(zone.answer(two.pack()) or b"").header.rcode == RCODE.FORMERR


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=600),
        # A plausible header with one question, then anything.
        st.binary(max_size=300).map(lambda tail: b"\xab\xcd\x01\x00\x00\x01" + bytes(6) + tail),
    )
)
def test_any_bytes_get_an_answer_or_none_never_an_exception(data: bytes) -> None:
    reply = server().answer(data)
    if reply is not None:
        DNSRecord.parse(reply)


def test_served_over_udp() -> None:
    async def main() -> None:
        zone = server()
        sock = await bind_udp("127.0.0.1", 0)
        port = sock.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(zone.serve, sock)
            client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with client:
                await client.sendto(b"junk", ("127.0.0.1", port))  # dropped, still serving
                query = DNSRecord.question("web.statemesh.internal")
                await client.sendto(query.pack(), ("127.0.0.1", port))
                with trio.fail_after(5):
                    data, _ = await client.recvfrom(512)
            assert values(DNSRecord.parse(data)) == ["127.0.0.1", "10.0.0.2"]
            nursery.cancel_scope.cancel()
        sock.close()

    trio.run(main)


def test_answers_from_a_route_table_with_both_families_and_names_below() -> None:
    backends = (Backend("2001:db8::1", 80), Backend("10.0.0.1", 80), Backend("10.0.0.2", 80))
    table = RouteTable(
        {
            "web.statemesh.internal": [Route("web", "/", backends)],
            "api.shop.statemesh.internal": [Route("shop", "/", ())],
        }
    )
    assert table.addresses("web.statemesh.internal") == ("10.0.0.1", "10.0.0.2", "2001:db8::1")
    zone = ZoneServer(
        "statemesh.internal",
        lambda name: table.addresses(name) if name in table.hosts else None,
        table.has_below,
    )
    first, second = (values(ask(zone, "web.statemesh.internal")) for _ in range(2))
    assert sorted(first) == sorted(second) == ["10.0.0.1", "10.0.0.2"] and first != second
    assert values(ask(zone, "web.statemesh.internal", "AAAA")) == ["2001:db8::1"]
    shop = ask(zone, "shop.statemesh.internal")
    assert shop.header.rcode == RCODE.NOERROR and not shop.rr  # a name with hosts below it
    chaos = DNSRecord(q=DNSQuestion("web.statemesh.internal", QTYPE.A, CLASS.CH))
    assert DNSRecord.parse(zone.answer(chaos.pack()) or b"").header.rcode == RCODE.REFUSED


def test_a_failing_lookup_is_a_servfail_and_the_server_keeps_serving() -> None:
    def lookup(name: str) -> list[str]:
        if name.startswith("bad."):
            raise RuntimeError("broken")
        return ["10.0.0.1"]

    async def main() -> None:
        zone = ZoneServer("statemesh.internal", lookup)
        sock = await bind_udp("127.0.0.1", 0)
        port = sock.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(zone.serve, sock)
            client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with client, trio.fail_after(5):
                for name, rcode in (
                    ("bad.statemesh.internal", RCODE.SERVFAIL),
                    ("ok.statemesh.internal", RCODE.NOERROR),
                ):
                    await client.sendto(DNSRecord.question(name).pack(), ("127.0.0.1", port))
                    data, _ = await client.recvfrom(512)
                    assert DNSRecord.parse(data).header.rcode == rcode
            nursery.cancel_scope.cancel()
        sock.close()

    trio.run(main)
