"""The DNS server of the ingress zone: an application's ingress host resolves to the nodes that
run a ready replica of it, so a client's traffic lands where a replica answers.

Authoritative for one zone, class IN, no recursion; over UDP here and over TCP on the same port
(`dns_tcp`). A and AAAA answers for a known host: its whole set up to `MAX_ANSWERS`, in an order
rotated on each query so clients spread out, with a short TTL because readiness changes. The
apex has an SOA and NS records naming the zone's name servers, the nodes that serve ingress:
`ns1.<zone>`, `ns2.<zone>`... by their advertised addresses in ascending order, each name with
the A or AAAA record of its node (such a name wins over an application's host of the same name).
An empty answer (NODATA, with the zone's SOA in the authority section, RFC 2308) for a host
without a ready replica, a record type it does not have, or a name with hosts below it;
NXDOMAIN (with the SOA) for an unknown name in the zone; REFUSED outside the zone or class and
for zone transfers; FORMERR for a message that does not parse; NOTIMP for other opcodes;
SERVFAIL if answering fails. ANY is answered with the records the name has (RFC 8482 allows a
subset; this is all of them).

EDNS0 (RFC 6891): a query's OPT is answered with one (this server's payload size, version 0,
the DO bit copied as RFC 3225 asks); the client's UDP payload size is honoured between 512 and
`MAX_UDP_PAYLOAD`; a version above 0 gets BADVERS, two OPTs FORMERR. A UDP answer that does not
fit is sent with TC set and the answer records that fit (RFC 2181 section 9), so the client asks
again over TCP, where it gets all of them."""

from __future__ import annotations

import ipaddress
import itertools
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio
from dnslib import (
    AAAA,
    CLASS,
    EDNS0,
    NS,
    QTYPE,
    RCODE,
    RR,
    SOA,
    A,
    DNSError,
    DNSHeader,
    DNSRecord,
)
from trio.socket import SocketType

from orchestrator.ingress_metrics import DnsMetrics

log = logging.getLogger("statemesh.dns")

MAX_ANSWERS = 64
"""Records of one type in an answer: past 29 A records an answer no longer fits 512 bytes, and
past 64 TCP would be the rule rather than the exception."""
MAX_NAME_SERVERS = 8
"""NS records at the apex: the lowest addresses of the nodes serving ingress."""
MAX_QUERY_BYTES = 512
"""A query longer than this is not read (over UDP it arrives cut, over TCP its connection is
closed): one question and an OPT with a few options fit with room to spare."""
MIN_UDP_PAYLOAD = 512
"""What every client takes over UDP (RFC 1035), and what an EDNS0 payload size below it means."""
MAX_UDP_PAYLOAD = 1232
"""The largest UDP answer sent whatever size a client offers: what fits an IPv6 path without
fragmentation (the DNS flag day 2020 figure)."""
MAX_TCP_MESSAGE = 65535
"""An answer over TCP is bounded only by its 2-byte length prefix (RFC 7766)."""
QUERY = 0
"""The standard query opcode."""
ANY_CLASS = 255
BADVERS = 16
"""The extended response code for an EDNS version the server does not implement (RFC 6891)."""
ZONE_TRANSFERS = frozenset({QTYPE.AXFR, QTYPE.IXFR})


@dataclass(slots=True)
class DnsStatistics:
    queries: int = 0
    answered: int = 0
    nxdomain: int = 0
    refused: int = 0
    malformed: int = 0
    badvers: int = 0
    truncated: int = 0
    """UDP answers sent with TC set, their records cut to the payload size."""


