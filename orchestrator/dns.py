"""The DNS server of the ingress zone: an application's ingress host resolves to the nodes that
run a ready replica of it, so a client's traffic lands where a replica answers.

Authoritative for one zone over UDP, class IN, no recursion. A and AAAA answers for a known
host: at most `MAX_ANSWERS`, in an order rotated on each query so clients spread out, with a
short TTL because readiness changes. An empty answer (NODATA, with the zone's SOA) for a host
without a ready replica, a record type it does not have, or a name with hosts below it;
NXDOMAIN for an unknown name in the zone; REFUSED outside the zone or class; FORMERR for a
message that does not parse; NOTIMP for other opcodes; SERVFAIL if answering fails. Responses
never exceed 512 bytes, so no client needs TCP."""

from __future__ import annotations

import ipaddress
import itertools
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio
from dnslib import AAAA, CLASS, QTYPE, RCODE, RR, SOA, A, DNSError, DNSHeader, DNSRecord
from trio.socket import SocketType

from orchestrator.ingress_metrics import DnsMetrics

log = logging.getLogger("statemesh.dns")

MAX_ANSWERS = 8
MAX_QUERY_BYTES = 512
QUERY = 0
"""The standard query opcode."""
ANY_CLASS = 255


@dataclass(slots=True)
class DnsStatistics:
    queries: int = 0
    answered: int = 0
    nxdomain: int = 0
    refused: int = 0
    malformed: int = 0


@dataclass(slots=True)
class ZoneServer:
    """Answers queries for `zone` from `lookup(name)`: the addresses of a known name (possibly
    none), or None for a name that does not exist."""

    zone: str
    lookup: Callable[[str], Sequence[str] | None]
    """The addresses of a name, or None if no such name exists."""
    has_below: Callable[[str], bool] = lambda name: False
    """Whether some existing name lies below `name` (so `name` exists, without records)."""
    ttl: int = 5
    statistics: DnsStatistics = field(default_factory=DnsStatistics)
    metrics: DnsMetrics = field(default_factory=DnsMetrics)
    """Queries by the response code of their answer (on the node's registry)."""
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def _soa(self) -> RR:
        return RR(
            self.zone,
            QTYPE.SOA,
            ttl=self.ttl,
            rdata=SOA(f"ns.{self.zone}", f"hostmaster.{self.zone}", (1, 60, 30, 600, self.ttl)),
        )

    def answer(self, data: bytes) -> bytes | None:
        """The response to one query message, or None when it deserves none (a response, or
        bytes too short to say which query they are)."""
        reply = self._answer(data)
        self.metrics.count(reply)
        return reply

    def _answer(self, data: bytes) -> bytes | None:
        self.statistics.queries += 1
        try:
            request = DNSRecord.parse(data)
        except (DNSError, ValueError, IndexError, UnicodeDecodeError):
            return self._malformed(data)
        if request.header.qr:
            return None
        reply = DNSRecord(
            DNSHeader(id=request.header.id, qr=1, aa=1, ra=0, rd=request.header.rd),
            q=request.q if request.questions else None,
        )
        if request.header.opcode != QUERY:
            reply.header.rcode = RCODE.NOTIMP
            return _pack(reply)
        if len(request.questions) != 1:
            self.statistics.malformed += 1
            reply.header.rcode = RCODE.FORMERR
            return _pack(reply)
        question = request.questions[0]
        name = str(question.qname).rstrip(".").lower()
        if question.qclass not in (CLASS.IN, ANY_CLASS):
            self.statistics.refused += 1
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
            return _pack(reply)
        if name != self.zone and not name.endswith("." + self.zone):
            self.statistics.refused += 1
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
            return _pack(reply)
        if name == self.zone:
            if question.qtype == QTYPE.SOA:
                reply.add_answer(self._soa())
            else:
                reply.add_auth(self._soa())
            self.statistics.answered += 1
            return _pack(reply)
        found = self.lookup(name)
        if found is None and self.has_below(name):
            found = ()  # an empty non-terminal: the name exists (RFC 8020)
        if found is None:
            self.statistics.nxdomain += 1
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa())
            return _pack(reply)
        records = self._records(question.qtype, found)
        for record in records:
            reply.add_answer(RR(question.qname, question.qtype, ttl=self.ttl, rdata=record))
        if not records:
            reply.add_auth(self._soa())
        self.statistics.answered += 1
        return _pack(reply)

    def _records(self, qtype: int, addresses: Sequence[str]) -> list[A | AAAA]:
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
        return [make(a) for a in chosen]

    def _malformed(self, data: bytes) -> bytes | None:
        self.statistics.malformed += 1
        return _bare_reply(data, RCODE.FORMERR)

    async def serve(self, sock: SocketType) -> None:
        """Answer queries arriving on the bound UDP socket `sock` until cancelled."""
        while True:
            try:
                data, peer = await sock.recvfrom(MAX_QUERY_BYTES)
            except OSError as exc:
                log.debug("dns receive failed: %s", exc)
                continue
            try:
                reply = self.answer(data)
            except Exception:  # one bad answer must not take the server down
                log.exception("dns: no answer for a query")
                reply = _bare_reply(data, RCODE.SERVFAIL)
                self.metrics.count(reply)
            if reply is None:
                continue
            try:
                await sock.sendto(reply, peer)
            except OSError as exc:
                log.debug("dns reply to %s failed: %s", peer, exc)


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
