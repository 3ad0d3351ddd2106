"""Multiaddrs of nodes: formatting our own and parsing bootnode addresses."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import multiaddr
import multiaddr.exceptions

from p2p.errors import InvalidConfig
from p2p.identity import PeerId


def node_multiaddr(host: str, port: int, peer_id: PeerId) -> str:
    """`/ip4/HOST/tcp/PORT/p2p/PEER_ID`: what other nodes pass as a bootnode."""
    return f"/ip4/{host}/tcp/{port}/p2p/{peer_id}"


def listen_multiaddr(host: str, port: int) -> str:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise InvalidConfig(f"listen host {host!r} is not an IPv4 address") from None
    if not 0 <= port <= 65535:
        raise InvalidConfig(f"listen port {port} is outside 0-65535")
    return f"/ip4/{host}/tcp/{port}"


@dataclass(frozen=True, slots=True)
class Bootnode:
    peer_id: PeerId
    """Who we expect to answer; a different key at that address fails the Noise handshake."""
    transport: str
    """The address without its `/p2p/` part, e.g. `/ip4/127.0.0.1/tcp/30333`."""

    def __str__(self) -> str:
        return f"{self.transport}/p2p/{self.peer_id}"


def parse_bootnode(text: str) -> Bootnode:
    """Parse `/ip4/HOST/tcp/PORT/p2p/PEER_ID` (or `/dns4/...`), naming the fault if malformed."""
    try:
        address = multiaddr.Multiaddr(text)
    except (ValueError, multiaddr.exceptions.Error) as error:
        raise InvalidConfig(f"bootnode {text!r} is not a multiaddr: {error}") from None
    names = [protocol.name for protocol in address.protocols()]
    peer_id = address.get_peer_id()
    if not names or names[-1] != "p2p" or peer_id is None:
        raise InvalidConfig(f"bootnode {text!r} must end in /p2p/<peer id>")
    if "tcp" not in names:
        raise InvalidConfig(f"bootnode {text!r} must name a TCP port")
    transport = str(address.decapsulate(multiaddr.Multiaddr(f"/p2p/{peer_id}")))
    return Bootnode(PeerId(peer_id), transport)
