"""Platform wallets over the `wallet` request/response protocol. This node is a committee
member (`CommitteeMember` answers requests); it follows the finalized chain and, for each
wallet request it is the coordinator of, relays the DKG rounds between the members and
submits `wallets.register` (its fee is refunded from the requester's deposit). For a wallet
of which it is a member, it gathers t signature shares for a transaction its owner approved
and submits the FROST-signed result (the wallet pays that transaction's fee)."""

from __future__ import annotations

import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import rlp
import trio

from chain import codec
from chain.blocks import Call, SignedTransaction, UnsignedTransaction
from chain.errors import InvalidTransaction
from chain.keys import Keypair
from chain.ledger import Ledger
from chain.primitives import AccountId, Hash32
from chain.runtime import nodes, wallets
from chain.runtime.wallets import Wallets
from chain.signature import verify
from chain.state import StateReader
from p2p.addresses import parse_bootnode
from p2p.errors import DialFailed, InvalidConfig, PeerUnreachable, RequestFailed
from p2p.identity import PeerId
from wallet.errors import WalletError
from wallet.frost import (
    FrostError,
    PublicKeyPackage,
    SignatureShare,
    SigningCommitments,
    SigningPackage,
    aggregate,
)
from wallet.member import (
    TRANSFER,
    CommitteeMember,
    WalletLedger,
    approved_transfer,
    follow_finalized,
)
from wallet.messages import (
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES,
    PROTOCOL_WALLET,
    PROTOCOL_WALLET_RELAY,
    SESSION_ID_BYTES,
    RefusalReason,
    Refused,
    RequestKind,
    WalletRequest,
    as_bytes,
    as_list,
    decode_answer,
    encode_answer,
    encode_refusal,
)
from wallet.shares import ShareStore
from wallet.transport import Transport

log = logging.getLogger("statemesh.wallet")

(REQUEST, REGISTER, REQUEST_VAULT, REGISTER_VAULT) = Wallets().calls()
DEFAULT_TIMEOUT = 10.0
RETRY_SECONDS = 3.0
"""After a failed DKG attempt (a member not reachable yet, or not final yet where it is), the
coordinator tries again this much later, doubling up to MAX_RETRY_SECONDS, while the request
is pending."""
MAX_RETRY_SECONDS = 30.0
RELAY_TIMEOUT_FACTOR = 3
"""A relayed signing takes a member two rounds among the committee: the relaying node (and the
relay protocol's handler deadline) allows this many request timeouts for it."""
MAX_RELAYED = 16
"""Signings a member coordinates at once for nodes outside the committee (one per wallet)."""
NOT_FROM_COMMITTEE_PENALTY = 20
PENALIZED = frozenset(
    {RefusalReason.NOT_FROM_COMMITTEE, RefusalReason.NOT_ASSIGNED, RefusalReason.FOREIGN_SECRET}
)
"""Refusals that cost the peer NOT_FROM_COMMITTEE_PENALTY: an honest node never sends what
only a member may send, nor asks for a secret of a replica the finalized chain does not assign
it or an application that does not read it (an unknown version may be a race: not these)."""
"""Score a peer loses for a request only a committee member may send: an honest node never
sends one (the committee and the coordinator are the chain's)."""
RESUBMIT_SECONDS = 10.0
"""A registration neither in the chain nor in the pool this long after it was submitted is
submitted again (the same call: the same wallet)."""


class WalletServiceError(WalletError):
    """A wallet operation that did not happen; nothing was submitted."""


class UnknownWallet(WalletServiceError):
    pass


class DkgFailed(WalletServiceError):
    pass


class TooFewMembersAnswered(WalletServiceError):
    pass


class SigningFailed(WalletServiceError):
    pass


class MemberUnreachable(WalletError):
    """The transport could not get an answer from a member."""


class WalletTransport(Protocol):
    async def request(
        self,
        node_id: AccountId,
        data: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 - the p2p request takes it to reset its stream
        protocol: str = PROTOCOL_WALLET,
    ) -> bytes:
        """The member's answer; raises `MemberUnreachable`."""
        ...


