"""The owner's signed request for an application's workload data, and the node's proof of its
id: the messages they sign cannot be anything else's, and both survive their JSON form
unchanged."""

from __future__ import annotations

import pytest
import rlp
from hypothesis import given
from hypothesis import strategies as st

from chain.blocks import SEAL_SIGNING_DOMAIN, TX_SIGNING_DOMAIN, UnsignedTransaction
from chain.primitives import AccountId, Hash32
from chain.runtime.nodes import REGISTRATION_DOMAIN
from chain.runtime.usage import REPORT_DOMAIN
from chain.runtime.wallets import CONFIRMATION_DOMAIN
from consensus.finality import VOTE_DOMAIN
from node.workload_access import (
    ACCESS_DOMAIN,
    IDENTITY_DOMAIN,
    AccessGrant,
    IdentityProof,
    access_message,
    identity_message,
    prove_identity,
    sign_access,
)
from orchestrator.endpoints import ADVERT_DOMAIN
from tests.factories import ALICE, BOB, remark_call
from wallet.frost.dkg_messages import DKG_DOMAIN

GENESIS = b"\x01" * 32


SIGNED_DOMAINS = [TX_SIGNING_DOMAIN, SEAL_SIGNING_DOMAIN, VOTE_DOMAIN, REGISTRATION_DOMAIN,
                  REPORT_DOMAIN, CONFIRMATION_DOMAIN, ADVERT_DOMAIN, DKG_DOMAIN]  # fmt: skip
"""The tags of what else the system's keys sign (the node key among them: registrations,
usage reports, endpoint adverts, DKG messages)."""


@pytest.mark.parametrize("other", [*SIGNED_DOMAINS, IDENTITY_DOMAIN])
def test_the_domain_tag_is_no_other_signed_message_s(other: bytes) -> None:
    assert not ACCESS_DOMAIN.startswith(other)
    assert not other.startswith(ACCESS_DOMAIN)


@pytest.mark.parametrize("other", [*SIGNED_DOMAINS, ACCESS_DOMAIN])
def test_the_identity_tag_is_no_other_signed_message_s(other: bytes) -> None:
    assert not IDENTITY_DOMAIN.startswith(other)
    assert not other.startswith(IDENTITY_DOMAIN)


@given(challenge=st.binary(min_size=32, max_size=32))
def test_the_identity_message_starts_with_its_tag_and_binds_each_field(challenge: bytes) -> None:
    message = identity_message(GENESIS, challenge, BOB.public)
    assert message.startswith(IDENTITY_DOMAIN)
    assert rlp.decode(message[len(IDENTITY_DOMAIN) :]) == [GENESIS, challenge, BOB.public]
    assert message != identity_message(b"\x02" * 32, challenge, BOB.public)
    assert message != identity_message(GENESIS, bytes(b ^ 1 for b in challenge), BOB.public)
    assert message != identity_message(GENESIS, challenge, ALICE.public)


def test_an_identity_proof_round_trips_through_json() -> None:
    proof = prove_identity(BOB, genesis=GENESIS, challenge=b"\x03" * 32)
    assert proof.node == BOB.public
    assert IdentityProof.from_json(proof.to_json()) == proof


@given(app=st.text(min_size=1, max_size=63), expires=st.integers(0, 2**40))
def test_the_message_starts_with_its_domain_tag(app: str, expires: int) -> None:
    message = access_message(GENESIS, app, BOB.public, expires)
    assert message.startswith(ACCESS_DOMAIN)
    tx = UnsignedTransaction(Hash32(GENESIS), ALICE.public, 0, 0, remark_call(b"x"))
    assert not tx.signing_payload().startswith(ACCESS_DOMAIN)


def test_each_bound_field_changes_the_message() -> None:
    base = access_message(GENESIS, "web", BOB.public, 100)
    assert base != access_message(b"\x02" * 32, "web", BOB.public, 100)
    assert base != access_message(GENESIS, "api", BOB.public, 100)
    assert base != access_message(GENESIS, "web", ALICE.public, 100)
    assert base != access_message(GENESIS, "web", BOB.public, 101)
    # Fields are length-prefixed: moving a byte from one to the next changes the message.
    assert access_message(GENESIS, "we", b"b" + bytes(31), 1) != access_message(
        GENESIS, "web", bytes(32), 1
    )
    assert rlp.decode(base[len(ACCESS_DOMAIN) :]) == [GENESIS, b"web", BOB.public, b"d"]


def test_a_grant_round_trips_through_json() -> None:
    grant = sign_access(ALICE, genesis=GENESIS, app="web", node=AccountId(BOB.public), expires=7)
    assert AccessGrant.from_json(grant.to_json()) == grant
