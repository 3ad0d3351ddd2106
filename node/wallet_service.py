"""Platform wallets over the `wallet` request/response protocol. This node is a committee
member (`CommitteeMember` answers requests) and, for the users who talk to it, the
coordinator: it relays the DKG rounds between the members and registers the wallet, and it
gathers t signature shares for a wallet transaction and submits the FROST-signed result."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import rlp
import trio
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.peer.id import ID

from chain import codec
from chain.blocks import Call, SignedTransaction, UnsignedTransaction
from chain.primitives import AccountId, Hash32
from chain.runtime import wallets
from chain.runtime.wallets import CommitteeUnavailable, Wallets
from chain.state import StateReader
from node.chain_service import ChainService
from node.wallet_member import TRANSFER, CommitteeMember, WalletLedger
from node.wallet_messages import (
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES,
    PROTOCOL_WALLET,
    SESSION_ID_BYTES,
    Refused,
    RequestKind,
    WalletRequest,
    as_bytes,
    as_list,
    decode_answer,
)
from node.wallet_shares import ShareStore
from p2p.errors import RequestFailed
from p2p.host import P2PService
from p2p.identity import PeerId
from wallet.frost import (
    FrostError,
    PublicKeyPackage,
    SignatureShare,
    SigningCommitments,
    SigningPackage,
    aggregate,
)
from wallet.keys import Keypair

log = logging.getLogger("statemesh.wallet")

(REGISTER,) = Wallets().calls()
DEFAULT_TIMEOUT = 10.0


class WalletServiceError(Exception):
    """A wallet operation that did not happen; nothing was submitted."""


class UnknownWallet(WalletServiceError):
    pass


class DkgFailed(WalletServiceError):
    pass


class NotEnoughSigners(WalletServiceError):
    pass


class SigningFailed(WalletServiceError):
    pass


class MemberUnreachable(Exception):
    """The transport could not get an answer from a member."""


class WalletTransport(Protocol):
    async def request(
        self,
        node_id: AccountId,
        data: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 - the p2p request takes it to reset its stream
    ) -> bytes:
        """The member's answer; raises `MemberUnreachable`."""
        ...


def peer_id_of(node_id: bytes) -> PeerId:
    """A node's libp2p peer id: the node id is the public half of its node key."""
    return PeerId(ID.from_pubkey(Ed25519PublicKey.from_bytes(node_id)).to_base58())


class P2PWalletTransport:
    __slots__ = ("_p2p",)

    def __init__(self, p2p: P2PService) -> None:
        self._p2p = p2p

    async def request(
        self,
        node_id: AccountId,
        data: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 - the p2p request takes it to reset its stream
    ) -> bytes:
        try:
            return await self._p2p.request(
                peer_id_of(node_id), PROTOCOL_WALLET, data, timeout=timeout
            )
        except RequestFailed as error:
            raise MemberUnreachable(str(error)) from None


class ChainLedger:
    """`WalletLedger` over the node's `ChainService`."""

    __slots__ = ("_chain",)

    def __init__(self, chain: ChainService) -> None:
        self._chain = chain

    @property
    def genesis_hash(self) -> Hash32:
        return self._chain.runtime.genesis_hash

    def state(self) -> StateReader:
        return self._chain.store.best_state()

    def next_nonce(self, account: AccountId) -> int:
        return self._chain.next_nonce(account)

    def submit(self, encoded: bytes) -> Hash32:
        return self._chain.submit(encoded).hash

    def submit_signed(self, keypair: Keypair, call: Call) -> Hash32:
        return self._chain.submit_signed(keypair, call).hash