def peer_id_of(node_id: bytes) -> PeerId:
    """A node's libp2p peer id: the node id is the public half of its node key."""
    # libp2p is imported here, not above: `statemesh wallet` reads this module's names and
    # would otherwise spend most of a second importing it.
    from libp2p.crypto.ed25519 import Ed25519PublicKey
    from libp2p.peer.id import ID

    return PeerId(ID.from_pubkey(Ed25519PublicKey.from_bytes(node_id)).to_base58())


def node_id_of(peer: PeerId) -> AccountId | None:
    """The node id behind a peer id (its Ed25519 node key, which the peer proved holding when
    the connection was secured); None for a peer id of another kind of key."""
    from libp2p.crypto.ed25519 import Ed25519PublicKey
    from libp2p.peer.id import ID

    try:
        key = ID.from_base58(peer).extract_public_key()
    except ValueError:  # not base58
        return None
    if not isinstance(key, Ed25519PublicKey):
        return None
    return AccountId(key.to_bytes())


class P2PWalletTransport:
    """Requests to members over p2p. A member this node is not connected to (nodes connect to
    their bootnodes, not to each other) is dialled at the address it registered on chain, which
    must name its own peer id."""

    __slots__ = ("_address_of", "_p2p")

    def __init__(self, p2p: Transport, address_of: Callable[[AccountId], str | None]) -> None:
        self._p2p = p2p
        self._address_of = address_of

    async def request(
        self,
        node_id: AccountId,
        data: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 - the p2p request takes it to reset its stream
        protocol: str = PROTOCOL_WALLET,
    ) -> bytes:
        peer = peer_id_of(node_id)
        try:
            return await self._p2p.request(peer, protocol, data, timeout=timeout)
        except PeerUnreachable as error:
            await self._dial(node_id, peer, error)
        except RequestFailed as error:
            raise MemberUnreachable(str(error)) from None
        try:
            return await self._p2p.request(peer, protocol, data, timeout=timeout)
        except RequestFailed as error:
            raise MemberUnreachable(str(error)) from None

    async def _dial(self, node_id: AccountId, peer: PeerId, why: PeerUnreachable) -> None:
        address = self._address_of(node_id)
        if not address:
            raise MemberUnreachable(f"{why}; the node registered no address") from None
        try:
            if parse_bootnode(address).peer_id != peer:
                raise MemberUnreachable(f"{why}; its registered address names another peer")
            await self._p2p.connect(address)
        except (InvalidConfig, DialFailed) as error:
            raise MemberUnreachable(f"{why}; dialling its registered address: {error}") from None


def registered_address(ledger: WalletLedger) -> Callable[[AccountId], str | None]:
    """A node's registered p2p address, as the finalized chain has it."""

    def address_of(node_id: AccountId) -> str | None:
        record = nodes.get_node(ledger.finalized_state(), node_id)
        return None if record is None else record.address.decode(errors="replace")

    return address_of


class ChainLedger:
    """`WalletLedger` over the chain's `Ledger`."""

    __slots__ = ("_chain",)

    def __init__(self, chain: Ledger) -> None:
        self._chain = chain

    @property
    def genesis_hash(self) -> Hash32:
        return self._chain.runtime.genesis_hash

    def state(self) -> StateReader:
        return self._chain.store.best_state()

    def finalized_state(self) -> StateReader:
        store = self._chain.store
        return store.state_at(store.finalized_header.hash)

    @property
    def finalized_number(self) -> int:
        return int(self._chain.store.finalized_header.number)

    def in_pool(self, tx_hash: Hash32) -> bool:
        return self._chain.pool.status(tx_hash) is not None

    def finalized_heads(self) -> trio.MemoryReceiveChannel[Any]:
        return self._chain.finalized_heads.subscribe()

    def next_nonce(self, account: AccountId) -> int:
        return self._chain.next_nonce(account)

    def submit(self, encoded: bytes) -> Hash32:
        return self._chain.submit(encoded).hash

    def submit_signed(self, keypair: Keypair, call: Call) -> Hash32:
        return self._chain.submit_signed(keypair, call).hash


@dataclass(frozen=True, slots=True)
class CreatedWallet:
    request_id: int
    group_key: AccountId
    committee: tuple[AccountId, ...]
    threshold: int
    registration: Hash32
    """The hash of the submitted `wallets.register` transaction."""
    call: Call
    """That transaction's call, to submit again if it is lost."""


