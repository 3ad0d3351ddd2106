"""The Pedersen DKG: honest runs agree on one working key; a cheating member is named and
disqualified while the others keep going; every out-of-place message is refused by type."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chain.keys import Keypair
from chain.signature import verify
from tests.unit.frost_builders import SESSION, dkg_params, identities, run_dkg, seeded, sign_with
from wallet.frost.dkg import (
    DisqualificationReason,
    DkgMember,
    DkgParams,
    DkgParticipant,
    DkgPhase,
    judge_complaint,
    run_in_process,
)
from wallet.frost.dkg_messages import (
    Complaint,
    ComplaintsMessage,
    Confirmation,
    ProofOfKnowledge,
    Round1Package,
    Round2Share,
)
from wallet.frost.errors import (
    ConfirmationMismatch,
    ConflictingMessage,
    DuplicateIdentifier,
    ExcludedFromGroup,
    InvalidMessageSignature,
    InvalidParameters,
    MissingMessages,
    NotEnoughQualified,
    PhaseError,
    SealingError,
    UnexpectedMessage,
    UnknownParticipant,
    WrongSession,
)
from wallet.frost.group import SCALAR_ONE, Scalar, base_mul
from wallet.frost.identifier import Identifier, as_identifier
from wallet.frost.polynomial import VssCommitment
from wallet.frost.share_box import open_share, seal_share

MESSAGE = b"pay node 4 for hour 1234"


@st.composite
def committees(draw: st.DrawFn) -> tuple[int, int, int]:
    n = draw(st.integers(min_value=2, max_value=7))
    t = draw(st.integers(min_value=2, max_value=n))
    return t, n, draw(st.integers(min_value=0, max_value=2**32))


# Properties -------------------------------------------------------------------------------


@given(committees(), st.integers(min_value=0))
@example((7, 7, 1), 1)
@example((2, 7, 2), 2)
@settings(max_examples=12, deadline=None)
def test_honest_members_agree_on_a_key_that_any_t_can_use(
    committee: tuple[int, int, int], choice: int
) -> None:
    t, n, seed = committee
    rng = seeded(seed)
    keys = identities(n, seed)
    params = dkg_params(keys, t)
    outputs = run_in_process(params, keys, rng=rng)

    publics = {o.public_key_package for o in outputs.values()}
    assert len(publics) == 1
    public = publics.pop()
    assert set(public.verifying_shares) == set(params.identifiers)
    for identifier, output in outputs.items():
        assert output.disqualified == ()
        assert output.key_package.identifier == identifier
        assert base_mul(output.key_package.secret_share) == public.verifying_share(identifier)
    signers = random.Random(choice).sample(params.identifiers, t)
    key_packages = {i: o.key_package for i, o in outputs.items()}
    signature = sign_with(key_packages, public, signers, MESSAGE, rng)
    assert verify(public.group_public_key.encoding, MESSAGE, signature)


@given(committees(), st.integers(min_value=0))
@example((7, 7, 3), 3)
@example((2, 7, 4), 4)
@example((2, 2, 5), 5)
@settings(max_examples=12, deadline=None)
def test_a_member_sending_a_bad_share_is_disqualified(
    committee: tuple[int, int, int], choice: int
) -> None:
    t, n, seed = committee
    rng = seeded(seed)
    keys = identities(n, seed)
    params = dkg_params(keys, t)
    cheater, victim = random.Random(choice).sample(params.identifiers, 2)

    run = run_dkg(params, keys, rng, bad_share=(cheater, victim))

    assert isinstance(run.failures.get(cheater), ExcludedFromGroup)
    assert str(run.failures[cheater]) == (
        f"member {cheater} was disqualified: member {cheater}: sent a share that fails its "
        f"commitments (its share to member {victim} fails its commitments)"
    )
    honest = [i for i in params.identifiers if i != cheater]
    if n - 1 < t:
        assert run.outputs == {}
        for identifier in honest:
            error = run.failures[identifier]
            assert isinstance(error, NotEnoughQualified)
            assert str(error) == (
                f"only {n - 1} members remain qualified, fewer than the threshold {t}"
            )
            assert error.culprits == (cheater,)
        return
    assert set(run.outputs) == set(honest)
    publics = {o.public_key_package for o in run.outputs.values()}
    assert len(publics) == 1
    public = publics.pop()
    assert set(public.verifying_shares) == set(honest)
    for output in run.outputs.values():
        (verdict,) = output.disqualified
        assert verdict.identifier == cheater
        assert verdict.reason is DisqualificationReason.BAD_SHARE
    signers = random.Random(choice).sample(honest, t)
    key_packages = {i: o.key_package for i, o in run.outputs.items()}
    signature = sign_with(key_packages, public, signers, MESSAGE, rng)
    assert verify(public.group_public_key.encoding, MESSAGE, signature)


# Step by step -----------------------------------------------------------------------------

KEYS = identities(4, seed=99)
PARAMS = dkg_params(KEYS, 3)
ONE, TWO, THREE, FOUR = (as_identifier(i) for i in (1, 2, 3, 4))


def _members(rng_seed: int = 1) -> dict[Identifier, DkgParticipant]:
    rng = seeded(rng_seed)
    return {as_identifier(n + 1): DkgParticipant(PARAMS, k, rng=rng) for n, k in enumerate(KEYS)}


def _through_round1(
    members: dict[Identifier, DkgParticipant],
) -> dict[Identifier, Round1Package]:
    packages = {i: m.start() for i, m in members.items()}
    for member in members.values():
        for package in packages.values():
            member.receive_round1(package)
    return packages


def _through_round2(
    members: dict[Identifier, DkgParticipant],
) -> dict[Identifier, ComplaintsMessage]:
    _through_round1(members)
    for member in members.values():
        for share in member.finish_round1():
            members[share.recipient].receive_share(share)
    return {i: m.finish_round2() for i, m in members.items()}


def _through_complaints(
    members: dict[Identifier, DkgParticipant],
) -> dict[Identifier, Confirmation]:
    complaints = _through_round2(members)
    for member in members.values():
        for message in complaints.values():
            member.receive_complaints(message)
    return {i: m.finish_complaints() for i, m in members.items()}


def test_a_false_complaint_disqualifies_the_complainer() -> None:
    members = _members()
    _through_round1(members)
    shares: dict[Identifier, list[Round2Share]] = {i: [] for i in members}
    for member in members.values():
        for share in member.finish_round1():
            shares[share.recipient].append(share)
            members[share.recipient].receive_share(share)
    complaints = {i: m.finish_round2() for i, m in members.items()}
    assert all(c.complaints == () for c in complaints.values())
    # Member 3 accuses member 1 with the (valid) share member 1 really sent it.
    genuine = next(s for s in shares[THREE] if s.sender == ONE)
    complaints[THREE] = ComplaintsMessage.signed(SESSION, THREE, (Complaint(genuine),), KEYS[2])
    others = {i: m for i, m in members.items() if i != THREE}
    for member in others.values():
        for message in complaints.values():
            member.receive_complaints(message)
    confirmations = [m.finish_complaints() for m in others.values()]
    for member in others.values():
        for confirmation in confirmations:
            member.receive_confirmation(confirmation)
    outputs = {i: m.finish() for i, m in others.items()}
    for output in outputs.values():
        (verdict,) = output.disqualified
        assert verdict.identifier == THREE
        assert verdict.reason is DisqualificationReason.FALSE_COMPLAINT
        assert str(verdict) == (
            "member 3: made a false complaint (a complaint where the share from member 1 is valid)"
        )
    public = outputs[ONE].public_key_package
    assert set(public.verifying_shares) == {ONE, TWO, FOUR}
    keys = {i: o.key_package for i, o in outputs.items()}
    assert verify(
        public.group_public_key.encoding,
        MESSAGE,
        sign_with(keys, public, [ONE, TWO, FOUR], MESSAGE, seeded(2)),
    )


def test_complaints_are_judged_on_their_evidence() -> None:
    members = _members()
    packages = _through_round1(members)
    member_one = members[ONE]
    sent = {s.recipient: s for s in member_one.finish_round1()}
    commitment_one = packages[ONE].commitment
    to_two = sent[TWO]
    bad = Round2Share.signed(SESSION, ONE, TWO, to_two.share + SCALAR_ONE, KEYS[0])
    forged = Round2Share.signed(SESSION, ONE, TWO, to_two.share + SCALAR_ONE, KEYS[1])
    verdicts = [
        judge_complaint(PARAMS, TWO, Complaint(bad), commitment_one),
        judge_complaint(PARAMS, TWO, Complaint(to_two), commitment_one),
        judge_complaint(PARAMS, TWO, Complaint(forged), commitment_one),
        judge_complaint(PARAMS, THREE, Complaint(bad), commitment_one),
        judge_complaint(PARAMS, TWO, Complaint(bad), None),
    ]
    assert [str(v) for v in verdicts] == [
        "member 1: sent a share that fails its commitments (its share to member 2 fails its "
        "commitments)",
        "member 2: made a false complaint (a complaint where the share from member 1 is valid)",
        "member 2: made a false complaint (a complaint where its evidence is not signed by the "
        "accused member 1)",
        "member 3: made a false complaint (a complaint where its evidence is a share sent to "
        "someone else)",
        "member 2: made a false complaint (a complaint where member 1 cannot be accused)",
    ]


def test_an_invalid_proof_of_knowledge_disqualifies_in_round_one() -> None:
    members = _members()
    packages = {i: m.start() for i, m in members.items()}
    honest = packages[TWO]
    # Member 2 publishes someone else's constant term with its own proof: a rogue key.
    stolen = VssCommitment(
        (packages[ONE].commitment.public_key, *honest.commitment.coefficients[1:])
    )
    rogue = Round1Package.signed(SESSION, TWO, stolen, honest.proof, KEYS[1])
    verdict = members[ONE].receive_round1(rogue)
    assert verdict is not None
    assert str(verdict) == (
        "member 2: invalid round-1 package (the proof of knowledge of its secret does not verify)"
    )
    # A proof replayed from another member is bound to that member's identifier.
    replayed = Round1Package.signed(
        SESSION, THREE, packages[ONE].commitment, packages[ONE].proof, KEYS[2]
    )
    assert members[ONE].receive_round1(replayed) is not None
    short = Round1Package.signed(
        SESSION,
        FOUR,
        VssCommitment(packages[FOUR].commitment.coefficients[:2]),
        packages[FOUR].proof,
        KEYS[3],
    )
    verdict_four = members[ONE].receive_round1(short)
    assert verdict_four is not None
    assert verdict_four.detail == "2 coefficient commitments instead of 3"
    # Three of four disqualified: the threshold of 3 cannot be met.
    with pytest.raises(NotEnoughQualified) as info:
        members[ONE].finish_round1()
    assert info.value.culprits == (2, 3, 4)
    assert [d.identifier for d in members[ONE].disqualified] == [TWO, THREE, FOUR]


def test_a_member_disqualified_in_round_one_is_ignored_afterwards() -> None:
    keys = identities(4, seed=5)
    params = dkg_params(keys, 2)
    rng = seeded(6)
    members = {as_identifier(n + 1): DkgParticipant(params, k, rng=rng) for n, k in enumerate(keys)}
    packages = {i: m.start() for i, m in members.items()}
    bad_proof = ProofOfKnowledge(packages[FOUR].proof.commitment, Scalar.from_int(1))
    packages[FOUR] = Round1Package.signed(
        params.session_id, FOUR, packages[FOUR].commitment, bad_proof, keys[3]
    )
    for identifier, member in members.items():
        if identifier != FOUR:
            for package in packages.values():
                member.receive_round1(package)
    outgoing = {i: members[i].finish_round1() for i in (ONE, TWO, THREE)}
    assert members[ONE].qualified == (ONE, TWO, THREE)
    assert {s.recipient for s in outgoing[ONE]} == {TWO, THREE}
    late = Round2Share.signed(params.session_id, FOUR, ONE, Scalar.from_int(3), keys[3])
    with pytest.raises(UnexpectedMessage) as info:
        members[ONE].receive_share(late)
    assert str(info.value) == "a share from member 4, who is not qualified"
    assert info.value.culprits == (4,)


def test_every_member_must_confirm_the_same_key() -> None:
    members = _members()
    confirmations = _through_complaints(members)
    assert len({c.digest for c in confirmations.values()}) == 1
    liar = Confirmation.signed(SESSION, FOUR, bytes(64), KEYS[3])
    one = members[ONE]
    for identifier, confirmation in confirmations.items():
        one.receive_confirmation(liar if identifier == FOUR else confirmation)
    with pytest.raises(ConfirmationMismatch) as info:
        one.finish()
    assert str(info.value) == (
        "members [4] confirmed another group key or qualified set than member 1"
    )
    assert info.value.culprits == (4,)
    assert one.phase is DkgPhase.CONFIRMATION


def test_phases_cannot_be_skipped_or_finished_early() -> None:
    members = _members()
    one = members[ONE]
    with pytest.raises(PhaseError) as early:
        one.finish_round1()
    assert str(early.value) == (
        "finish_round1 belongs to phase 'collecting round-1 packages' but member 1 is in phase "
        "'new'"
    )
    packages = {i: m.start() for i, m in members.items()}
    with pytest.raises(PhaseError):
        one.start()
    one.receive_round1(packages[TWO])
    with pytest.raises(MissingMessages) as missing:
        one.finish_round1()
    assert str(missing.value) == "member 1 still lacks round-1 packages from members [3, 4]"
    assert missing.value.culprits == (3, 4)
    # A step that raised changed nothing: delivering the rest lets the round finish.
    one.receive_round1(packages[THREE])
    one.receive_round1(packages[FOUR])
    assert len(one.finish_round1()) == 3
    with pytest.raises(MissingMessages) as no_shares:
        one.finish_round2()
    assert str(no_shares.value) == "member 1 still lacks round-2 shares from members [2, 3, 4]"


def test_messages_of_another_session_or_stranger_are_refused() -> None:
    members = _members()
    packages = {i: m.start() for i, m in members.items()}
    other_params = dkg_params(KEYS, 3, session=b"\x07" * 32)
    other = DkgParticipant(other_params, KEYS[1], rng=seeded(3)).start()
    with pytest.raises(WrongSession) as info:
        members[ONE].receive_round1(other)
    assert str(info.value) == "a round-1 package from member 2 belongs to another DKG session"
    stranger = Round1Package.signed(
        SESSION, as_identifier(9), packages[TWO].commitment, packages[TWO].proof, KEYS[1]
    )
    with pytest.raises(UnknownParticipant) as unknown:
        members[ONE].receive_round1(stranger)
    assert str(unknown.value) == "a round-1 package from 9, who is not a member of this session"


def test_forged_and_conflicting_messages() -> None:
    members = _members()
    packages = {i: m.start() for i, m in members.items()}
    one = members[ONE]
    forged = Round1Package.signed(
        SESSION, TWO, packages[TWO].commitment, packages[TWO].proof, KEYS[2]
    )
    with pytest.raises(InvalidMessageSignature) as info:
        one.receive_round1(forged)
    assert str(info.value) == (
        "a round-1 package claiming to be from member 2 is not signed by its identity key"
    )
    assert info.value.culprits == () and info.value.claimed_sender == 2
    assert one.receive_round1(packages[TWO]) is None
    assert one.receive_round1(packages[TWO]) is None  # a duplicate is harmless
    assert one.receive_round1(packages[ONE]) is None  # so is its own package
    second = DkgParticipant(PARAMS, KEYS[1], rng=seeded(8)).start()
    with pytest.raises(ConflictingMessage) as conflict:
        one.receive_round1(second)
    assert str(conflict.value) == "member 2 sent two different round-1 packages"
    assert conflict.value.culprits == (2,)


def test_shares_must_be_addressed_to_the_receiver() -> None:
    members = _members()
    _through_round1(members)
    from_two = {s.recipient: s for s in members[TWO].finish_round1()}
    members[ONE].finish_round1()
    with pytest.raises(UnexpectedMessage) as info:
        members[ONE].receive_share(from_two[THREE])
    assert str(info.value) == "a share from member 2 for member 3 reached member 1"
    tampered = dataclasses.replace(from_two[ONE], share=from_two[ONE].share + SCALAR_ONE)
    with pytest.raises(InvalidMessageSignature):
        members[ONE].receive_share(tampered)
    members[ONE].receive_share(from_two[ONE])
    members[ONE].receive_share(from_two[ONE])  # a duplicate is harmless


def test_excluded_member_learns_it() -> None:
    keys = identities(3, seed=11)
    params = dkg_params(keys, 2)
    run = run_dkg(params, keys, seeded(12), bad_share=(ONE, THREE))
    assert set(run.outputs) == {TWO, THREE}
    assert isinstance(run.failures[ONE], ExcludedFromGroup)


# Parameters and wire formats --------------------------------------------------------------


def test_parameters_are_validated() -> None:
    members = [DkgMember(as_identifier(n + 1), k.public) for n, k in enumerate(KEYS)]
    with pytest.raises(InvalidParameters) as session:
        DkgParams.create(b"short", 3, members)
    assert str(session.value) == "a session id is 32 bytes, got 5"
    with pytest.raises(InvalidParameters) as threshold:
        DkgParams.create(SESSION, 5, members)
    assert str(threshold.value) == "threshold must satisfy 2 <= t <= n, got t=5, n=4"
    with pytest.raises(DuplicateIdentifier) as duplicate:
        DkgParams.create(SESSION, 2, [*members, members[1]])
    assert str(duplicate.value) == "member 2 appears twice"
    shared_key = [members[0], DkgMember(as_identifier(2), members[0].identity_key)]
    with pytest.raises(InvalidParameters) as shared:
        DkgParams.create(SESSION, 2, shared_key)
    assert str(shared.value) == "member 2 shares its identity key with another member"
    small_order = DkgMember(as_identifier(5), bytes(32))
    with pytest.raises(InvalidParameters) as weak:
        DkgParams.create(SESSION, 2, [*members, small_order])
    assert str(weak.value) == "member 5: identity key is unusable: a small-order point"
    with pytest.raises(UnknownParticipant) as outsider:
        DkgParticipant(PARAMS, Keypair.from_seed(bytes(32)))
    assert str(outsider.value) == "this identity key is not a member of this DKG session"


def test_messages_round_trip_and_keep_shares_out_of_repr() -> None:
    members = _members()
    packages = _through_round1(members)
    shares = members[ONE].finish_round1()
    assert Round1Package.decode(packages[ONE].encode()) == packages[ONE]
    assert Round2Share.decode(shares[0].encode()) == shares[0]
    assert shares[0].share.encoding.hex() not in repr(shares[0])
    complaint = ComplaintsMessage.signed(SESSION, TWO, (Complaint(shares[0]),), KEYS[1])
    assert ComplaintsMessage.decode(complaint.encode()) == complaint
    confirmation = Confirmation.signed(SESSION, ONE, bytes(range(64)), KEYS[0])
    assert Confirmation.decode(confirmation.encode()) == confirmation
    assert "DkgParticipant(identifier=1, phase=ROUND2)" == repr(members[ONE])


def test_shares_travel_sealed_to_their_recipient() -> None:
    members = _members()
    _through_round1(members)
    share = next(s for s in members[ONE].finish_round1() if s.recipient == TWO)
    box = seal_share(share, PARAMS.identity_key(TWO), rng=seeded(20))
    assert share.share.encoding not in box
    assert open_share(box, KEYS[1]) == share
    with pytest.raises(SealingError) as wrong:
        open_share(box, KEYS[2])
    assert str(wrong.value) == (
        "sealed share from member 1 to member 2 does not open with this identity key (wrong "
        "recipient or tampered)"
    )
    flipped = bytearray(box)
    flipped[-1] ^= 1
    with pytest.raises(SealingError):
        open_share(bytes(flipped), KEYS[1])
    relabelled = box[:32] + (3).to_bytes(32, "little") + box[64:]
    with pytest.raises(SealingError):
        open_share(relabelled, KEYS[1])
    with pytest.raises(SealingError) as zero_sender:
        open_share(box[:32] + bytes(32) + box[64:], KEYS[1])
    assert str(zero_sender.value) == (
        "malformed sealed share: sealed share: sender: identifier 0 is not allowed "
        "(identifiers are 1..L-1)"
    )
    with pytest.raises(SealingError) as bad_key:
        seal_share(share, bytes(32), rng=seeded(21))
    assert str(bad_key.value) == "not a usable Ed25519 identity key for member 2"
    with pytest.raises(SealingError) as short:
        open_share(box[:40], KEYS[1])
    assert str(short.value) == (
        "malformed sealed share: sealed share: truncated, 32 bytes needed at offset 32 of 40"
    )


def test_in_process_run_is_reproducible_from_its_randomness() -> None:
    keys = identities(3, seed=21)
    params = dkg_params(keys, 2)
    first = run_in_process(params, keys, rng=random.Random(4).randbytes)
    second = run_in_process(params, keys, rng=random.Random(4).randbytes)
    assert first[ONE].public_key_package == second[ONE].public_key_package


# Asynchronous delivery ----------------------------------------------------------------------

DkgMessage = Round1Package | Round2Share | ComplaintsMessage | Confirmation


def _deliver(member: DkgParticipant, message: DkgMessage) -> None:
    if isinstance(message, Round1Package):
        member.receive_round1(message)
    elif isinstance(message, Round2Share):
        member.receive_share(message)
    elif isinstance(message, ComplaintsMessage):
        member.receive_complaints(message)
    else:
        member.receive_confirmation(message)


@given(committees())
@settings(max_examples=10, deadline=None)
def test_any_delivery_order_completes(committee: tuple[int, int, int]) -> None:
    """Members advance whenever they can and messages arrive in any order (each at most once,
    some twice): no message is ever refused as out of phase, and all agree at the end."""
    t, n, seed = committee
    choices = random.Random(seed)
    keys = identities(n, seed)
    params = dkg_params(keys, t)
    members = {
        params.identifier_of(k.public): DkgParticipant(params, k, rng=seeded(seed)) for k in keys
    }
    in_flight: list[tuple[Identifier, DkgMessage]] = []
    outputs = {}

    def broadcast(sender: Identifier, message: DkgMessage) -> None:
        in_flight.extend((i, message) for i in members if i != sender)

    def advance(identifier: Identifier) -> None:
        member = members[identifier]
        try:
            if member.phase is DkgPhase.NEW:
                broadcast(identifier, member.start())
            elif member.phase is DkgPhase.ROUND1:
                in_flight.extend((s.recipient, s) for s in member.finish_round1())
            elif member.phase is DkgPhase.ROUND2:
                broadcast(identifier, member.finish_round2())
            elif member.phase is DkgPhase.COMPLAINTS:
                broadcast(identifier, member.finish_complaints())
            elif member.phase is DkgPhase.CONFIRMATION:
                outputs[identifier] = member.finish()
        except MissingMessages:
            pass

    while len(outputs) < n:
        if in_flight and choices.random() < 0.7:
            recipient, message = in_flight.pop(choices.randrange(len(in_flight)))
            _deliver(members[recipient], message)
            if choices.random() < 0.1:
                _deliver(members[recipient], message)  # a duplicate, maybe late
        else:
            advance(choices.choice(list(members)))
    assert len({o.public_key_package for o in outputs.values()}) == 1


def test_early_and_late_messages() -> None:
    members = _members()
    one, two = members[ONE], members[TWO]
    packages = {TWO: two.start()}
    assert one.receive_round1(packages[TWO]) is None  # before member 1 has even started
    packages.update({i: members[i].start() for i in (ONE, THREE, FOUR)})
    for member in members.values():
        for package in packages.values():
            member.receive_round1(package)
    # Member 2 is ahead: its share reaches member 1 before member 1 finishes round 1.
    shares_from_two = {s.recipient: s for s in two.finish_round1()}
    one.receive_share(shares_from_two[ONE])
    assert one.phase is DkgPhase.ROUND1
    one.finish_round1()
    assert one.receive_round1(packages[TWO]) is None  # a late duplicate is ignored
    confirmation = Confirmation.signed(SESSION, TWO, bytes(64), KEYS[1])
    with pytest.raises(PhaseError) as too_early:
        one.receive_confirmation(confirmation)
    assert str(too_early.value) == (
        "receive_confirmation belongs to phase 'collecting complaints' or 'collecting "
        "confirmations' but member 1 is in phase 'collecting round-2 shares'"
    )
