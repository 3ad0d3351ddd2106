"""Ed25519 key pairs. The secret seed never appears in `repr` or `str`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import nacl.bindings

from chain.address import encode_address
from chain.blocks import Call, SignedTransaction, UnsignedTransaction
from chain.primitives import AccountId, Hash32


class Signer(Protocol):
    """What signs for an account: a `Keypair`, or anything holding one's secret elsewhere."""

    @property
    def public(self) -> AccountId: ...

    def sign(self, message: bytes) -> bytes: ...


DEV_SEED_DOMAIN = b"statemesh/dev-account/"
DEV_ACCOUNTS = ("alice", "bob", "charlie", "dave", "eve", "ferdie")


@dataclass(frozen=True, slots=True)
class Keypair:
    seed: bytes = field(repr=False)
    """32 secret bytes; everything else derives from them."""
    public: AccountId
    _secret: bytes = field(repr=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        return cls(seed=seed, public=AccountId(public), _secret=secret)

    @classmethod
    def generate(cls) -> Keypair:
        import os

        return cls.from_seed(os.urandom(32))

    @property
    def address(self) -> str:
        return encode_address(self.public)

    def sign(self, message: bytes) -> bytes:
        return nacl.bindings.crypto_sign(message, self._secret)[:64]  # type: ignore[no-any-return]

    def __str__(self) -> str:
        return f"Keypair({self.address})"


def dev_keypair(name: str) -> Keypair:
    """A well-known development account. Its seed is public: never hold value with it."""
    return Keypair.from_seed(
        hashlib.blake2b(DEV_SEED_DOMAIN + name.encode(), digest_size=32).digest()
    )


def sign_transaction(
    keypair: Keypair, *, genesis_hash: Hash32, nonce: int, call: Call, tip: int = 0
) -> SignedTransaction:
    unsigned = UnsignedTransaction(genesis_hash, keypair.public, nonce, tip, call)
    sig = keypair.sign(unsigned.signing_payload())
    return SignedTransaction(genesis_hash, keypair.public, nonce, tip, call, sig)
