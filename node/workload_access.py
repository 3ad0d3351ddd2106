"""The owner's signed request that opens an application's logs and container events on one node:
what the owner's key signs, and the node's checks of it.

The signed message binds the chain (its genesis hash), the application, the node and an expiry
a few minutes ahead, after a domain tag of its own that no other signed message of the system
(transactions, seals, votes, registrations, ...) starts with, and that starts none of theirs:
a signature of one is never a signature of another. A request seen by one node cannot be
replayed to another node, to another application, or after its expiry."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import rlp

from chain.address import AddressError, decode_address, encode_address
from chain.primitives import AccountId
from chain.signature import verify
from wallet.keys import Keypair

ACCESS_DOMAIN = b"statemesh/workload-access/v1\x00"
MAX_AHEAD_SECONDS = 300
"""A request may expire at most this far ahead of the node's clock: a signature that leaks is
of use for a few minutes only."""
LIFETIME_SECONDS = 120
"""How far ahead the CLI sets a request's expiry: room for its clock to be up to
MAX_AHEAD_SECONDS - LIFETIME_SECONDS ahead of the node's, or LIFETIME_SECONDS behind."""
SIGNATURE_BYTES = 64


class AccessRefusal(enum.Enum):
    """Why a request for an application's workload data was refused (the `reason` of the
    JSON-RPC error's data)."""

    MISSING = "missing"
    WRONG_NODE = "wrongNode"
    EXPIRED = "expired"
    TOO_FAR_AHEAD = "tooFarAhead"
    NOT_OWNER = "notOwner"
    BAD_SIGNATURE = "badSignature"


class AccessDenied(Exception):
    """A request that does not open the application's workload data on this node."""

    def __init__(self, reason: AccessRefusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """An owner's signature that lets its bearer read one application's workload data on one
    node until `expires`. The application is not carried: the node checks the signature
    against the application asked for, so a grant used for another one fails."""

    owner: AccountId
    """Who signed: the node accepts it only if this account owns the application."""
    node: AccountId
    """The node id the grant is for."""
    expires: int
    """Unix time, in seconds, after which the grant is refused."""
    signature: bytes
    """The owner's Ed25519 signature of `access_message`."""

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": encode_address(self.owner),
            "node": encode_address(self.node),
            "expires": self.expires,
            "signature": "0x" + self.signature.hex(),
        }

    @classmethod
    def from_json(cls, value: Any) -> AccessGrant:
        """The `auth` param of a call; a ValueError says what is malformed."""
        if not isinstance(value, dict):
            raise ValueError("expected an object {owner, node, expires, signature}")
        fields = {"owner", "node", "expires", "signature"}
        if set(value) != fields:
            missing = sorted(fields - set(value))
            extra = sorted(set(value) - fields)
            what = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
            raise ValueError(f"expected an object {{owner, node, expires, signature}}: {what}")
        expires = value["expires"]
        if type(expires) is not int or expires < 0:
            raise ValueError("expires: expected a unix time in seconds (an integer >= 0)")
        return cls(
            owner=_address(value["owner"], "owner"),
            node=_address(value["node"], "node"),
            expires=expires,
            signature=_signature(value["signature"]),
        )


def access_message(genesis: bytes, app: str, node: bytes, expires: int) -> bytes:
    """What the owner signs to let `node` serve `app`'s workload data until `expires`."""
    encoded: bytes = rlp.encode([genesis, app.encode(), node, expires])
    return ACCESS_DOMAIN + encoded


def sign_access(
    owner: Keypair, *, genesis: bytes, app: str, node: AccountId, expires: int
) -> AccessGrant:
    signature = owner.sign(access_message(genesis, app, node, expires))
    return AccessGrant(owner.public, node, expires, signature)


def check_access(
    grant: AccessGrant | None,
    *,
    genesis: bytes,
    app: str,
    node: bytes,
    owner: bytes,
    now: float,
    max_ahead: int = MAX_AHEAD_SECONDS,
) -> None:
    """Returns if `grant` lets this node (`node`) serve `app`, owned by `owner`, at `now`;
    else raises `AccessDenied` with the first reason found."""
    if grant is None:
        raise AccessDenied(
            AccessRefusal.MISSING,
            f"the logs and container events of {app!r} are served to its owner only: "
            "sign the request with the owner's key (param auth)",
        )
    if grant.node != node:
        raise AccessDenied(
            AccessRefusal.WRONG_NODE,
            f"the request is signed for node {encode_address(grant.node)}, "
            f"not this node ({encode_address(node)})",
        )
    if grant.expires <= now:
        raise AccessDenied(
            AccessRefusal.EXPIRED,
            f"the request expired {int(now) - grant.expires} s ago (at {grant.expires})",
        )
    if grant.expires > now + max_ahead:
        raise AccessDenied(
            AccessRefusal.TOO_FAR_AHEAD,
            f"the request expires {grant.expires - int(now)} s from now: "
            f"at most {max_ahead} s ahead are accepted",
        )
    if grant.owner != owner:
        raise AccessDenied(
            AccessRefusal.NOT_OWNER,
            f"{encode_address(grant.owner)} does not own {app!r} "
            f"(its owner is {encode_address(owner)})",
        )
    if not verify(grant.owner, access_message(genesis, app, node, grant.expires), grant.signature):
        raise AccessDenied(
            AccessRefusal.BAD_SIGNATURE,
            f"the signature is not the owner's signature of a request for {app!r} "
            "on this node's chain, node and expiry",
        )


def _address(value: Any, name: str) -> AccountId:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected an address")
    try:
        return decode_address(value)
    except AddressError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _signature(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("signature: expected 0x-prefixed hex")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError("signature: expected 0x-prefixed hex") from None
    if len(raw) != SIGNATURE_BYTES:
        raise ValueError(f"signature: expected {SIGNATURE_BYTES} bytes, got {len(raw)}")
    return raw
