"""What an IP address is, in one place: the special ranges, the embedded IPv4 forms reduced to the
IPv4 they carry, one classification of an address, and what it means for the node's routing
(`AddressPolicy`), a tenant's registry (`private_reason`), a replica's traffic
(`NOT_FOR_REPLICAS_V4`) and the RPC's clients (`without_zone`, `unmapped`); and the IP a node
registered on chain."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import TypeAlias

IP: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_net4 = ipaddress.IPv4Network
_net6 = ipaddress.IPv6Network

NAT64_PREFIXES = (_net6("64:ff9b::/96"), _net6("64:ff9b:1::/48"))
"""RFC 6052 well-known prefix and RFC 8215 local-use prefix; the IPv4 is the last 32 bits."""
THIS_NETWORK = _net4("0.0.0.0/8")
"""RFC 1122 3.2.1.3: "this host on this network"; Linux routes 0.0.0.0 to itself."""
BROADCAST = _net4("255.255.255.255/32")
"""RFC 919 limited broadcast."""
LOOPBACK = (_net4("127.0.0.0/8"), _net6("::1/128"))
"""RFC 1122 and RFC 4291: this host."""
LINK_LOCAL = (_net4("169.254.0.0/16"), _net6("fe80::/10"))
"""RFC 3927 and RFC 4291: the local link, and a cloud's metadata service (169.254.169.254)."""
MULTICAST = (_net4("224.0.0.0/4"), _net6("ff00::/8"))
RESERVED_V4 = _net4("240.0.0.0/4")
"""RFC 1112 class E, "reserved for future use" (the broadcast address included)."""
DOCUMENTATION = (
    _net4("192.0.2.0/24"),  # RFC 5737 TEST-NET-1
    _net4("198.51.100.0/24"),  # RFC 5737 TEST-NET-2
    _net4("203.0.113.0/24"),  # RFC 5737 TEST-NET-3
    _net6("2001:db8::/32"),  # RFC 3849
    _net6("3fff::/20"),  # RFC 9637
)
PRIVATE = (
    _net4("10.0.0.0/8"),  # RFC 1918
    _net4("172.16.0.0/12"),  # RFC 1918
    _net4("192.168.0.0/16"),  # RFC 1918
    _net4("100.64.0.0/10"),  # RFC 6598 shared address space (carrier-grade NAT)
    _net4("198.18.0.0/15"),  # RFC 2544 benchmarking, used inside labs and clusters
    _net6("fc00::/7"),  # RFC 4193 unique local addresses
)
"""An operator's internal networks."""
IETF_PROTOCOL = _net4("192.0.0.0/24")
"""RFC 6890 IETF protocol assignments."""
NOT_GLOBAL = (
    IETF_PROTOCOL,
    _net4("192.88.99.0/24"),  # RFC 7526 deprecated 6to4 relay anycast
    _net6("fec0::/10"),  # RFC 3879 deprecated site-local (Python counts it as global)
)
"""Special-purpose ranges that `ipaddress.is_global` lets through on Python 3.11."""

NOT_FOR_REPLICAS_V4: tuple[ipaddress.IPv4Network, ...] = tuple(
    sorted(
        net
        for net in (
            THIS_NETWORK, *LOOPBACK, *LINK_LOCAL, *PRIVATE, IETF_PROTOCOL, *MULTICAST, RESERVED_V4,
        )
        if isinstance(net, ipaddress.IPv4Network)
    )
)  # fmt: skip
"""The IPv4 ranges a replica's traffic never goes to (the host rules drop it): this host, the
link (cloud metadata), the operator's networks, protocol assignments, multicast and class E."""


class AddressClass(enum.Enum):
    """What an address is, the first that applies in this order; the value says it in words."""

    UNSPECIFIED = "the unspecified address"
    THIS_NETWORK = 'in 0.0.0.0/8, "this network"'
    BROADCAST = "the broadcast address"
    MULTICAST = "a multicast address"
    LINK_LOCAL = "a link-local address"
    DOCUMENTATION = "a documentation address"
    LOOPBACK = "a loopback address"
    PRIVATE = "a private address"
    RESERVED = "a reserved address"
    NOT_GLOBAL = "not a global unicast address"
    GLOBAL = "a global unicast address"

    @property
    def words(self) -> str:
        return str(self.value)


def _within(ip: IP, nets: tuple[Network, ...]) -> bool:
    return any(ip in net for net in nets)


def classify(ip: IP) -> AddressClass:
    """What `ip` is, taken as given: reduce an embedded IPv4 form first (`canonical_ip`) to judge
    where a packet to it goes."""
    if ip.is_unspecified:
        return AddressClass.UNSPECIFIED
    if ip in THIS_NETWORK:
        return AddressClass.THIS_NETWORK
    if ip in BROADCAST:
        return AddressClass.BROADCAST
    if _within(ip, MULTICAST):
        return AddressClass.MULTICAST
    if _within(ip, LINK_LOCAL):
        return AddressClass.LINK_LOCAL
    if _within(ip, DOCUMENTATION):
        return AddressClass.DOCUMENTATION
    if _within(ip, LOOPBACK):
        return AddressClass.LOOPBACK
    if _within(ip, PRIVATE):
        return AddressClass.PRIVATE
    if ip.is_reserved:
        return AddressClass.RESERVED
    if not ip.is_global or _within(ip, NOT_GLOBAL):
        return AddressClass.NOT_GLOBAL
    return AddressClass.GLOBAL


