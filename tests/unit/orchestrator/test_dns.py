"""The ingress zone's DNS server: answers by record type, the zone's edges, bad messages, one
exchange over a real UDP socket; the name servers at the apex, negative answers, EDNS0, ANY and
truncation to the UDP payload size."""

from __future__ import annotations

import socket

import pytest
import trio
from dnslib import CLASS, EDNS0, QTYPE, RCODE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.dns import MAX_ANSWERS, MAX_NAME_SERVERS, MAX_UDP_PAYLOAD, ZoneServer, bind_udp
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


# -- name servers, negative answers, EDNS0, ANY, truncation -----------------------------------

ZONE = "statemesh.internal"
MANY6 = [f"2001:db8::{i:x}" for i in range(1, 80)]


def authoritative(servers: list[str] | None = None) -> ZoneServer:
    names = {**NAMES, "ns1.statemesh.internal": ["10.9.9.9"], "many6.statemesh.internal": MANY6}
    given = ["127.0.0.2", "2001:db8::53", "10.0.0.53", "127.0.0.2"] if servers is None else servers
    return ZoneServer(ZONE, names.get, name_servers=lambda: given)


def query(
    name: str, qtype: str = "A", *, payload: int | None = None, version: int = 0, do: bool = False
) -> DNSRecord:
    record = DNSRecord.question(name, qtype)
    if payload is not None:
        record.add_ar(EDNS0(udp_len=payload, version=version, flags="do" if do else ""))
    return record


def exchange(zone: ZoneServer, record: DNSRecord, *, tcp: bool = False) -> DNSRecord:
    reply = zone.answer(record.pack(), tcp=tcp)
    assert reply is not None
    return DNSRecord.parse(reply)


def test_the_apex_names_the_nodes_as_name_servers_and_their_names_resolve() -> None:
    zone = authoritative()
    ns = ask(zone, ZONE, "NS")
    assert ns.header.rcode == RCODE.NOERROR and ns.header.aa == 1 and not ns.auth
    # Deduplicated, by ascending address (IPv4 first): the same names on every node.
    assert values(ns) == [f"ns{k}.statemesh.internal." for k in (1, 2, 3)]
    assert [(str(rr.rname), str(rr.rdata)) for rr in ns.ar] == [
        ("ns1.statemesh.internal.", "10.0.0.53"),
        ("ns2.statemesh.internal.", "127.0.0.2"),
        ("ns3.statemesh.internal.", "2001:db8::53"),
    ]
    # The name server's own name wins over an application's host of the same name.
    assert values(ask(zone, "ns1.statemesh.internal")) == ["10.0.0.53"]
    assert values(ask(zone, "NS3.statemesh.internal", "AAAA")) == ["2001:db8::53"]
    nodata = ask(zone, "ns3.statemesh.internal", "A")
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr
    assert ask(zone, "ns4.statemesh.internal").header.rcode == RCODE.NXDOMAIN
    soa = ask(zone, ZONE, "SOA").rr[0].rdata
    assert str(soa.mname) == "ns1.statemesh.internal."
    assert values(ask(zone, str(soa.mname))) == ["10.0.0.53"]  # the primary resolves


def test_name_servers_are_capped_and_none_known_means_no_ns_records() -> None:
    many = authoritative([f"10.0.2.{i}" for i in range(20)])
    assert len(ask(many, ZONE, "NS").rr) == MAX_NAME_SERVERS
    assert ask(many, f"ns{MAX_NAME_SERVERS + 1}.{ZONE}").header.rcode == RCODE.NXDOMAIN
    none = ask(authoritative([]), ZONE, "NS")
    assert none.header.rcode == RCODE.NOERROR and not none.rr
    assert none.auth[0].rtype == QTYPE.SOA


@pytest.mark.parametrize(
    ("name", "qtype", "rcode"),
    [
        ("nope.statemesh.internal", "A", RCODE.NXDOMAIN),
        ("nope.statemesh.internal", "ANY", RCODE.NXDOMAIN),
        ("idle.statemesh.internal", "A", RCODE.NOERROR),
        ("web.statemesh.internal", "MX", RCODE.NOERROR),
        ("web.statemesh.internal", "SOA", RCODE.NOERROR),
        ("web.statemesh.internal", "NS", RCODE.NOERROR),
        ("statemesh.internal", "A", RCODE.NOERROR),
    ],
)
def test_negative_answers_carry_the_zone_soa_in_authority(
    name: str, qtype: str, rcode: int
) -> None:
    reply = ask(authoritative(), name, qtype)
    assert reply.header.rcode == rcode and reply.header.aa == 1 and not reply.rr
    assert [(str(rr.rname), rr.rtype) for rr in reply.auth] == [(ZONE + ".", QTYPE.SOA)]
    assert reply.auth[0].ttl == 5  # RFC 2308: the negative TTL is the SOA's minimum


