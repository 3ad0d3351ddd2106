"""Client addresses as the connection limits count them: which client is this machine's own
operator, and which addresses are one client."""

from __future__ import annotations

import ipaddress

from orchestrator.addresses import IP, unmapped, without_zone

LOCAL_ADDRESSES = frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})
"""Where the operator's own tools call from (the CLI's default URL is http://127.0.0.1:9944).
Only these exact addresses, not all of loopback: any program on this machine may bind
127.0.0.2 and beyond, as a flood would, while only the canonical addresses are what the local
tools use; a reverse proxy on this machine should forward from another address (e.g.
127.0.0.2) if its clients must not share the operator's place."""
IPV6_CLIENT_PREFIX = 64
"""One IPv6 host is given a whole /64 and may call from any address in it: the per-address
limit counts a /64 as one address."""


def is_local(ip: str) -> bool:
    """Whether `ip` (as the server saw it; IPv4-mapped IPv6 counts as IPv4) is 127.0.0.1 or
    ::1. An address that cannot be read (none reported) is not."""
    address = _parse(ip)
    return address is not None and address in LOCAL_ADDRESSES


def client_group(ip: str) -> str:
    """What the per-address limit counts `ip` as: an IPv4 address itself, an IPv6 address its
    /64 (the loopback ::1 itself), an unreadable one as it is."""
    address = _parse(ip)
    if address is None:
        return ip
    if isinstance(address, ipaddress.IPv4Address) or address.is_loopback:
        return str(address)
    return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))


def _parse(ip: str) -> IP | None:
    """The address as the server saw it, an IPv4-mapped one as the IPv4 address it is."""
    try:
        return unmapped(without_zone(ip))
    except ValueError:
        return None
