"""The owner's signed request that opens an application's logs and container events on one node:
what the owner's key signs, and the node's checks of it.

The signed message binds the chain (its genesis hash), the application, the node and an expiry
a few minutes ahead, after a domain tag of its own that no other signed message of the system
(transactions, seals, votes, registrations, ...) starts with, and that starts none of theirs:
a signature of one is never a signature of another. A request seen by one node cannot be
replayed to another node, to another application, or after its expiry.

Before signing, the CLI has the node prove its id: the node signs, with the key its id is the
public key of, a fresh challenge of the CLI's and its chain's genesis hash, after a domain tag
of its own. A node that only claims another node's id (to obtain a request it could use there)
cannot answer; what the proof cannot tell is a node that relays the challenge to the other node
while it is asked, which must reach that node's RPC at that moment to do so."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import rlp

from chain.address import AddressError, decode_address, encode_address
from chain.errors import Rejection
from chain.keys import Keypair
from chain.primitives import AccountId
from chain.signature import verify
from node.errors import NodeError

ACCESS_DOMAIN = b"statemesh/workload-access/v1\x00"
MAX_AHEAD_SECONDS = 300
"""A request may expire at most this far ahead of the node's clock: a signature that leaks is
of use for a few minutes only."""
LIFETIME_SECONDS = 120
"""How far ahead the CLI sets a request's expiry: room for its clock to be up to
MAX_AHEAD_SECONDS - LIFETIME_SECONDS ahead of the node's, or LIFETIME_SECONDS behind."""
SIGNATURE_BYTES = 64
IDENTITY_DOMAIN = b"statemesh/node-identity/v1\x00"
CHALLENGE_BYTES = 32
HASH_BYTES = 32
ACCESS_DENIED = 5005
"""The request for an application's logs or container events is not its owner's signed request
for it on this node: the error's data is `{"reason": ...}`, one of `missing`, `wrongNode`,
`expired`, `tooFarAhead`, `notOwner`, `badSignature` (`AccessRefusal`)."""


class AccessRefusal(enum.Enum):
    """Why a request for an application's workload data was refused (the `reason` of the
    JSON-RPC error's data)."""

    MISSING = "missing"
    WRONG_NODE = "wrongNode"
    EXPIRED = "expired"
    TOO_FAR_AHEAD = "tooFarAhead"
    NOT_OWNER = "notOwner"
    BAD_SIGNATURE = "badSignature"


class AccessDenied(Rejection[AccessRefusal], NodeError):
    """A request that does not open the application's workload data on this node. Its text is
    the message alone: the reason goes to the client as a field of its own."""

    @staticmethod
    def text(reason: AccessRefusal, message: str) -> str:
        return message


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
    what: str = "the logs and container events",
) -> None:
    """Returns if `grant` lets this node (`node`) serve `app`, owned by `owner`, at `now`;
    else raises `AccessDenied` with the first reason found (`what`: the data asked for, as
    the refusal names it)."""
    if grant is None:
        raise AccessDenied(
            AccessRefusal.MISSING,
            f"{what} of {app!r} are served to its owner only: "
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


class IdentityUnproven(NodeError):
    """A node's answer that does not prove it holds the key of the node id it claims."""


@dataclass(frozen=True, slots=True)
class IdentityProof:
    """A node's answer to a client's challenge: its id, its chain, and its node key's signature
    of both with the challenge."""

    node: AccountId
    """The node id, the public key of the node key that signed."""
    genesis: bytes
    """The genesis hash of the node's chain, which owners' requests for it are signed for."""
    signature: bytes
    """The node key's Ed25519 signature of `identity_message`."""

    def to_json(self) -> dict[str, Any]:
        return {
            "node": encode_address(self.node),
            "genesis": "0x" + self.genesis.hex(),
            "signature": "0x" + self.signature.hex(),
        }

    @classmethod
    def from_json(cls, value: Any) -> IdentityProof:
        """A node's `node_identity` answer; a ValueError says what is malformed."""
        if not isinstance(value, dict) or set(value) != {"node", "genesis", "signature"}:
            raise ValueError("expected an object {node, genesis, signature}")
        return cls(
            node=_address(value["node"], "node"),
            genesis=_hex(value["genesis"], "genesis", HASH_BYTES),
            signature=_signature(value["signature"]),
        )


def identity_message(genesis: bytes, challenge: bytes, node: bytes) -> bytes:
    """What a node's key signs to show that `node` answers `challenge` on chain `genesis`."""
    encoded: bytes = rlp.encode([genesis, challenge, node])
    return IDENTITY_DOMAIN + encoded


def challenge_param(value: Any) -> bytes:
    """The `challenge` param of `node_identity`: 32 bytes, 0x-prefixed hex."""
    return _hex(value, "challenge", CHALLENGE_BYTES)


def prove_identity(node_key: Keypair, *, genesis: bytes, challenge: bytes) -> IdentityProof:
    signature = node_key.sign(identity_message(genesis, challenge, node_key.public))
    return IdentityProof(AccountId(node_key.public), genesis, signature)


def check_identity(proof: IdentityProof, *, challenge: bytes) -> None:
    """Returns if `proof` is signed by the key of the node id it names, for `challenge`; else
    raises `IdentityUnproven`."""
    message = identity_message(proof.genesis, challenge, proof.node)
    if not verify(proof.node, message, proof.signature):
        raise IdentityUnproven(
            f"its answer is not signed by the key of the node id it claims "
            f"({encode_address(proof.node)}) for this request's challenge"
        )


def _address(value: Any, name: str) -> AccountId:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected an address")
    try:
        return decode_address(value)
    except AddressError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _signature(value: Any) -> bytes:
    return _hex(value, "signature", SIGNATURE_BYTES)


def _hex(value: Any, name: str, size: int) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"{name}: expected 0x-prefixed hex")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError(f"{name}: expected 0x-prefixed hex") from None
    if len(raw) != size:
        raise ValueError(f"{name}: expected {size} bytes, got {len(raw)}")
    return raw