@dataclass(frozen=True, slots=True)
class CreatedWallet:
    group_key: AccountId
    committee: tuple[AccountId, ...]
    threshold: int
    registration: Hash32
    """The hash of the submitted `wallets.register` transaction."""


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
    `create_wallet` and `transfer` coordinate."""

    __slots__ = (
        "_ledger",
        "_member",
        "_payer",
        "_rng",
        "_signings",
        "_size",
        "_threshold",
        "_timeout",
        "_transport",
    )

    def __init__(
        self,
        *,
        identity: Keypair,
        ledger: WalletLedger,
        shares: ShareStore,
        transport: WalletTransport,
        payer: Keypair | None,
        committee_size: int = wallets.DEFAULT_COMMITTEE_SIZE,
        threshold: int = wallets.DEFAULT_THRESHOLD,
        timeout: float = DEFAULT_TIMEOUT,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._member = CommitteeMember(identity, ledger, shares, rng=rng)
        self._signings: OrderedDict[Hash32, SigningRecord] = OrderedDict()
        self._ledger = ledger
        self._transport = transport
        self._payer = payer
        self._size = committee_size
        self._threshold = threshold
        self._timeout = timeout
        self._rng = rng

    def __repr__(self) -> str:
        return f"WalletService(0x{self.node_id.hex()})"

    @property
    def node_id(self) -> AccountId:
        return self._member.node_id

    @property
    def member(self) -> CommitteeMember:
        return self._member

    def register(self, p2p: P2PService) -> None:
        p2p.register_protocol(
            PROTOCOL_WALLET,
            self._serve,
            max_request_bytes=MAX_REQUEST_BYTES,
            max_response_bytes=MAX_RESPONSE_BYTES,
            timeout=self._timeout,
        )

    async def _serve(self, peer: PeerId, data: bytes) -> bytes:
        return self._member.handle(data)

    async def _ask(self, member: AccountId, data: bytes) -> bytes:
        if member == self.node_id:
            return self._member.handle(data)
        with trio.move_on_after(self._timeout):
            return await self._transport.request(member, data, timeout=self._timeout)
        raise MemberUnreachable(f"no answer within {self._timeout:g} s")

    async def _ask_all(self, requests: Mapping[AccountId, WalletRequest]) -> _Answers:
        """Every member at once; each answer or failure is recorded, none is waited on past
        the timeout."""
        answers = _Answers({}, {})

        async def ask(member: AccountId, request: WalletRequest) -> None:
            try:
                answers.ok[member] = decode_answer(await self._ask(member, request.encode()))
            except Refused as refusal:
                answers.failed[member] = f"refused: {refusal}"
            except MemberUnreachable as error:
                answers.failed[member] = f"unreachable: {error}"

        async with trio.open_nursery() as nursery:
            for member, request in requests.items():
                nursery.start_soon(ask, member, request)
        return answers

    # Wallet creation ----------------------------------------------------------------------

    async def create_wallet(self, login_key: AccountId) -> CreatedWallet:
        """Runs the DKG among the committee chosen from the best state (every member must take
        part), then submits `wallets.register` with their confirmations, paid by this node's
        operator account. Raises `DkgFailed` naming the members that failed and why."""
        if self._payer is None:
            raise WalletServiceError(
                "this node has no operator account to pay for registering wallets"
            )
        try:
            committee = wallets.select_committee(
                self._ledger.state(), size=self._size, threshold=self._threshold
            )
        except CommitteeUnavailable as error:
            raise DkgFailed(str(error)) from None
        members = committee.members
        committee_raw = wallets.encode_committee(members)
        session = self._rng(SESSION_ID_BYTES)
        start = (committee_raw, codec.encode_uint(committee.threshold), login_key)
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
        if len(qualified) < committee.threshold:
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
        group_key, signatures = _agreed_group_key(results, qualified)
        call = REGISTER.call(
            group_key=group_key,
            committee=committee_raw,
            threshold=committee.threshold,
            login_key=login_key,
            confirmations=wallets.encode_confirmations(signatures),
        )
        registration = self._ledger.submit_signed(self._payer, call)
        log.info("wallet 0x%s created by %d members", group_key.hex(), len(qualified))
        return CreatedWallet(group_key, members, committee.threshold, registration)

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
        payload: bytes = unsigned.signing_payload()
        session = self._rng(SESSION_ID_BYTES)
        commit_items = (rlp.encode(unsigned), login_signature)
        answers = await self._ask_all(
            {
                m: WalletRequest(RequestKind.SIGN_COMMIT, session, commit_items)
                for m in record.committee
            }
        )
        offers = _signing_offers(answers, record.committee, group_key)
        if len(offers) < record.threshold:
            raise NotEnoughSigners(
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
            raise SigningFailed(f"signing wallet 0x{group_key.hex()} failed: {error}") from None
        signed = SignedTransaction(genesis, group_key, nonce, 0, call, signature)
        tx_hash = self._ledger.submit(rlp.encode(signed))
        log.info("wallet 0x%s transaction 0x%s submitted", group_key.hex(), tx_hash.hex())
        skipped = {m: why for m, why in answers.failed.items()}
        skipped.update({m: "not needed" for m in offers if m not in chosen})
        self._signings[tx_hash] = SigningRecord(
            group_key, tuple(chosen), tuple(sorted(skipped.items()))
        )
        while len(self._signings) > SIGNING_RECORDS:
            self._signings.popitem(last=False)
        return tx_hash

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
) -> tuple[AccountId, list[tuple[bytes, bytes]]]:
    keys: set[bytes] = set()
    signatures: list[tuple[bytes, bytes]] = []
    for member in members:
        try:
            group_key, signature = as_list(results[member], "confirmation")
            keys.add(as_bytes(group_key, "group key"))
            signatures.append((member, as_bytes(signature, "signature")))
        except (Refused, ValueError) as error:
            raise DkgFailed(f"member 0x{member.hex()} confirmed wrongly: {error}") from None
    if len(keys) != 1 or len(next(iter(keys))) != 32:
        raise DkgFailed("the members finished the DKG with different group keys")
    return AccountId(next(iter(keys))), signatures


def _signing_offers(
    answers: _Answers, committee: Sequence[AccountId], group_key: bytes
) -> dict[AccountId, tuple[SigningCommitments, PublicKeyPackage]]:
    """Members whose round-one answer is usable: their own identifier's commitments and the
    wallet's public key package. An unusable answer counts as a failure."""
    offers: dict[AccountId, tuple[SigningCommitments, PublicKeyPackage]] = {}
    for member, answer in answers.ok.items():
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
    return offers
