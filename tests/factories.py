"""Builders shared by tests: an in-memory chain state, signed transactions, development keys."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import rlp

from chain import signature
from chain.blocks import Call
from chain.genesis import ChainSpec, build_genesis, dev_spec
from chain.keys import Keypair, dev_keypair, sign_transaction
from chain.primitives import AccountId, BlockNumber, Hash32, TimestampMs
from chain.runtime.executive import Runtime, default_modules
from chain.runtime.framework import BlockEnv
from chain.state import TrieState
from chain.trie import BLANK_ROOT
from consensus.finality import Vote

ALICE = dev_keypair("alice")
BOB = dev_keypair("bob")
CHARLIE = dev_keypair("charlie")
DAVE = dev_keypair("dave")


def calls() -> dict[tuple[str, str], object]:
    return {(c.module, c.name): c for m in default_modules() for c in m.calls()}


def transfer_call(dest: AccountId, amount: int) -> Call:
    from chain.runtime.balances import Balances

    (call_def,) = Balances().calls()
    return call_def.call(dest=dest, amount=amount)


def remark_call(data: bytes) -> Call:
    from chain.runtime.system import System

    (call_def,) = System().calls()
    return call_def.call(data=data)


def spec_for(*endowed: Keypair, amount: int = 10**18) -> ChainSpec:
    spec = dev_spec(authorities=(ALICE.public,), endowed=tuple(k.public for k in endowed))
    return ChainSpec(
        name=spec.name,
        id=spec.id,
        chain_type=spec.chain_type,
        slot_duration_ms=spec.slot_duration_ms,
        authorities=spec.authorities,
        balances=tuple((who, amount) for who, _ in spec.balances),
        runtime=spec.runtime,
    )


@dataclass
class MemoryChain:
    """A runtime over an in-memory trie: enough to execute blocks without a database."""

    spec: ChainSpec
    nodes: dict[bytes, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        genesis = build_genesis(self.spec, TrieState(self.nodes, BLANK_ROOT))
        self.nodes.update(genesis.commit.nodes)
        self.genesis_hash: Hash32 = genesis.hash
        self.root = genesis.commit.root
        self.runtime = Runtime(self.spec.runtime, self.genesis_hash)
        self.number = 0

    @property
    def state(self) -> TrieState:
        return TrieState(self.nodes, self.root)

    def env(self, author: AccountId | None = None) -> BlockEnv:
        return BlockEnv(
            BlockNumber(self.number + 1),
            Hash32(self.number.to_bytes(32, "big")),
            TimestampMs(1_000 * (self.number + 1)),
            author or ALICE.public,
        )

    def sign(self, keypair: Keypair, call: Call, *, nonce: int, tip: int = 0) -> bytes:
        tx = sign_transaction(
            keypair, genesis_hash=self.genesis_hash, nonce=nonce, call=call, tip=tip
        )
        return rlp.encode(tx)  # type: ignore[no-any-return]

    def execute(self, extrinsics: list[bytes], author: AccountId | None = None):  # type: ignore[no-untyped-def]
        execution = self.runtime.execute_block(self.state, self.env(author), extrinsics)
        self.nodes.update(execution.commit.nodes)
        self.root = execution.commit.root
        self.number += 1
        return execution


def count_vote_work(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the votes decoded and the vote signatures checked from now on."""
    work = {"decoded": 0, "verified": 0}
    decode, check = Vote.decode, signature.verify

    def counted_decode(data: bytes) -> Vote:
        work["decoded"] += 1
        return decode(data)

    def counted_verify(public: bytes, message: bytes, signature: bytes) -> bool:
        work["verified"] += 1
        return check(public, message, signature)

    monkeypatch.setattr(Vote, "decode", staticmethod(counted_decode))
    monkeypatch.setattr("consensus.finality.verify", counted_verify)
    return work
