"""Platform wallets end to end in one process: several wallet services talking through an
in-memory router, over one in-memory chain that runs the `wallets` module."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import rlp
import trio
import trio.lowlevel
import trio.testing

from chain import codec
from chain.blocks import Call, UnsignedTransaction, tx_hash
from chain.primitives import AccountId, Hash32
from chain.runtime import system, wallets
from chain.signature import verify
from chain.state import StateReader
from node.wallet_member import TRANSFER
from node.wallet_messages import (
    Refused,
    RequestKind,
    WalletRequest,
    decode_answer,
    encode_answer,
)
from node.wallet_service import (
    CreatedWallet,
    DkgFailed,
    MemberUnreachable,
    NotEnoughSigners,
    UnknownWallet,
    WalletService,
)
from node.wallet_shares import ShareStore
from tests.factories import ALICE, CHARLIE, transfer_call
from tests.unit.test_towers import NODE_KEYS, OPERATORS, TowerChain
from tests.unit.test_wallets import wallet_chain
from wallet.frost.dkg_messages import Round2Share
from wallet.frost.group import Scalar
from wallet.frost.identifier import as_identifier
from wallet.frost.share_box import open_share, seal_share
from wallet.keys import Keypair

T = TypeVar("T")
LOGIN = Keypair.from_seed(b"\x61" * 32)
DEST = CHARLIE.public
COORDINATOR = 3
"""Node 3 is standby, outside the committee (nodes 0, 1 and 2): it only relays."""


class LedgerFake:
    """The chain as the wallet service sees it: each submitted transaction is validated and
    executed in a block of its own at once."""

    def __init__(self, chain: TowerChain) -> None:
        self.chain = chain
        self.submitted: list[bytes] = []

    @property
    def genesis_hash(self) -> Hash32:
        return self.chain.genesis_hash

    def state(self) -> StateReader:
        return self.chain.state

    def next_nonce(self, account: AccountId) -> int:
        return system.account(self.chain.state, account).nonce

    def submit(self, encoded: bytes) -> Hash32:
        self.chain.runtime.validate_transaction(self.chain.state, encoded, self.chain.env())
        execution = self.chain.execute([encoded])
        (outcome,) = execution.outcomes
        assert outcome.error is None, outcome.error
        self.submitted.append(encoded)
        return tx_hash(encoded)

    def submit_signed(self, keypair: Keypair, call: Call) -> Hash32:
        nonce = self.next_nonce(keypair.public)
        return self.submit(self.chain.sign(keypair, call, nonce=nonce))


class Router:
    """Delivers requests between services in memory; members can be down or silent."""

    def __init__(self) -> None:
        self.services: dict[AccountId, WalletService] = {}
        self.down: set[AccountId] = set()
        self.silent: set[AccountId] = set()

    async def request(self, node_id: AccountId, data: bytes, *, timeout: float) -> bytes:  # noqa: ASYNC109
        await trio.lowlevel.checkpoint()
        if node_id in self.down:
            raise MemberUnreachable("connection refused")
        if node_id in self.silent:
            await trio.sleep_forever()
        return self.services[node_id].member.handle(data)


class Network:
    def __init__(self, tmp_path: Path) -> None:
        self.chain = wallet_chain()
        self.ledger = LedgerFake(self.chain)
        self.router = Router()
        self.paths = [tmp_path / f"node{i}" for i in range(4)]
        for i, key in enumerate(NODE_KEYS):
            service = WalletService(
                identity=key,
                ledger=self.ledger,
                shares=ShareStore(self.paths[i], key.seed),
                transport=self.router,
                payer=OPERATORS[i],
                timeout=5.0,
            )
            self.router.services[key.public] = service
        self.committee = sorted(k.public for k in NODE_KEYS[:3])

    def service(self, i: int) -> WalletService:
        return self.router.services[NODE_KEYS[i].public]

    def create(self) -> CreatedWallet:
        return run(lambda: self.service(COORDINATOR).create_wallet(LOGIN.public))

    def fund(self, group_key: bytes, amount: int = 10**15) -> None:
        self.ledger.submit_signed(ALICE, transfer_call(AccountId(group_key), amount))

    def login_signature(self, group_key: bytes, amount: int, signer: Keypair = LOGIN) -> bytes:
        nonce = self.ledger.next_nonce(AccountId(group_key))
        call = TRANSFER.call(dest=DEST, amount=amount)
        unsigned = UnsignedTransaction(self.chain.genesis_hash, group_key, nonce, 0, call)
        return signer.sign(unsigned.signing_payload())

    def balance(self, who: bytes) -> int:
        return system.account(self.chain.state, AccountId(who)).free


def run(make: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await make()

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def member_line(node_id: bytes, text: str) -> str:
    return f"member 0x{node_id.hex()}: {text}"


@pytest.fixture
def net(tmp_path: Path) -> Network:
    return Network(tmp_path)


def test_dkg_registers_the_wallet_and_members_keep_encrypted_shares(net: Network) -> None:
    created = net.create()
    assert created.committee == tuple(net.committee)
    assert created.threshold == 2
    record = wallets.get_wallet(net.chain.state, created.group_key)
    assert record == wallets.WalletRecord(tuple(net.committee), 2, LOGIN.public, net.chain.number)  # type: ignore[arg-type]
    for i in range(3):
        store = ShareStore(net.paths[i], NODE_KEYS[i].seed)
        stored = store.load(created.group_key)
        assert stored is not None
        raw = store.path(created.group_key).read_bytes()
        assert stored.key_package.secret_share.encoding not in raw
        assert stored.key_package.encode() not in raw
        assert "secret_share" not in repr(stored)
    assert not net.paths[COORDINATOR].exists()
    assert [net.service(i).member.sessions_in_flight() for i in range(4)] == [(0, 0)] * 4


def test_transfer_signed_by_two_of_three_with_one_member_down(net: Network) -> None:
    created = net.create()
    group = created.group_key
    net.fund(group)
    before = net.balance(DEST)
    net.router.down = {net.committee[1]}
    signature = net.login_signature(group, 1234)
    run(lambda: net.service(0).transfer(group, DEST, 1234, signature))
    assert net.balance(DEST) == before + 1234
    sent = rlp.decode(net.ledger.submitted[-1])
    assert sent[1] == group
    unsigned = UnsignedTransaction(
        net.chain.genesis_hash, group, 0, 0, TRANSFER.call(dest=DEST, amount=1234)
    )
    assert verify(group, unsigned.signing_payload(), sent[5])
    # The coordinator may be any node, member or not; the next transfer uses the next nonce.
    net.router.down = {net.committee[0]}
    signature = net.login_signature(group, 5)
    run(lambda: net.service(COORDINATOR).transfer(group, DEST, 5, signature))
    assert net.balance(DEST) == before + 1239


def test_a_silent_member_is_skipped_after_the_timeout(net: Network) -> None:
    group = net.create().group_key
    net.fund(group)
    before = net.balance(DEST)
    net.router.silent = {net.committee[2]}
    signature = net.login_signature(group, 77)
    run(lambda: net.service(COORDINATOR).transfer(group, DEST, 77, signature))
    assert net.balance(DEST) == before + 77


def refusals(net: Network, text: str) -> str:
    return "; ".join(member_line(m, f"refused: {text}") for m in net.committee)


BAD_LOGIN = (
    "BadLoginSignature: the login signature is not the wallet login key's signature of this "
    "transaction"
)


def test_members_refuse_a_forged_login_signature(net: Network) -> None:
    group = net.create().group_key
    net.fund(group)
    submitted = len(net.ledger.submitted)
    forged = net.login_signature(group, 1234, signer=Keypair.from_seed(b"\x62" * 32))
    with pytest.raises(NotEnoughSigners) as info:
        run(lambda: net.service(COORDINATOR).transfer(group, DEST, 1234, forged))
    assert str(info.value) == (
        f"0 of 3 committee members agreed to sign, 2 needed: {refusals(net, BAD_LOGIN)}"
    )
    assert len(net.ledger.submitted) == submitted


def test_members_refuse_another_amount_than_the_login_key_signed(net: Network) -> None:
    group = net.create().group_key
    net.fund(group)
    submitted = len(net.ledger.submitted)
    signed_for_ten = net.login_signature(group, 10)
    with pytest.raises(NotEnoughSigners) as info:
        run(lambda: net.service(0).transfer(group, DEST, 10_000, signed_for_ten))
    assert str(info.value) == (
        f"0 of 3 committee members agreed to sign, 2 needed: {refusals(net, BAD_LOGIN)}"
    )
    assert len(net.ledger.submitted) == submitted


def test_fewer_than_threshold_members_fails_clearly_and_submits_nothing(net: Network) -> None:
    group = net.create().group_key
    net.fund(group)
    submitted = len(net.ledger.submitted)
    net.router.down = {net.committee[0], net.committee[2]}
    signature = net.login_signature(group, 1)
    with pytest.raises(NotEnoughSigners) as info:
        run(lambda: net.service(COORDINATOR).transfer(group, DEST, 1, signature))
    down = "; ".join(
        member_line(m, "unreachable: connection refused")
        for m in (net.committee[0], net.committee[2])
    )
    assert str(info.value) == f"1 of 3 committee members agreed to sign, 2 needed: {down}"
    assert len(net.ledger.submitted) == submitted


def test_unknown_wallet_and_failed_dkg(net: Network) -> None:
    nobody = LOGIN.public
    with pytest.raises(UnknownWallet) as unknown:
        run(lambda: net.service(0).transfer(nobody, DEST, 1, b"\x00" * 64))
    assert str(unknown.value) == f"no wallet 0x{nobody.hex()} is registered"
    net.router.down = {net.committee[1]}
    with pytest.raises(DkgFailed) as failed:
        net.create()
    assert str(failed.value) == (
        "the wallet DKG failed at the start: "
        + member_line(net.committee[1], "unreachable: connection refused")
    )
    assert len(net.ledger.submitted) == 0


def test_a_member_refuses_to_sign_another_message_than_it_checked(net: Network) -> None:
    """A dishonest coordinator that swaps the message after round one gets nothing."""
    from wallet.frost import SigningCommitments, SigningPackage

    group = net.create().group_key
    member = net.service(0).member
    session = b"\x07" * 32
    signature = net.login_signature(group, 3)
    unsigned = UnsignedTransaction(
        net.chain.genesis_hash, group, 0, 0, TRANSFER.call(dest=DEST, amount=3)
    )
    commit = WalletRequest(RequestKind.SIGN_COMMIT, session, (rlp.encode(unsigned), signature))
    first = decode_answer(member.handle(commit.encode()))
    assert isinstance(first, list)
    own = SigningCommitments.decode(first[0])  # type: ignore[arg-type]
    other = decode_answer(
        net.service(1).member.handle(
            WalletRequest(RequestKind.SIGN_COMMIT, b"\x08" * 32, commit.items).encode()
        )
    )
    assert isinstance(other, list)
    theirs = SigningCommitments.decode(other[0])  # type: ignore[arg-type]
    message = b"pay the coordinator instead"
    swapped = SigningPackage.create(message, (own, theirs))
    share = WalletRequest(RequestKind.SIGN_SHARE, session, (swapped.encode(),))
    with pytest.raises(Refused) as info:
        decode_answer(member.handle(share.encode()))
    identifier = net.committee.index(NODE_KEYS[0].public) + 1
    assert str(info.value) == (
        f"SigningFailed: participant {identifier} committed for another message than the one it "
        f"is now asked to sign (sha256 {hashlib.sha256(message).hexdigest()[:16]})"
    )
    assert member.sessions_in_flight() == (0, 0)


class CheatingRouter(Router):
    """Delivers like Router, but `cheater` sends `victim` a wrong round-two share that it signs
    properly, as a dishonest member would (the test can open the box: it holds every key)."""

    def __init__(self, base: Router, cheater: Keypair, victim: Keypair) -> None:
        super().__init__()
        self.services = base.services
        self.cheater, self.victim = cheater, victim

    async def request(self, node_id: AccountId, data: bytes, *, timeout: float) -> bytes:  # noqa: ASYNC109
        answer = await super().request(node_id, data, timeout=timeout)
        if (
            node_id != self.cheater.public
            or WalletRequest.decode(data).kind is not RequestKind.DKG_ROUND1
        ):
            return answer
        members = sorted(k.public for k in NODE_KEYS[:3])
        victim_id = as_identifier(members.index(self.victim.public) + 1)
        boxes = []
        for recipient_raw, box in decode_answer(answer):  # type: ignore[misc]
            if codec.uint(recipient_raw, "recipient") == victim_id:
                share = open_share(box, self.victim)
                bad = Round2Share.signed(
                    share.session_id, share.sender, share.recipient,
                    share.share + Scalar.from_int(1), self.cheater,
                )  # fmt: skip
                box = seal_share(bad, self.victim.public)
            boxes.append([recipient_raw, box])
        return encode_answer(boxes)


def test_a_member_sending_a_bad_share_is_disqualified_and_the_wallet_still_works(
    net: Network,
) -> None:
    cheater, victim = NODE_KEYS[0], NODE_KEYS[1]
    router = CheatingRouter(net.router, cheater, victim)
    for service in router.services.values():
        service._transport = router
    created = net.create()
    group = created.group_key
    record = wallets.get_wallet(net.chain.state, group)
    assert record is not None and record.threshold == 2
    # The victim's complaint proved the bad share: the cheater holds no share of the wallet,
    # the two honest members do.
    shares = [ShareStore(net.paths[i], NODE_KEYS[i].seed).load(group) for i in range(3)]
    assert shares[0] is None and shares[1] is not None and shares[2] is not None
    net.fund(group)
    before = net.balance(DEST)
    signature = net.login_signature(group, 77)
    run(lambda: net.service(COORDINATOR).transfer(group, DEST, 77, signature))
    assert net.balance(DEST) == before + 77
    signing = net.service(COORDINATOR).signing(tx_hash(net.ledger.submitted[-1]))
    assert signing is not None and cheater.public not in signing.signers