def test_edns0_opt_is_echoed_with_the_server_payload_and_the_do_bit() -> None:
    zone = authoritative()
    plain = ask(zone, "web.statemesh.internal")
    assert not [rr for rr in plain.ar if rr.rtype == QTYPE.OPT]  # no OPT asked, none sent
    reply = exchange(zone, query("web.statemesh.internal", payload=4096, do=True))
    (opt,) = reply.ar
    assert opt.rtype == QTYPE.OPT and opt.rclass == MAX_UDP_PAYLOAD == 1232
    assert opt.ttl == 0x8000  # extended rcode 0, version 0, DO copied (RFC 3225)
    assert sorted(values(reply)) == ["10.0.0.2", "127.0.0.1"]
    without_do = exchange(zone, query("web.statemesh.internal", payload=1232))
    assert without_do.ar[0].ttl == 0


def test_an_unknown_edns_version_gets_badvers_and_is_counted() -> None:
    zone = authoritative()
    reply = exchange(zone, query("web.statemesh.internal", payload=1232, version=1))
    (opt,) = reply.ar
    # BADVERS is 16: 0 in the header's four bits, 1 in the OPT's extended code, version 0.
    assert reply.header.rcode == 0 and opt.ttl >> 24 == 1 and (opt.ttl >> 16) & 0xFF == 0
    assert not reply.rr and zone.statistics.badvers == 1
    registry = zone.metrics.registry
    for rcode, count in (("BADVERS", 1), ("NOERROR", 0)):
        assert registry.get_sample_value("statemesh_dns_queries_total", {"rcode": rcode}) == count


@pytest.mark.parametrize("where", ["two", "not-root", "answer-section"])
def test_a_misplaced_or_doubled_opt_is_a_formerr(where: str) -> None:
    record = query("web.statemesh.internal", payload=1232)
    if where == "two":
        record.add_ar(EDNS0(udp_len=512))
    elif where == "not-root":
        record.ar[0].rname = DNSLabel("web.statemesh.internal")
    else:
        record.add_answer(record.ar.pop())
    reply = exchange(authoritative(), record)
    assert reply.header.rcode == RCODE.FORMERR and not reply.rr and not reply.ar


@pytest.mark.parametrize(
    ("payload", "limit"),
    [(0, 512), (100, 512), (512, 512), (700, 700), (1232, 1232), (65535, 1232)],
)
def test_the_udp_payload_size_is_honoured_between_512_and_the_cap(payload: int, limit: int) -> None:
    zone = authoritative()
    for name, qtype, size in (("big", "A", 16), ("many6", "AAAA", 28)):
        record = query(f"{name}.statemesh.internal", qtype, payload=payload)
        reply = zone.answer(record.pack())
        assert reply is not None and len(reply) <= limit
        parsed = DNSRecord.parse(reply)
        assert parsed.ar[0].rtype == QTYPE.OPT and parsed.q.qname == record.q.qname
        whole = exchange(zone, record, tcp=True)
        assert len(whole.rr) == MAX_ANSWERS and not whole.header.tc
        if parsed.header.tc:
            # As many whole records as fit, no fewer.
            assert len(reply) + size > limit and len(parsed.rr) < MAX_ANSWERS
        else:
            assert len(parsed.rr) == MAX_ANSWERS
    assert exchange(zone, query("big.statemesh.internal", payload=1232)).header.tc == 0
    assert exchange(zone, query("many6.statemesh.internal", "AAAA", payload=4096)).header.tc == 1


def test_any_is_answered_with_the_records_the_name_has() -> None:
    zone = authoritative()
    web = ask(zone, "web.statemesh.internal", "ANY")
    assert sorted((rr.rtype, str(rr.rdata)) for rr in web.rr) == [
        (QTYPE.A, "10.0.0.2"),
        (QTYPE.A, "127.0.0.1"),
        (QTYPE.AAAA, "2001:db8::7"),
    ]
    assert values(ask(zone, "ns1.statemesh.internal", "ANY")) == ["10.0.0.53"]
    apex = ask(zone, ZONE, "ANY")
    assert sorted({rr.rtype for rr in apex.rr}) == [QTYPE.NS, QTYPE.SOA]
    idle = ask(zone, "idle.statemesh.internal", "ANY")
    assert idle.header.rcode == RCODE.NOERROR and not idle.rr and idle.auth


def test_zone_transfers_are_refused() -> None:
    zone = authoritative()
    for qtype in ("AXFR", "IXFR"):
        reply = exchange(zone, query(ZONE, qtype), tcp=True)
        assert reply.header.rcode == RCODE.REFUSED and not reply.rr


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from([*NAMES, "many6.statemesh.internal", ZONE, "ns2.statemesh.internal"]),
    qtype=st.sampled_from(["A", "AAAA", "ANY", "NS", "SOA", "TXT"]),
    payload=st.one_of(st.none(), st.integers(0, 65535)),
    do=st.booleans(),
)
def test_every_udp_answer_fits_and_tcp_has_at_least_its_records(
    name: str, qtype: str, payload: int | None, do: bool
) -> None:
    zone = authoritative()
    record = query(name, qtype, payload=payload, do=do)
    udp = zone.answer(record.pack())
    assert udp is not None
    limit = 512 if payload is None else max(512, min(payload, MAX_UDP_PAYLOAD))
    assert len(udp) <= limit
    parsed = DNSRecord.parse(udp)
    whole = exchange(zone, record, tcp=True)
    assert parsed.header.rcode == whole.header.rcode and not whole.header.tc
    assert len(parsed.rr) <= len(whole.rr)
    assert parsed.header.tc or len(parsed.rr) == len(whole.rr)
