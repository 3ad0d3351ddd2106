"""Builders shared by the FROST tests: seeded randomness, identity keys, DKG parameters, and
whole signing rounds and DKG runs (with an optional cheating member)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chain.keys import Keypair
from wallet.frost.dkg import DkgMember, DkgOutput, DkgParams, DkgParticipant
from wallet.frost.dkg_messages import Round2Share
from wallet.frost.errors import FrostError
from wallet.frost.group import RandomSource, Scalar
from wallet.frost.identifier import Identifier, as_identifier
from wallet.frost.keys import KeyPackage, PublicKeyPackage
from wallet.frost.share_box import open_share, seal_share
from wallet.frost.signing import (
    SignatureShare,
    SigningNonces,
    SigningPackage,
    aggregate,
    commit,
    sign,
)

SESSION = bytes(range(32))


def seeded(seed: int) -> RandomSource:
    return random.Random(seed).randbytes


def approve_any(message: bytes) -> bool:
    return True


def identities(count: int, seed: int = 7) -> list[Keypair]:
    rng = random.Random(seed)
    return [Keypair.from_seed(rng.randbytes(32)) for _ in range(count)]


def dkg_params(keys: Sequence[Keypair], min_signers: int, session: bytes = SESSION) -> DkgParams:
    return DkgParams.create(
        session,
        min_signers,
        [DkgMember(as_identifier(n + 1), key.public) for n, key in enumerate(keys)],
    )


@dataclass
class Round:
    """Round one of a signing round among `signers`, ready for round two."""

    package: SigningPackage
    nonces: dict[Identifier, SigningNonces]

    def shares(self, keys: Mapping[Identifier, KeyPackage]) -> list[SignatureShare]:
        return [
            sign(keys[i], self.nonces[i], self.package, approve=approve_any)
            for i in self.package.participants
        ]


def start_round(
    keys: Mapping[Identifier, KeyPackage],
    signers: Iterable[Identifier],
    message: bytes,
    rng: RandomSource,
) -> Round:
    nonces: dict[Identifier, SigningNonces] = {}
    commitments = []
    for identifier in signers:
        nonces[identifier], commitment = commit(keys[identifier], rng=rng)
        commitments.append(commitment)
    return Round(SigningPackage.create(message, commitments), nonces)


def sign_with(
    keys: Mapping[Identifier, KeyPackage],
    public: PublicKeyPackage,
    signers: Iterable[Identifier],
    message: bytes,
    rng: RandomSource,
) -> bytes:
    round_ = start_round(keys, signers, message, rng)
    return aggregate(round_.package, round_.shares(keys), public)


@dataclass
class DkgRun:
    outputs: dict[Identifier, DkgOutput]
    """Members that finished."""
    failures: dict[Identifier, FrostError]
    """Members whose `finish_complaints` raised (the excluded cheater, or all if too few)."""


def run_dkg(
    params: DkgParams,
    keys: Sequence[Keypair],
    rng: RandomSource,
    *,
    bad_share: tuple[Identifier, Identifier] | None = None,
) -> DkgRun:
    """A full DKG where, if `bad_share` = (sender, recipient), the sender sends the recipient
    a wrong share that it signs properly (a cheater, not a network fault)."""
    by_id = {params.identifier_of(key.public): key for key in keys}
    members = {i: DkgParticipant(params, key, rng=rng) for i, key in by_id.items()}
    packages = [m.start() for m in members.values()]
    for member in members.values():
        for package in packages:
            member.receive_round1(package)
    for sender, member in members.items():
        for share in member.finish_round1():
            if bad_share == (sender, share.recipient):
                share = Round2Share.signed(
                    share.session_id,
                    sender,
                    share.recipient,
                    share.share + Scalar.from_int(1),
                    by_id[sender],
                )
            box = seal_share(share, params.identity_key(share.recipient), rng=rng)
            members[share.recipient].receive_share(open_share(box, by_id[share.recipient]))
    complaints = [m.finish_round2() for m in members.values()]
    for member in members.values():
        for message in complaints:
            member.receive_complaints(message)
    confirmations = []
    failures: dict[Identifier, FrostError] = {}
    for identifier, member in members.items():
        try:
            confirmations.append(member.finish_complaints())
        except FrostError as error:
            failures[identifier] = error
    finishing = {i: m for i, m in members.items() if i not in failures}
    for member in finishing.values():
        for confirmation in confirmations:
            member.receive_confirmation(confirmation)
    return DkgRun({i: m.finish() for i, m in finishing.items()}, failures)