def without_zone(text: str) -> IP:
    """The address `text` names, its IPv6 zone (`%eth0`) dropped: for addresses this host saw or
    resolved itself, where the zone is its own. ValueError if `text` is not an IP address."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def unmapped(ip: IP) -> IP:
    """An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2) as the IPv4 address it is:
    how a dual-stack socket reports an IPv4 peer. Other IPv6 forms stay as they are: a peer's
    source address in them is an IPv6 host's (see `canonical_ip` for where a packet goes)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def ip_text(ip: IP) -> str:
    """The canonical (RFC 5952) text of `ip`, the same on every Python: an IPv4-mapped address
    with its IPv4 part dotted (RFC 5952 5), as Python 3.13 writes it and 3.11 does not."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        scope = f"%{ip.scope_id}" if ip.scope_id is not None else ""
        return f"::ffff:{ip.ipv4_mapped}{scope}"
    return str(ip)


def canonical_ip(value: str | IP) -> IP:
    """The address `value` stands for: an IPv6 form that carries an IPv4 address (mapped,
    compatible, 6to4, NAT64, Teredo) becomes that IPv4 address, since a dual-stack socket or a
    tunnel delivers to it. ValueError if `value` is not an IP address or has an IPv6 scope."""
    if isinstance(value, str):
        if "%" in value:
            raise ValueError(f"{value!r} has an IPv6 scope, which means nothing on another node")
        ip: IP = ipaddress.ip_address(value)
    else:
        ip = value
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.scope_id is not None:
        raise ValueError(f"{ip} has an IPv6 scope, which means nothing on another node")
    # RFC 4291 2.5.5.2: IPv4-mapped ::ffff:a.b.c.d, what a dual-stack socket dials as IPv4.
    if ip.ipv4_mapped is not None:
        return unmapped(ip)
    # RFC 4291 2.5.5.1: IPv4-compatible ::a.b.c.d (deprecated); :: and ::1 are not such.
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip))
    # RFC 3056 2: 6to4 2002::/16, bits 16-47 the IPv4 of the site's tunnel endpoint.
    if ip.sixtofour is not None:
        return ip.sixtofour
    # RFC 6052 2.2 (well-known prefix, /96 form) and RFC 8215 (local-use prefix).
    if any(ip in prefix for prefix in NAT64_PREFIXES):
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    # RFC 4380 4: Teredo 2001::/32 carries the client's IPv4, the last 32 bits inverted.
    if ip.teredo is not None:
        return ip.teredo[1]
    return ip


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """The addresses this node routes requests to; anything else could reach the node itself,
    its machine's services or its cloud's metadata, not the peer that advertised it."""

    allow_loopback: bool
    """Only when this whole network is on loopback (one machine): this node's own address is."""
    allow_private: bool
    """An operator's choice for a private cluster whose nodes reach each other on private ranges."""

    @classmethod
    def for_node(cls, own: str | IP, *, allow_private: bool) -> AddressPolicy:
        return cls(allow_loopback=canonical_ip(own).is_loopback, allow_private=allow_private)

    def check(self, ip: str | IP) -> str | None:
        """Why `ip` (once reduced by `canonical_ip`) is refused, or None if it is allowed."""
        try:
            plain = canonical_ip(ip)
        except ValueError as exc:
            return str(exc)
        what = self._refusal(plain)
        if what is None:
            return None
        given = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        return f"it is {what}" if given == plain else f"it carries {plain}, {what}"

    def _refusal(self, ip: IP) -> str | None:
        kind = classify(ip)
        if kind is AddressClass.GLOBAL:
            return None
        if kind is AddressClass.LOOPBACK:
            if self.allow_loopback:
                return None
            return f"{kind.words}, routed to only when every node is on loopback"
        if kind is AddressClass.PRIVATE:
            if self.allow_private:
                return None
            return f"{kind.words}, routed to only when private endpoints are allowed"
        return kind.words


_ONLY_THIS_NODE_REACHES: dict[AddressClass, str] = {
    AddressClass.UNSPECIFIED: "the unspecified address",
    AddressClass.THIS_NETWORK: "the unspecified address",
    AddressClass.LOOPBACK: AddressClass.LOOPBACK.words,
    AddressClass.LINK_LOCAL: AddressClass.LINK_LOCAL.words,
    AddressClass.PRIVATE: AddressClass.PRIVATE.words,
}


def private_reason(address: str) -> str | None:
    """Why a server at `address` (an IP this node resolved) is one only this node, or its
    operator's networks, reach: where a packet to it goes (`canonical_ip`) is unspecified,
    loopback, link-local or private. None when it is not such an address. ValueError if
    `address` is not an IP address."""
    return _ONLY_THIS_NODE_REACHES.get(classify(canonical_ip(without_zone(address))))


def registered_ip(address: bytes) -> IP | None:
    """The IP of the multiaddr a node registered (`/ip4/HOST/...` or `/ip6/HOST/...`), reduced by
    `canonical_ip`; None when it names no IP (a DNS name, an empty or malformed address)."""
    try:
        parts = address.decode("ascii").split("/")
    except UnicodeDecodeError:
        return None
    if len(parts) < 3 or parts[0] != "":
        return None
    try:
        if parts[1] == "ip4":
            return canonical_ip(ipaddress.IPv4Address(parts[2]))
        if parts[1] == "ip6":
            return canonical_ip(ipaddress.IPv6Address(parts[2]))
    except ValueError:
        return None
    return None


def with_ip(multiaddr: str, ip: str) -> str:
    """`multiaddr` with its first IP component replaced by `ip` (a node that listens on a
    wildcard or loopback address registers the address it is reached at)."""
    address = canonical_ip(ip)
    parts = multiaddr.split("/")
    for i, part in enumerate(parts[:-1]):
        if part in ("ip4", "ip6"):
            parts[i] = "ip4" if address.version == 4 else "ip6"
            parts[i + 1] = str(address)
            return "/".join(parts)
    return multiaddr
