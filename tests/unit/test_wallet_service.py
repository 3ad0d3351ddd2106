"""Platform wallets end to end in one process: several wallet services talking through an
in-memory router that tells each member which node a request came from, over one in-memory
chain that runs the `wallets` module. A wallet is asked for with `wallets.request`, paid by
its login key; the request's coordinator runs the DKG once the request is final."""

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
from chain.keys import Keypair
from chain.primitives import AccountId, Hash32
from chain.runtime import system, wallets
from chain.signature import verify
from chain.state import StateReader, TrieState
from p2p.errors import DialFailed, P2PError, RequestFailed
from p2p.identity import PeerId
from tests.factories import ALICE, CHARLIE, transfer_call
from tests.unit.test_towers import NODE_KEYS, OPERATORS, TowerChain
from tests.unit.test_wallets import wallet_chain
from wallet.committee import (
    REQUEST,
    CreatedWallet,
    DkgFailed,
    P2PWalletTransport,
    SigningFailed,
    TooFewMembersAnswered,
    UnknownWallet,
    WalletService,
    node_id_of,
    peer_id_of,
)
from wallet.frost.dkg_messages import Round2Share
from wallet.frost.group import Scalar
from wallet.frost.identifier import as_identifier
from wallet.frost.share_box import open_share, seal_share
from wallet.member import MAX_DKG_SESSIONS, TRANSFER, follow_finalized
from wallet.messages import (
    PROTOCOL_WALLET,
    Refused,
    RequestKind,
    WalletRequest,
    decode_answer,
    encode_answer,
)
from wallet.shares import ShareStore
from wallet.transport import Handler

T = TypeVar("T")
LOGIN = Keypair.from_seed(b"\x61" * 32)
DEST = CHARLIE.public
STRANGER = 3
"""Node 3 is registered but standby, outside the committee (nodes 0, 1 and 2)."""


class LedgerFake:
    """The chain as the wallet service sees it: each submitted transaction is validated and
    executed in a block of its own at once, and final at once unless `hold_finality`."""

    def __init__(self, chain: TowerChain) -> None:
        self.chain = chain
        self.submitted: list[bytes] = []
        self.hold_finality = False
        self._final = (chain.root, chain.number)
        self.heads: list[trio.MemorySendChannel[object]] = []

    @property
    def genesis_hash(self) -> Hash32:
        return self.chain.genesis_hash

    def state(self) -> StateReader:
        return self.chain.state

    def finalized_state(self) -> StateReader:
        return TrieState(self.chain.nodes, self._finalized()[0])

    @property
    def finalized_number(self) -> int:
        return self._finalized()[1]

    def _finalized(self) -> tuple[Hash32, int]:
        if not self.hold_finality:
            self._final = (self.chain.root, self.chain.number)
        return self._final

    def finalize(self) -> None:
        """Finality catches up with the chain, and the followers hear of it."""
        self.hold_finality = False
        for send in self.heads:
            send.send_nowait(self.chain.number)

    def finalized_heads(self) -> trio.MemoryReceiveChannel[object]:
        send, receive = trio.open_memory_channel[object](64)
        self.heads.append(send)
        return receive

    def in_pool(self, tx_hash: Hash32) -> bool:
        return False

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


class ConnectionRefused(RequestFailed):
    """What the in-memory network answers for a node that is down."""

    def __init__(self) -> None:
        P2PError.__init__(self, "connection refused")


class Router:
    """Delivers requests between services in memory, each as coming from its sender's node (as
    the p2p host does: the peer id is the node key); members can be down or silent."""

    def __init__(self) -> None:
        self.services: dict[AccountId, WalletService] = {}
        self.handlers: dict[tuple[AccountId, str], Handler] = {}
        self.down: set[AccountId] = set()
        self.silent: set[AccountId] = set()

    def p2p(self, node_id: AccountId) -> RouterP2P:
        return RouterP2P(self, node_id)

    def transport(self, sender: AccountId) -> P2PWalletTransport:
        """The committee's transport over this node's end of the in-memory network: members
        are all connected, so none is dialled (none has an address)."""
        return P2PWalletTransport(self.p2p(sender), lambda node_id: None)

    async def deliver(
        self, sender: AccountId, node_id: AccountId, data: bytes, protocol: str = PROTOCOL_WALLET
    ) -> bytes:
        await trio.lowlevel.checkpoint()
        if node_id in self.down:
            raise ConnectionRefused()
        if node_id in self.silent:
            await trio.sleep_forever()
        return await self.handlers[node_id, protocol](peer_id_of(sender), data)


class RouterP2P:
    """One node's end of the in-memory network, as the wallet committee uses the p2p host."""

    def __init__(self, router: Router, node_id: AccountId) -> None:
        self.router = router
        self.node_id = node_id
        self.penalties: list[tuple[PeerId, float, str]] = []

    def register_protocol(
        self,
        name: str,
        handler: Handler,
        *,
        max_request_bytes: int,
        max_response_bytes: int,
        timeout: float,
        max_concurrent: int | None = None,
    ) -> None:
        self.router.handlers[self.node_id, name] = handler

    async def request(
        self,
        peer_id: PeerId,
        name: str,
        data: bytes,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> bytes:
        node_id = node_id_of(peer_id)
        assert node_id is not None
        return await self.router.deliver(self.node_id, node_id, data, name)

    async def connect(self, address: str) -> PeerId:
        raise DialFailed(f"{address}: no dialling in memory")

    def penalize(self, peer_id: PeerId, amount: float, reason: str) -> None:
        self.penalties.append((peer_id, amount, reason))


class Network:
    def __init__(self, tmp_path: Path) -> None:
        self.chain = wallet_chain(funded=(LOGIN,))
        self.ledger = LedgerFake(self.chain)
        self.router = Router()
        self.paths = [tmp_path / f"node{i}" for i in range(4)]
        for i, key in enumerate(NODE_KEYS):
            service = WalletService(
                identity=key,
                ledger=self.ledger,
                shares=ShareStore(self.paths[i], key.seed),
                transport=self.router.transport(key.public),
                payer=OPERATORS[i],
                timeout=5.0,
            )
            service.register(self.router.p2p(key.public))
            self.router.services[key.public] = service
        self.committee = sorted(k.public for k in NODE_KEYS[:3])

    def service(self, i: int) -> WalletService:
        return self.router.services[NODE_KEYS[i].public]

    def node(self, node_id: bytes) -> int:
        return next(i for i, k in enumerate(NODE_KEYS) if k.public == node_id)

    def request(self) -> int:
        """LOGIN asks for a wallet (and pays); the request's id."""
        request_id = wallets.next_request_id(self.chain.state)
        self.ledger.submit_signed(LOGIN, REQUEST.call())
        return request_id

    def coordinator(self, request_id: int) -> int:
        return self.node(wallets.coordinator_of(request_id, tuple(self.committee)))  # type: ignore[arg-type]

    def create(self) -> CreatedWallet:
        request_id = self.request()
        return run(lambda: self.service(self.coordinator(request_id)).create(request_id))

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
    request_id = net.request()
    coordinator = net.coordinator(request_id)
    operator = OPERATORS[coordinator].public
    before = net.balance(operator)
    created = run(lambda: net.service(coordinator).create(request_id))
    # The coordinator's operator submitted the registration; its fee came back in full.
    assert net.balance(operator) == before
    assert created.request_id == request_id
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
    assert not net.paths[STRANGER].exists()
    assert [net.service(i).member.sessions_in_flight() for i in range(4)] == [(0, 0)] * 4
    assert wallets.get_request(net.chain.state, request_id) is None


def test_transfer_signed_by_two_of_three_with_one_member_down(net: Network) -> None:
    created = net.create()
    group = created.group_key
    net.fund(group)
    before = net.balance(DEST)
    net.router.down = {net.committee[1]}
    signature = net.login_signature(group, 1234)
    run(lambda: net.service(0).transfer(group, DEST, 1234, signature))
    assert net.balance(DEST) == before + 1234
    assert net.service(0).signing_rounds == {"signed": 1}
    sent = rlp.decode(net.ledger.submitted[-1])
    assert sent[1] == group
    unsigned = UnsignedTransaction(
        net.chain.genesis_hash, group, 0, 0, TRANSFER.call(dest=DEST, amount=1234)
    )
    assert verify(group, unsigned.signing_payload(), sent[5])
    # The coordinator may be any member; the next transfer uses the next nonce.
    net.router.down = {NODE_KEYS[1].public}
    signature = net.login_signature(group, 5)
    run(lambda: net.service(2).transfer(group, DEST, 5, signature))
    assert net.balance(DEST) == before + 1239


def test_members_take_signing_rounds_only_from_members_and_a_stranger_has_one_relay(
    net: Network,
) -> None:
    """A node outside the committee cannot open signing sessions at the members (it would
    fill their stores); it asks a member to coordinate instead, which checks the transaction
    before any round, and the transfer goes through."""
    group = net.create().group_key
    net.fund(group)
    signature = net.login_signature(group, 5)
    unsigned = UnsignedTransaction(
        net.chain.genesis_hash, group, 0, 0, TRANSFER.call(dest=DEST, amount=5)
    )
    commit = WalletRequest(RequestKind.SIGN_COMMIT, b"\x09" * 32, (rlp.encode(unsigned), signature))
    stranger = peer_id_of(NODE_KEYS[STRANGER].public)
    for i in range(3):
        answer = run(lambda: net.service(i).serve(stranger, commit.encode()))  # noqa: B023
        assert refusal(answer) == (
            "NotFromCommittee: a wallet's signing is coordinated by a member of its committee only"
        )
        assert net.service(i).member.sessions_in_flight() == (0, 0)
    # A relay the member can tell is wrong starts no round.
    later = UnsignedTransaction(
        net.chain.genesis_hash, group, 1, 0, TRANSFER.call(dest=DEST, amount=5)
    )
    wrong = [
        ((rlp.encode(later), LOGIN.sign(later.signing_payload())),
         "Malformed: nonce 1 is not the wallet's next nonce 0"),
        ((rlp.encode(unsigned), b"\x00" * 64), BAD_LOGIN),
    ]  # fmt: skip
    for items, why in wrong:
        relay = WalletRequest(RequestKind.SIGN_RELAY, b"\x0a" * 32, items)
        answer = run(lambda: net.service(0).serve_relay(stranger, relay.encode()))  # noqa: B023
        assert refusal(answer) == why
        assert [net.service(i).member.sessions_in_flight() for i in range(3)] == [(0, 0)] * 3
    with pytest.raises(SigningFailed) as forged:
        run(lambda: net.service(STRANGER).transfer(group, DEST, 5, b"\x00" * 64))
    assert str(forged.value) == (
        "the login signature is not the wallet login key's signature of this transaction: no "
        "member was asked"
    )
    before = net.balance(DEST)
    tx = run(lambda: net.service(STRANGER).transfer(group, DEST, 5, signature))
    assert net.balance(DEST) == before + 5
    signing = net.service(STRANGER).signing(tx)
    assert signing is not None and len(signing.signers) == 2


def test_a_peer_sending_what_only_members_send_loses_score(net: Network) -> None:
    penalties: list[tuple[str, float, str]] = []
    member = net.service(0)
    member._penalize = lambda peer, amount, why: penalties.append((peer, amount, why))
    request_id = net.request()
    stranger = peer_id_of(NODE_KEYS[STRANGER].public)
    run(lambda: member.serve(stranger, start_request(request_id)))
    assert penalties == [
        (
            stranger,
            20,
            f"wallet: request {request_id}'s DKG is relayed by its coordinator only",
        )
    ]
    # Not for a request that is merely unknown yet (a member's view may lag).
    run(lambda: member.serve(stranger, start_request(request_id + 1)))
    assert len(penalties) == 1


def test_the_first_t_members_to_commit_sign_and_a_silent_one_is_not_waited_for(
    net: Network,
) -> None:
    group = net.create().group_key
    net.fund(group)
    before = net.balance(DEST)
    coordinator, _, silent = net.committee
    net.router.silent = {silent}
    signature = net.login_signature(group, 77)

    async def timed_transfer() -> tuple[Hash32, float]:
        started = trio.current_time()
        tx = await net.service(net.node(coordinator)).transfer(group, DEST, 77, signature)
        return tx, trio.current_time() - started

    tx, took = run(timed_transfer)
    assert net.balance(DEST) == before + 77
    # The clock is trio's mock one: only waiting for the silent member could move it.
    assert took == 0
    signing = net.service(net.node(coordinator)).signing(tx)
    assert signing is not None
    assert set(signing.signers) == set(net.committee[:2])
    assert signing.skipped == ((silent, "not needed"),)


def test_a_member_that_is_down_is_replaced_by_one_that_answers(net: Network) -> None:
    group = net.create().group_key
    net.fund(group)
    before = net.balance(DEST)
    coordinator, down, last = net.committee
    net.router.down = {down}
    signature = net.login_signature(group, 78)
    tx = run(lambda: net.service(net.node(coordinator)).transfer(group, DEST, 78, signature))
    assert net.balance(DEST) == before + 78
    signing = net.service(net.node(coordinator)).signing(tx)
    assert signing is not None
    assert set(signing.signers) == {coordinator, last}
    ((skipped, why),) = signing.skipped
    # Skipped as unreachable, or as not needed when the round had its two before it failed.
    assert skipped == down and (why.startswith("unreachable") or why == "not needed")


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
    with pytest.raises(TooFewMembersAnswered) as info:
        run(lambda: net.service(2).transfer(group, DEST, 1234, forged))
    assert str(info.value) == (
        f"0 of 3 committee members agreed to sign, 2 needed: {refusals(net, BAD_LOGIN)}"
    )
    assert len(net.ledger.submitted) == submitted


def test_members_refuse_another_amount_than_the_login_key_signed(net: Network) -> None:
    group = net.create().group_key
    net.fund(group)
    submitted = len(net.ledger.submitted)
    signed_for_ten = net.login_signature(group, 10)
    with pytest.raises(TooFewMembersAnswered) as info:
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
    with pytest.raises(TooFewMembersAnswered) as info:
        run(lambda: net.service(0).transfer(group, DEST, 1, signature))
    down = "; ".join(
        member_line(m, "unreachable: connection refused")
        for m in (net.committee[0], net.committee[2])
    )
    assert str(info.value) == f"1 of 3 committee members agreed to sign, 2 needed: {down}"
    assert len(net.ledger.submitted) == submitted
    assert net.service(0).signing_rounds == {"not_enough_signers": 1}


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
    assert len(net.ledger.submitted) == 1  # the request: no registration


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
    coordinator = NODE_KEYS[2].public  # another member
    first = decode_answer(member.handle(coordinator, commit.encode()))
    assert isinstance(first, list)
    own = SigningCommitments.decode(first[0])  # type: ignore[arg-type]
    other = decode_answer(
        net.service(1).member.handle(
            coordinator, WalletRequest(RequestKind.SIGN_COMMIT, b"\x08" * 32, commit.items).encode()
        )
    )
    assert isinstance(other, list)
    theirs = SigningCommitments.decode(other[0])  # type: ignore[arg-type]
    message = b"pay the coordinator instead"
    swapped = SigningPackage.create(message, (own, theirs))
    share = WalletRequest(RequestKind.SIGN_SHARE, session, (swapped.encode(),))
    with pytest.raises(Refused) as info:
        decode_answer(member.handle(coordinator, share.encode()))
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
        self.handlers = base.handlers
        self.cheater, self.victim = cheater, victim

    async def deliver(
        self, sender: AccountId, node_id: AccountId, data: bytes, protocol: str = PROTOCOL_WALLET
    ) -> bytes:
        answer = await super().deliver(sender, node_id, data, protocol)
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
        service._transport = router.transport(service.node_id)
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
    run(lambda: net.service(2).transfer(group, DEST, 77, signature))
    assert net.balance(DEST) == before + 77
    signing = net.service(2).signing(tx_hash(net.ledger.submitted[-1]))
    assert signing is not None and cheater.public not in signing.signers


def start_request(request_id: int, attempt: int = 0) -> bytes:
    session = wallets.dkg_session_id(request_id, attempt)
    items = (codec.encode_uint(request_id), codec.encode_uint(attempt))
    return WalletRequest(RequestKind.DKG_START, session, items).encode()


def refusal(answer: bytes) -> str:
    with pytest.raises(Refused) as info:
        decode_answer(answer)
    return str(info.value)


def test_a_dkg_start_from_a_non_member_peer_is_ignored_and_the_genuine_one_completes(
    net: Network,
) -> None:
    """Strangers (a registered node outside the committee, a key no node has) and a member that
    is not the request's coordinator send the genuine request's start first: every member
    refuses and holds nothing, and the coordinator's DKG then completes."""
    request_id = net.request()
    coordinator = net.coordinator(request_id)
    unknown = Keypair.from_seed(b"\x66" * 32).public
    other_member = next(m for m in net.committee if m != NODE_KEYS[coordinator].public)
    relayed = f"NotFromCommittee: request {request_id}'s DKG is relayed by its coordinator only"
    for sender in (NODE_KEYS[STRANGER].public, unknown, other_member):
        for attempt in (0, 1):
            for member in net.committee:
                answer = net.router.services[member].member.handle(
                    sender, start_request(request_id, attempt)
                )
                assert refusal(answer) == relayed
    assert [net.service(i).member.sessions_in_flight() for i in range(4)] == [(0, 0)] * 4
    created = run(lambda: net.service(coordinator).create(request_id))
    assert wallets.get_wallet(net.chain.state, created.group_key) is not None


class FloodingRouter(Router):
    """Delivers like Router, but before the genuine round one reaches a member, `flood` DKG
    starts reach it first: from a stranger (with sessions of the genuine request and of made-up
    ones), and from the genuine coordinator for requests the chain does not have."""

    def __init__(self, base: Router, stranger: AccountId, coordinator: AccountId) -> None:
        super().__init__()
        self.services = base.services
        self.handlers = base.handlers
        self.stranger, self.coordinator = stranger, coordinator
        self.flood = 2 * MAX_DKG_SESSIONS
        self.answers: list[str] = []
        self.held_during_flood: list[tuple[int, int]] = []

    async def deliver(
        self, sender: AccountId, node_id: AccountId, data: bytes, protocol: str = PROTOCOL_WALLET
    ) -> bytes:
        request = WalletRequest.decode(data)
        if request.kind is RequestKind.DKG_ROUND1:
            member = self.services[node_id].member
            for i in range(self.flood):
                source = self.stranger if i % 2 else self.coordinator
                made_up = 10_000 + i
                self.answers.append(refusal(member.handle(source, start_request(made_up))))
                self.answers.append(refusal(member.handle(self.stranger, start_request(i % 4, i))))
            self.held_during_flood.append(member.sessions_in_flight())
        return await super().deliver(sender, node_id, data, protocol)


def test_a_flood_of_dkg_starts_does_not_evict_a_genuine_one(net: Network) -> None:
    request_id = net.request()
    coordinator = NODE_KEYS[net.coordinator(request_id)].public
    router = FloodingRouter(net.router, NODE_KEYS[STRANGER].public, coordinator)
    for service in router.services.values():
        service._transport = router.transport(service.node_id)
    created = run(lambda: net.router.services[coordinator].create(request_id))
    assert wallets.get_wallet(net.chain.state, created.group_key) is not None
    # Two members got the flood (the coordinator's own member is not asked over the network),
    # each holding only the genuine session meanwhile.
    assert router.held_during_flood == [(1, 0), (1, 0)]
    assert len(router.answers) == 2 * 2 * router.flood
    assert all(a.startswith(("UnknownRequest: ", "NotFromCommittee: ")) for a in router.answers)


def test_live_dkg_sessions_are_never_dropped_for_new_ones(
    net: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the store full of sessions of pending requests, another genuine start is refused
    (its coordinator tries again later) and the sessions held stay."""
    import wallet.member

    monkeypatch.setattr(wallet.member, "MAX_DKG_SESSIONS", 2)
    ids = [net.request() for _ in range(3)]
    member = net.router.services[net.committee[2]].member
    for request_id in ids[:2]:
        coordinator = wallets.coordinator_of(request_id, tuple(net.committee))  # type: ignore[arg-type]
        decode_answer(member.handle(coordinator, start_request(request_id)))
    third = wallets.coordinator_of(ids[2], tuple(net.committee))  # type: ignore[arg-type]
    assert refusal(member.handle(third, start_request(ids[2]))) == (
        "Busy: 2 wallet DKGs are in flight"
    )
    assert member.sessions_in_flight() == (2, 0)


def test_the_coordinator_starts_the_dkg_once_the_request_is_final(net: Network) -> None:
    net.ledger.hold_finality = True
    net.ledger.finalized_number  # finality stops here  # noqa: B018
    before = [net.balance(op.public) for op in OPERATORS[:3]]

    async def main() -> int:
        async with trio.open_nursery() as nursery:
            for i in range(4):
                await nursery.start(net.service(i).run)
            request_id = net.request()
            await trio.sleep(60)
            # In the best chain only: nobody started anything.
            assert wallets.get_request(net.chain.state, request_id) is not None
            assert [net.service(i).member.sessions_in_flight() for i in range(4)] == [(0, 0)] * 4
            net.ledger.finalize()
            for _ in range(120):
                if wallets.wallet_of_request(net.chain.state, request_id) is not None:
                    break
                await trio.sleep(0.5)
            else:
                pytest.fail("the wallet was not registered within 60 s")
            nursery.cancel_scope.cancel()
        return request_id

    request_id = run(main)
    group = wallets.wallet_of_request(net.chain.state, request_id)
    assert group is not None
    record = wallets.get_wallet(net.chain.state, group)
    assert record is not None and record.login_key == LOGIN.public
    assert [net.balance(op.public) for op in OPERATORS[:3]] == before


def test_a_peer_is_known_by_its_node_key() -> None:
    key = NODE_KEYS[0].public
    assert node_id_of(peer_id_of(key)) == key
    # A peer id that hashes an RSA key names no node key.
    assert node_id_of(PeerId("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")) is None
    assert node_id_of(PeerId("not base58 0OIl")) is None


def test_a_restarted_coordinator_starts_again_and_one_attempt_starts_once(net: Network) -> None:
    request_id = net.request()
    coordinator = NODE_KEYS[net.coordinator(request_id)].public
    member = next(net.router.services[m].member for m in net.committee if m != coordinator)
    decode_answer(member.handle(coordinator, start_request(request_id, 3)))
    decode_answer(member.handle(coordinator, start_request(request_id, 0)))  # counts from 0 again
    assert member.sessions_in_flight() == (1, 0)
    assert refusal(member.handle(coordinator, start_request(request_id, 0))) == (
        "Malformed: this DKG attempt has started already"
    )
    created = run(lambda: net.router.services[coordinator].create(request_id, 1))
    assert wallets.get_wallet(net.chain.state, created.group_key) is not None
    assert member.sessions_in_flight() == (0, 0)


def test_a_member_that_cannot_keep_its_share_fails_the_dkg_and_nothing_is_registered(
    net: Network,
) -> None:
    request_id = net.request()
    coordinator = net.coordinator(request_id)
    locked = next(i for i in range(3) if i != coordinator)
    net.service(locked).member._shares = ShareStore(net.paths[locked], None)
    with pytest.raises(DkgFailed) as failed:
        run(lambda: net.service(coordinator).create(request_id))
    assert str(failed.value).startswith(
        "the wallet DKG failed at the confirmation round: "
        + member_line(
            NODE_KEYS[locked].public, "refused: DkgFailed: this member cannot keep its share: "
        )
    )
    assert wallets.get_request(net.chain.state, request_id) is not None
    assert net.service(locked).member.sessions_in_flight() == (0, 0)


class DroppingLedger(LedgerFake):
    """A pool that loses the next transaction submitted (accepted, then gone)."""

    drop_next = False
    dropped: list[Hash32]

    def submit(self, encoded: bytes) -> Hash32:
        if self.drop_next:
            self.drop_next = False
            self.dropped.append(tx_hash(encoded))
            return tx_hash(encoded)
        return super().submit(encoded)


def test_a_lost_registration_is_submitted_again_and_the_wallet_is_the_same(
    net: Network,
) -> None:
    ledger = DroppingLedger(net.chain)
    ledger.dropped = []
    for i in range(4):
        service = net.service(i)
        service._ledger = ledger
        service.member._ledger = ledger
    request_id = net.request()
    coordinator = net.service(net.coordinator(request_id))
    ledger.drop_next = True
    run(lambda: coordinator._complete(request_id))
    group = wallets.wallet_of_request(net.chain.state, request_id)
    assert group is not None and len(ledger.dropped) == 1
    # The second submission carried the same registration: the wallet whose shares are kept.
    assert ShareStore(net.paths[0], NODE_KEYS[0].seed).load(group) is not None


class _Heads:
    """A ledger reduced to its feed of finalized heads (what `follow_finalized` reads)."""

    def __init__(self) -> None:
        self.feeds: list[trio.MemorySendChannel[object]] = []

    def finalized_heads(self) -> trio.MemoryReceiveChannel[object]:
        send, receive = trio.open_memory_channel[object](64)
        self.feeds.append(send)
        return receive


def test_following_finalized_blocks_looks_once_at_heads_that_queued_meanwhile() -> None:
    async def main() -> None:
        ledger = _Heads()
        looks: list[int] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(follow_finalized, ledger, lambda _: looks.append(1))
            assert len(looks) == 1  # at start
            (feed,) = ledger.feeds
            for number in range(10):  # ten heads arrive while the follower is not running
                feed.send_nowait(number)
            await trio.testing.wait_all_tasks_blocked()
            assert len(looks) == 2
            feed.send_nowait(10)
            await trio.testing.wait_all_tasks_blocked()
            assert len(looks) == 3
            # Dropped by the feed (fell behind): it subscribes again and looks again.
            await feed.aclose()
            await trio.testing.wait_all_tasks_blocked()
            assert len(looks) == 4 and len(ledger.feeds) == 2
            nursery.cancel_scope.cancel()

    trio.run(main)