@dataclass(frozen=True, slots=True)
class _Answers:
    ok: dict[AccountId, codec.RlpItem]
    failed: dict[AccountId, str]

    def describe_failures(self) -> str:
        return "; ".join(f"member 0x{m.hex()}: {why}" for m, why in sorted(self.failed.items()))


@dataclass(frozen=True, slots=True)
class SigningRecord:
    """Who signed a wallet transaction this node coordinated, and who was skipped and why."""

    wallet: AccountId
    signers: tuple[AccountId, ...]
    skipped: tuple[tuple[AccountId, str], ...]


SIGNING_RECORDS = 256
"""Recent signing rounds this node remembers for `wallet_signingStatus`."""


class WalletService:
    """Both sides of the protocol for one node. `register(p2p)` serves members' requests;
    `run` follows the finalized chain and creates the wallets this node coordinates;
    `transfer` coordinates a signing."""

    __slots__ = (
        "_coordinating",
        "_ledger",
        "_member",
        "_payer",
        "_penalize",
        "_relaying",
        "_rng",
        "_seen",
        "_signings",
        "_timeout",
        "_transport",
        "signing_rounds",
    )

    def __init__(
        self,
        *,
        identity: Keypair,
        ledger: WalletLedger,
        shares: ShareStore,
        transport: WalletTransport,
        payer: Keypair | None,
        timeout: float = DEFAULT_TIMEOUT,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._member = CommitteeMember(identity, ledger, shares, rng=rng)
        self._signings: OrderedDict[Hash32, SigningRecord] = OrderedDict()
        self._ledger = ledger
        self._transport = transport
        self._payer = payer
        """The account that submits registrations (the node's operator); refunded each time."""
        self._timeout = timeout
        self._rng = rng
        self._coordinating: set[int] = set()
        self._seen = -1
        """The last finalized block whose requests were looked at."""
        self._relaying: set[AccountId] = set()
        """Wallets whose signing this node coordinates for a node outside their committee."""
        self._penalize: Callable[[PeerId, float, str], None] | None = None
        self.signing_rounds: Counter[str] = Counter()
        """Signings this node coordinated, by outcome: signed, not_enough_signers, failed."""

    def __repr__(self) -> str:
        return f"WalletService(0x{self.node_id.hex()})"

    @property
    def node_id(self) -> AccountId:
        return self._member.node_id

    @property
    def member(self) -> CommitteeMember:
        return self._member

    def register(self, p2p: Transport) -> None:
        p2p.register_protocol(
            PROTOCOL_WALLET,
            self.serve,
            max_request_bytes=MAX_REQUEST_BYTES,
            max_response_bytes=MAX_RESPONSE_BYTES,
            timeout=self._timeout,
        )
        p2p.register_protocol(
            PROTOCOL_WALLET_RELAY,
            self.serve_relay,
            max_request_bytes=MAX_REQUEST_BYTES,
            max_response_bytes=MAX_RESPONSE_BYTES,
            timeout=self._timeout * RELAY_TIMEOUT_FACTOR,
            max_concurrent=MAX_RELAYED,
        )
        self._penalize = p2p.penalize

    async def serve(self, peer: PeerId, data: bytes) -> bytes:
        """One request of the members' protocol from a peer; one that only a committee member
        may send, from a peer that may not, is refused and costs the peer score."""
        try:
            sender = node_id_of(peer)
            if sender is None:
                raise Refused(RefusalReason.NOT_FROM_COMMITTEE, "the peer is not a node")
            payload = self._member.dispatch(sender, WalletRequest.decode(data))
        except Refused as refusal:
            if refusal.reason in PENALIZED and self._penalize is not None:
                self._penalize(peer, NOT_FROM_COMMITTEE_PENALTY, f"wallet: {refusal.message}")
            return encode_refusal(refusal)
        return encode_answer(payload)

    async def serve_relay(self, peer: PeerId, data: bytes) -> bytes:
        """A signing that a node outside the wallet's committee asks this member for."""
        try:
            request = WalletRequest.decode(data)
            if request.kind is not RequestKind.SIGN_RELAY:
                raise Refused(RefusalReason.MALFORMED, "this protocol takes sign-relay only")
            payload = await self._coordinate_relayed(request)
        except Refused as refusal:
            return encode_refusal(refusal)
        return encode_answer(payload)

    async def _ask(self, member: AccountId, data: bytes) -> bytes:
        if member == self.node_id:
            return self._member.handle(self.node_id, data)
        with trio.move_on_after(self._timeout):
            return await self._transport.request(member, data, timeout=self._timeout)
        raise MemberUnreachable(f"no answer within {self._timeout:g} s")

    async def _ask_relay(self, member: AccountId, data: bytes) -> bytes:
        timeout = self._timeout * RELAY_TIMEOUT_FACTOR
        with trio.move_on_after(timeout):
            return await self._transport.request(
                member, data, timeout=timeout, protocol=PROTOCOL_WALLET_RELAY
            )
        raise MemberUnreachable(f"no answer within {timeout:g} s")

    async def _ask_all(
        self,
        requests: Mapping[AccountId, WalletRequest],
        enough: Callable[[_Answers], bool] | None = None,
    ) -> _Answers:
        """Every member at once; each answer or failure is recorded, none is waited on past
        the timeout, nor once `enough(answers)` holds (the requests still out are cancelled:
        their members appear in neither `ok` nor `failed`)."""
        answers = _Answers({}, {})

        async def ask(member: AccountId, request: WalletRequest) -> None:
            try:
                answers.ok[member] = decode_answer(await self._ask(member, request.encode()))
            except Refused as refusal:
                answers.failed[member] = f"refused: {refusal}"
            except MemberUnreachable as error:
                answers.failed[member] = f"unreachable: {error}"
            if enough is not None and enough(answers):
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for member, request in requests.items():
                nursery.start_soon(ask, member, request)
        return answers

    # Following the chain ------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """At each finalized block, start creating the wallets requested in the blocks finalized
        since the last look (at start, those of the last REQUEST_TTL_BLOCKS blocks) of which this
        node is the coordinator."""
        await follow_finalized(self._ledger, self.on_finalized, task_status)

    def on_finalized(self, nursery: trio.Nursery) -> None:
        state = self._ledger.finalized_state()
        number = self._ledger.finalized_number
        first = max(self._seen + 1, number - wallets.REQUEST_TTL_BLOCKS + 1, 0)
        for made_at in range(first, number + 1):
            for request_id in wallets.requests_made_at(state, made_at):
                request = wallets.get_request(state, request_id)
                if (
                    request is None
                    or request_id in self._coordinating
                    or wallets.coordinator_of(request_id, request.committee) != self.node_id
                ):
                    continue
                if self._payer is None:
                    log.warning(
                        "wallet request %d: this node coordinates it but has no operator account "
                        "to register the wallet with; it will expire",
                        request_id,
                    )
                    continue
                self._coordinating.add(request_id)
                nursery.start_soon(self._complete, request_id)
        self._seen = max(self._seen, number)

    async def _complete(self, request_id: int) -> None:
        """Attempts at the request's DKG until one registers the wallet or the request is gone
        (expired, or completed by an earlier run of this node)."""
        try:
            attempt = 0
            while wallets.get_request(self._ledger.finalized_state(), request_id) is not None:
                try:
                    created = await self.create(request_id, attempt)
                except (WalletServiceError, InvalidTransaction) as error:
                    log.warning("wallet request %d, attempt %d: %s", request_id, attempt, error)
                    await trio.sleep(min(RETRY_SECONDS * 2 ** min(attempt, 8), MAX_RETRY_SECONDS))
                    attempt += 1
                    continue
                await self._see_registered(request_id, created)
                return
        finally:
            self._coordinating.discard(request_id)

    async def _see_registered(self, request_id: int, created: CreatedWallet) -> None:
        """Submits the registration again if it left the pool without reaching the chain."""
        registration = created.registration
        while True:
            await trio.sleep(RESUBMIT_SECONDS)
            if wallets.get_request(self._ledger.state(), request_id) is None:
                return
            if self._ledger.in_pool(registration) or self._payer is None:
                continue
            try:
                registration = self._ledger.submit_signed(self._payer, created.call)
            except InvalidTransaction as error:
                log.warning("wallet request %d: registration refused: %s", request_id, error)
                return

    # Wallet creation ----------------------------------------------------------------------

    async def create(self, request_id: int, attempt: int = 0) -> CreatedWallet:
        """Runs one DKG attempt for a finalized request among its committee (every member must
        take part), then submits `wallets.register` with their confirmations from this node's
        operator account, whose fee the call refunds from the requester's deposit. Raises
        `DkgFailed` naming the members that failed and why."""
        if self._payer is None:
            raise WalletServiceError(
                "this node has no operator account to submit wallet registrations"
            )
        request = wallets.get_request(self._ledger.finalized_state(), request_id)
        if request is None:
            raise WalletServiceError(f"no wallet request {request_id} is pending")
        if wallets.coordinator_of(request_id, request.committee) != self.node_id:
            raise WalletServiceError(f"this node does not coordinate wallet request {request_id}")
        members = request.committee
        session = wallets.dkg_session_id(request_id, attempt)
        start = (codec.encode_uint(request_id), codec.encode_uint(attempt))
        round1 = await self._dkg_round(
            "the start", {m: WalletRequest(RequestKind.DKG_START, session, start) for m in members}
        )
        packages = [round1[m] for m in members]
        sealed = await self._dkg_round("round 1", self._broadcast(members, session, packages))
        boxes: dict[AccountId, list[codec.RlpItem]] = {m: [] for m in members}
        for sender, answer in sealed.items():
            for recipient, box in _sealed_shares(sender, answer, members):
                boxes[recipient].append(box)
        complaints = await self._dkg_round(
            "round 2",
            {m: WalletRequest(RequestKind.DKG_ROUND2, session, (boxes[m],)) for m in members},
        )
        # A member the others disqualified (its complaint-proven bad share) refuses here; the
        # rest go on without it if enough remain. Anyone else failing makes the others miss
        # its confirmation, so the next round fails and names it.
        judged = await self._ask_all(
            self._broadcast(
                members, session, [complaints[m] for m in members], RequestKind.DKG_COMPLAINTS
            )
        )
        qualified = [m for m in members if m in judged.ok]
        if len(qualified) < request.threshold:
            raise DkgFailed(
                f"the wallet DKG failed at the complaints round: {judged.describe_failures()}"
            )
        if judged.failed:
            log.warning("wallet DKG goes on without %s", judged.describe_failures())
        results = await self._dkg_round(
            "the confirmation round",
            self._broadcast(
                qualified, session, [judged.ok[m] for m in qualified], RequestKind.DKG_CONFIRM
            ),
        )
        group_key, signatures, shares = _agreed_group_key(results, qualified)
        if request.purpose is wallets.Purpose.ENCRYPTION:
            if shares is None:
                raise DkgFailed("the members confirmed a vault key without its verifying shares")
            call = REGISTER_VAULT.call(
                request=request_id,
                group_key=group_key,
                verifying_shares=shares,
                confirmations=wallets.encode_confirmations(signatures),
            )
        else:
            call = REGISTER.call(
                request=request_id,
                group_key=group_key,
                confirmations=wallets.encode_confirmations(signatures),
            )
        registration = self._ledger.submit_signed(self._payer, call)
        log.info(
            "wallet 0x%s of request %d created by %d members",
            group_key.hex(), request_id, len(qualified),
        )  # fmt: skip
        return CreatedWallet(request_id, group_key, members, request.threshold, registration, call)

    @staticmethod
    def _broadcast(
        members: Sequence[AccountId],
        session: bytes,
        messages: list[codec.RlpItem],
        kind: RequestKind = RequestKind.DKG_ROUND1,
    ) -> dict[AccountId, WalletRequest]:
        return {m: WalletRequest(kind, session, (messages,)) for m in members}

    async def _dkg_round(
        self, what: str, requests: Mapping[AccountId, WalletRequest]
    ) -> dict[AccountId, codec.RlpItem]:
        answers = await self._ask_all(requests)
        if answers.failed:
            raise DkgFailed(f"the wallet DKG failed at {what}: {answers.describe_failures()}")
        return answers.ok

    # Signing ------------------------------------------------------------------------------

    async def transfer(
        self,
        group_key: AccountId,
        dest: AccountId,
        amount: int,
        login_signature: bytes,
        *,
        nonce: int | None = None,
    ) -> Hash32:
        """Builds the wallet's transfer (next nonce unless given), asks every committee member
        to sign it with the login signature as its authority, aggregates the first t shares
        and submits the transaction. Nothing is submitted unless the signature is complete."""
        record = wallets.get_wallet(self._ledger.state(), group_key)
        if record is None:
            raise UnknownWallet(f"no wallet 0x{group_key.hex()} is registered")
        genesis = self._ledger.genesis_hash
        if nonce is None:
            nonce = self._ledger.next_nonce(group_key)
        call = TRANSFER.call(dest=dest, amount=amount)
        unsigned = UnsignedTransaction(genesis, group_key, nonce, 0, call)
        if self.node_id not in record.committee:
            if not verify(record.login_key, unsigned.signing_payload(), login_signature):
                raise SigningFailed(
                    "the login signature is not the wallet login key's signature of this "
                    "transaction: no member was asked"
                )
            return await self._relay(record.committee, unsigned, login_signature)
        return await self.sign_and_submit(
            record, unsigned, RequestKind.SIGN_COMMIT, (rlp.encode(unsigned), login_signature)
        )

    async def sign_and_submit(
        self,
        record: wallets.WalletRecord,
        unsigned: UnsignedTransaction,
        kind: RequestKind,
        commit_items: tuple[codec.RlpItem, ...],
    ) -> Hash32:
        """One signing round of a wallet transaction among its committee, this node a member:
        every member is asked for its commitments (`kind` with `commit_items`: what it checks
        before it commits), the first t that agree sign (the round does not wait for the
        others), and the signed transaction is submitted. Nothing is submitted unless the
        signature is complete."""
        group_key = AccountId(unsigned.sender)
        genesis, nonce, call = unsigned.genesis_hash, unsigned.nonce, unsigned.call
        payload: bytes = unsigned.signing_payload()
        session = self._rng(SESSION_ID_BYTES)
        offers: _Offers = {}

        def enough(so_far: _Answers) -> bool:
            _judge_offers(so_far, record.committee, group_key, offers)
            return len(offers) >= record.threshold

        # Every answer is judged as it comes, the last one included.
        answers = await self._ask_all(
            {m: WalletRequest(kind, session, commit_items) for m in record.committee},
            enough=enough,
        )
        if len(offers) < record.threshold:
            self.signing_rounds["not_enough_signers"] += 1
            raise TooFewMembersAnswered(
                f"{len(offers)} of {len(record.committee)} committee members agreed to sign, "
                f"{record.threshold} needed: {answers.describe_failures()}"
            )
        chosen = sorted(offers, key=lambda m: offers[m][0].identifier)[: record.threshold]
        package = SigningPackage.create(payload, (offers[m][0] for m in chosen))
        public = offers[chosen[0]][1]
        shares = await self._ask_all(
            {m: WalletRequest(RequestKind.SIGN_SHARE, session, (package.encode(),)) for m in chosen}
        )
        if shares.failed:
            self.signing_rounds["failed"] += 1
            raise SigningFailed(
                f"signing wallet 0x{group_key.hex()} failed: {shares.describe_failures()}"
            )
        try:
            signature = aggregate(
                package,
                (SignatureShare.decode(as_bytes(shares.ok[m], "share")) for m in chosen),
                public,
            )
        except (FrostError, Refused) as error:
            self.signing_rounds["failed"] += 1
            raise SigningFailed(f"signing wallet 0x{group_key.hex()} failed: {error}") from None
        signed = SignedTransaction(genesis, group_key, nonce, unsigned.tip, call, signature)
        self.signing_rounds["signed"] += 1
        tx_hash = self._ledger.submit(rlp.encode(signed))
        log.info("wallet 0x%s transaction 0x%s submitted", group_key.hex(), tx_hash.hex())
        skipped = dict(answers.failed)
        skipped.update(
            {m: "not needed" for m in record.committee if m not in chosen and m not in skipped}
        )
        self._remember(
            tx_hash, SigningRecord(group_key, tuple(chosen), tuple(sorted(skipped.items())))
        )
        return tx_hash

    def _remember(self, tx_hash: Hash32, record: SigningRecord) -> None:
        self._signings[tx_hash] = record
        while len(self._signings) > SIGNING_RECORDS:
            self._signings.popitem(last=False)

    async def _relay(
        self,
        committee: Sequence[AccountId],
        unsigned: UnsignedTransaction,
        login_signature: bytes,
    ) -> Hash32:
        """A node outside the wallet's committee asks its members in turn to coordinate the
        signing; the first that answers submitted the transaction."""
        group_key = AccountId(unsigned.sender)
        request = WalletRequest(
            RequestKind.SIGN_RELAY,
            self._rng(SESSION_ID_BYTES),
            (rlp.encode(unsigned), login_signature),
        )
        failures: dict[AccountId, str] = {}
        for member in committee:
            try:
                answer = decode_answer(await self._ask_relay(member, request.encode()))
                tx_hash, record = _relayed_signing(group_key, answer)
            except MemberUnreachable as error:
                failures[member] = f"unreachable: {error}"
                continue
            except Refused as refusal:
                if refusal.reason is RefusalReason.BUSY:
                    failures[member] = f"refused: {refusal}"
                    continue
                raise SigningFailed(
                    f"member 0x{member.hex()} coordinated the signing of wallet "
                    f"0x{group_key.hex()}: {refusal.message}"
                ) from None
            self._remember(tx_hash, record)
            return tx_hash
        described = "; ".join(f"member 0x{m.hex()}: {why}" for m, why in failures.items())
        raise SigningFailed(
            f"no member of wallet 0x{group_key.hex()} coordinated its signing: {described}"
        )

    async def _coordinate_relayed(self, request: WalletRequest) -> codec.RlpItem:
        """A signing asked for by a node outside the wallet's committee (any node may ask). It
        is checked here as the members will check it (a transfer of a wallet of which this node
        is a member, at the wallet's next nonce, that its login key signed) before any round
        starts, so that what a stranger can make the committee do is sign transactions that its
        owner approved and that pay their fees; one at a time per wallet, MAX_RELAYED in all."""
        if len(request.items) != 2:
            raise Refused(RefusalReason.MALFORMED, "sign-relay takes a transaction and a login")
        raw = as_bytes(request.items[0], "transaction")
        approved = approved_transfer(
            self._ledger, self.node_id, raw, as_bytes(request.items[1], "login signature")
        )
        unsigned, group_key = approved.unsigned, approved.group_key
        dest, amount, login_signature = approved.dest, approved.amount, approved.login_signature
        rebuilt = UnsignedTransaction(
            unsigned.genesis_hash,
            group_key,
            unsigned.nonce,
            0,
            TRANSFER.call(dest=dest, amount=amount),
        )
        if rlp.encode(rebuilt) != raw:
            raise Refused(RefusalReason.MALFORMED, "a wallet transfer carries no tip")
        expected = self._ledger.next_nonce(group_key)
        if unsigned.nonce != expected:
            raise Refused(
                RefusalReason.MALFORMED,
                f"nonce {unsigned.nonce} is not the wallet's next nonce {expected}",
            )
        if group_key in self._relaying or len(self._relaying) >= MAX_RELAYED:
            raise Refused(RefusalReason.BUSY, "a signing of this wallet is under way")
        self._relaying.add(group_key)
        try:
            tx_hash = await self.transfer(
                group_key, dest, amount, login_signature, nonce=unsigned.nonce
            )
        except WalletServiceError as error:
            raise Refused(RefusalReason.SIGNING_FAILED, str(error)) from None
        except InvalidTransaction as exc:
            raise Refused(RefusalReason.SIGNING_FAILED, exc.message) from None
        finally:
            self._relaying.discard(group_key)
        signing = self._signings[tx_hash]
        return [
            tx_hash,
            list(signing.signers),
            [[member, why.encode()] for member, why in signing.skipped],
        ]

    def signing(self, tx_hash: Hash32) -> SigningRecord | None:
        """Which members signed a transaction this node coordinated (recent ones only)."""
        return self._signings.get(tx_hash)


def _sealed_shares(
    sender: AccountId, answer: codec.RlpItem, members: Sequence[AccountId]
) -> list[tuple[AccountId, bytes]]:
    out: list[tuple[AccountId, bytes]] = []
    try:
        for entry in as_list(answer, "sealed shares"):
            recipient_raw, box = as_list(entry, "sealed share")
            recipient = codec.uint(recipient_raw, "recipient")
            if not 1 <= recipient <= len(members):
                raise DkgFailed(f"member 0x{sender.hex()} sealed a share for unknown member")
            out.append((members[recipient - 1], as_bytes(box, "sealed share")))
    except (Refused, codec.CodecError, ValueError) as error:
        raise DkgFailed(f"member 0x{sender.hex()} answered round 1 wrongly: {error}") from None
    return out


def _agreed_group_key(
    results: Mapping[AccountId, codec.RlpItem], members: Sequence[AccountId]
) -> tuple[AccountId, list[tuple[bytes, bytes]], bytes | None]:
    """The group key every member confirmed, their signatures, and the verifying shares they
    all confirmed with it (a vault's; None for a wallet)."""
    keys: set[bytes] = set()
    extras: set[bytes | None] = set()
    signatures: list[tuple[bytes, bytes]] = []
    for member in members:
        try:
            group_key, signature, *rest = as_list(results[member], "confirmation")
            if len(rest) > 1:
                raise ValueError("a confirmation has at most 3 fields")
            keys.add(as_bytes(group_key, "group key"))
            extras.add(as_bytes(rest[0], "verifying shares") if rest else None)
            signatures.append((member, as_bytes(signature, "signature")))
        except (Refused, ValueError) as error:
            raise DkgFailed(f"member 0x{member.hex()} confirmed wrongly: {error}") from None
    if len(keys) != 1 or len(next(iter(keys))) != 32:
        raise DkgFailed("the members finished the DKG with different group keys")
    if len(extras) != 1:
        raise DkgFailed("the members finished the DKG with different verifying shares")
    return AccountId(next(iter(keys))), signatures, next(iter(extras))


def _relayed_signing(group_key: AccountId, answer: codec.RlpItem) -> tuple[Hash32, SigningRecord]:
    try:
        tx_hash_raw, signers, skipped = as_list(answer, "relayed signing")
        tx_hash = Hash32(codec.fixed(tx_hash_raw, 32, "transaction hash"))
        record = SigningRecord(
            group_key,
            tuple(AccountId(codec.fixed(m, 32, "signer")) for m in as_list(signers, "signers")),
            tuple(
                (
                    AccountId(codec.fixed(m, 32, "member")),
                    as_bytes(why, "reason").decode(errors="replace"),
                )
                for m, why in (as_list(e, "skipped") for e in as_list(skipped, "skipped"))
            ),
        )
    except (codec.CodecError, ValueError) as error:
        raise Refused(RefusalReason.MALFORMED, f"a relayed signing's answer: {error}") from None
    return tx_hash, record


_Offers = dict[AccountId, tuple[SigningCommitments, PublicKeyPackage]]


def _judge_offers(
    answers: _Answers, committee: Sequence[AccountId], group_key: bytes, offers: _Offers
) -> None:
    """Adds to `offers` the members whose round-one answer, not judged before, is usable: their
    own identifier's commitments and the wallet's public key package. An unusable answer counts
    as a failure. Each answer is decoded once, however often this is called as answers come."""
    for member, answer in answers.ok.items():
        if member in offers or member in answers.failed:
            continue
        try:
            commitments_raw, public_raw = as_list(answer, "commitments")
            commitments = SigningCommitments.decode(as_bytes(commitments_raw, "commitments"))
            public = PublicKeyPackage.decode(as_bytes(public_raw, "public key package"))
        except (Refused, FrostError, ValueError) as error:
            answers.failed[member] = f"answered wrongly: {error}"
            continue
        if commitments.identifier != committee.index(member) + 1:
            answers.failed[member] = "answered with another member's identifier"
        elif public.group_public_key.encoding != group_key:
            answers.failed[member] = "holds a share of another wallet"
        else:
            offers[member] = (commitments, public)