@dataclass(slots=True)
class ZoneServer:
    """Answers queries for `zone` from `lookup(name)`: the addresses of a known name (possibly
    none), or None for a name that does not exist."""

    zone: str
    lookup: Callable[[str], Sequence[str] | None]
    """The addresses of a name, or None if no such name exists."""
    has_below: Callable[[str], bool] = lambda name: False
    """Whether some existing name lies below `name` (so `name` exists, without records)."""
    name_servers: Callable[[], Sequence[str]] = lambda: ()
    """The addresses of the nodes serving the zone, this one included (none: the apex has no
    NS records and the SOA's primary does not resolve)."""
    ttl: int = 5
    statistics: DnsStatistics = field(default_factory=DnsStatistics)
    metrics: DnsMetrics = field(default_factory=DnsMetrics)
    """Queries by the response code of their answer (on the node's registry)."""
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _servers: tuple[tuple[str, ...], dict[str, str]] = ((), {})
    """The last name servers given, and their names (they change rarely, queries often)."""

    def answer(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        """The response to one query message, or None when it deserves none (a response, or
        bytes too short to say which query they are). Over UDP (`tcp` False) the response fits
        the client's payload size; over TCP it is whole."""
        reply, rcode = self._answer(data, tcp)
        self.metrics.count_rcode(rcode)
        return reply

    def reply_to(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        """`answer`, except that a failure to answer is a SERVFAIL rather than an exception:
        what a transport sends, so that one bad answer never takes the server down."""
        try:
            return self.answer(data, tcp=tcp)
        except Exception:
            log.exception("dns: no answer for a query")
            reply = _bare_reply(data, RCODE.SERVFAIL)
            self.metrics.count(reply)
            return reply

    def _answer(self, data: bytes, tcp: bool) -> tuple[bytes | None, int | None]:
        self.statistics.queries += 1
        try:
            request = DNSRecord.parse(data)
        except (DNSError, ValueError, IndexError, UnicodeDecodeError):
            self.statistics.malformed += 1
            reply = _bare_reply(data, RCODE.FORMERR)
            return reply, (RCODE.FORMERR if reply is not None else None)
        if request.header.qr:
            return None, None
        reply = DNSRecord(
            DNSHeader(
                id=request.header.id,
                qr=1,
                aa=1,
                ra=0,
                rd=request.header.rd,
                opcode=request.header.opcode,
            ),
            q=request.q if request.questions else None,
        )
        opts = [rr for rr in request.ar if rr.rtype == QTYPE.OPT]
        misplaced = any(rr.rtype == QTYPE.OPT for rr in (*request.rr, *request.auth))
        if len(opts) > 1 or misplaced or any(str(rr.rname) != "." for rr in opts):
            self.statistics.malformed += 1
            return self._error(reply, RCODE.FORMERR), RCODE.FORMERR
        opt = opts[0] if opts else None
        limit = MAX_TCP_MESSAGE if tcp else MIN_UDP_PAYLOAD
        if opt is not None:
            # The OPT's class is the client's UDP payload size, its TTL the extended code,
            # the version and the flags (RFC 6891 section 6.1.3).
            reply.add_ar(EDNS0(udp_len=MAX_UDP_PAYLOAD, flags="do" if opt.ttl & 0x8000 else ""))
            if (opt.ttl >> 16) & 0xFF != 0:
                self.statistics.badvers += 1
                reply.ar[0].ttl |= (BADVERS >> 4) << 24
                return _pack(reply), BADVERS
            if not tcp:
                limit = max(MIN_UDP_PAYLOAD, min(opt.rclass, MAX_UDP_PAYLOAD))
        if request.header.opcode != QUERY:
            return self._error(reply, RCODE.NOTIMP), RCODE.NOTIMP
        if len(request.questions) != 1:
            self.statistics.malformed += 1
            return self._error(reply, RCODE.FORMERR), RCODE.FORMERR
        question = request.questions[0]
        name = str(question.qname).rstrip(".").lower()
        outside = name != self.zone and not name.endswith("." + self.zone)
        if (
            question.qclass not in (CLASS.IN, ANY_CLASS)
            or outside
            or question.qtype in ZONE_TRANSFERS
        ):
            self.statistics.refused += 1
            reply.header.aa = 0
            return self._error(reply, RCODE.REFUSED), RCODE.REFUSED
        rcode = self._fill(reply, name, question.qname, question.qtype)
        return self._fit(reply, limit), rcode

    def _fill(self, reply: DNSRecord, name: str, qname: object, qtype: int) -> int:
        """Put the records of `name` of type `qtype` in `reply`; its response code."""
        servers = self._server_names()
        if name == self.zone:
            found: list[RR] = []
            if qtype in (QTYPE.NS, QTYPE.ANY):
                found += [RR(qname, QTYPE.NS, ttl=self.ttl, rdata=NS(n)) for n in servers]
            if qtype in (QTYPE.SOA, QTYPE.ANY):
                found.append(self._soa(qname))
            for record in found:
                reply.add_answer(record)
            if qtype == QTYPE.NS:
                for server_name, address in servers.items():
                    reply.add_ar(self._address_record(server_name, address))
            if not found:
                reply.add_auth(self._soa())
            self.statistics.answered += 1
            return int(RCODE.NOERROR)
        server = servers.get(name)
        found_addresses: Sequence[str] | None = (
            (server,) if server is not None else self.lookup(name)
        )
        if found_addresses is None and self.has_below(name):
            found_addresses = ()  # an empty non-terminal: the name exists (RFC 8020)
        if found_addresses is None:
            self.statistics.nxdomain += 1
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa())
            return int(RCODE.NXDOMAIN)
        types = (QTYPE.A, QTYPE.AAAA) if qtype == QTYPE.ANY else (qtype,)
        records = [rr for t in types for rr in self._records(qname, t, found_addresses)]
        for record in records:
            reply.add_answer(record)
        if not records:
            reply.add_auth(self._soa())
        self.statistics.answered += 1
        return int(RCODE.NOERROR)

    def _server_names(self) -> dict[str, str]:
        """`ns1.<zone>`... -> address: the name servers by ascending address (the same names
        on every node that hears the same advertisements)."""
        given = tuple(self.name_servers())
        if given != self._servers[0]:
            addresses = sorted({ipaddress.ip_address(a) for a in given}, key=_order)
            names = {
                f"ns{k}.{self.zone}": str(address)
                for k, address in enumerate(addresses[:MAX_NAME_SERVERS], 1)
            }
            self._servers = (given, names)
        return self._servers[1]

    def _address_record(self, name: str, address: str) -> RR:
        if ipaddress.ip_address(address).version == 4:
            return RR(name, QTYPE.A, ttl=self.ttl, rdata=A(address))
        return RR(name, QTYPE.AAAA, ttl=self.ttl, rdata=AAAA(address))

    def _soa(self, owner: object = None) -> RR:
        # MNAME is ns1, which resolves whenever a name server is known; the serial stays 1
        # since nothing transfers the zone.
        return RR(
            self.zone if owner is None else owner,
            QTYPE.SOA,
            ttl=self.ttl,
            rdata=SOA(f"ns1.{self.zone}", f"hostmaster.{self.zone}", (1, 60, 30, 600, self.ttl)),
        )

    def _records(self, qname: object, qtype: int, addresses: Sequence[str]) -> list[RR]:
        if qtype == QTYPE.A:
            chosen = [a for a in addresses if ipaddress.ip_address(a).version == 4]
            make: type[A] | type[AAAA] = A
        elif qtype == QTYPE.AAAA:
            chosen = [a for a in addresses if ipaddress.ip_address(a).version == 6]
            make = AAAA
        else:
            return []
        if len(chosen) > 1:
            start = next(self._turn) % len(chosen)
            chosen = [*chosen[start:], *chosen[:start]][:MAX_ANSWERS]
        return [RR(qname, qtype, ttl=self.ttl, rdata=make(a)) for a in chosen]

    def _error(self, reply: DNSRecord, rcode: int) -> bytes:
        reply.header.rcode = rcode
        return _pack(reply)

    def _fit(self, reply: DNSRecord, limit: int) -> bytes:
        """`reply` packed in at most `limit` bytes: first without the additional records (all
        but the OPT), then with TC set, no authority and the answer records that fit."""
        packed = _pack(reply)
        if len(packed) <= limit:
            return packed
        reply.ar = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
        packed = _pack(reply)
        if len(packed) <= limit:
            return packed
        self.statistics.truncated += 1
        reply.header.tc = 1
        reply.auth = []
        answers = reply.rr
        low, high = 0, len(answers)  # answers[:low] fit, answers[:high + 1] do not
        while low < high:
            middle = (low + high + 1) // 2
            reply.rr = answers[:middle]
            if len(_pack(reply)) <= limit:
                low = middle
            else:
                high = middle - 1
        reply.rr = answers[:low]
        return _pack(reply)

    async def serve(self, sock: SocketType) -> None:
        """Answer queries arriving on the bound UDP socket `sock` until cancelled."""
        while True:
            try:
                data, peer = await sock.recvfrom(MAX_QUERY_BYTES)
            except OSError as exc:
                log.debug("dns receive failed: %s", exc)
                continue
            reply = self.reply_to(data)
            if reply is None:
                continue
            try:
                await sock.sendto(reply, peer)
            except OSError as exc:
                log.debug("dns reply to %s failed: %s", peer, exc)


def _order(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    return address.version, int(address)


def _bare_reply(data: bytes, rcode: int) -> bytes | None:
    """A reply with only `rcode` to a query that could not be read or answered; None when the
    bytes are too short to carry a query id, or are a response themselves."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    header = DNSHeader(id=int.from_bytes(data[:2], "big"), qr=1, ra=0)
    header.rcode = rcode
    return _pack(DNSRecord(header))


def _pack(record: DNSRecord) -> bytes:
    packed: bytes = record.pack()
    return packed


async def bind_udp(host: str, port: int) -> SocketType:
    """A UDP socket bound to host:port (0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    try:
        await sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock
