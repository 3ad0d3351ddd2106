"""A committee member's side of platform wallets: it runs its own DKG participant for a wallet
request the chain finalized, relayed by that request's coordinator, keeps the resulting share
encrypted, and signs a wallet transaction only after checking it itself (a balance transfer of
a registered wallet of which it is a member, approved by the wallet's login key over the exact
transaction bytes, asked for by another member of that wallet; or a payout of one of the
wallet's open invoices, exactly as its own finalized state has the invoice)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import rlp
import trio

from chain import codec
from chain.blocks import Call, UnsignedTransaction, decode
from chain.errors import InvalidTransaction
from chain.keys import Keypair
from chain.primitives import AccountId, Hash32
from chain.runtime import billing, system, wallets
from chain.runtime.balances import Balances
from chain.runtime.billing import Billing
from chain.signature import verify
from chain.state import StateReader
from wallet.frost import (
    ComplaintsMessage,
    Confirmation,
    DkgMember,
    DkgParams,
    DkgParticipant,
    FrostError,
    KeyPackage,
    PublicKeyPackage,
    Round1Package,
    SigningNonces,
    SigningPackage,
    as_identifier,
    commit,
    open_share,
    seal_share,
    sign,
)
from wallet.messages import (
    RefusalReason,
    Refused,
    RequestKind,
    WalletRequest,
    as_bytes,
    as_list,
    encode_answer,
    encode_refusal,
)
from wallet.secret_partials import SecretQuery, answer_query
from wallet.shares import ShareStore, ShareStoreError, StoredShare

(TRANSFER,) = Balances().calls()
PAY = next(call for call in Billing().calls() if call.name == "pay")
PAYOUT_NONCE_WINDOW = 8
"""A payout's nonce is at least the wallet's nonce in the member's finalized state and below it
plus this: the coordinator may have a few wallet transactions in flight not final yet."""
V = TypeVar("V")
MAX_DKG_SESSIONS = 256
"""DKG sessions in flight. Each is one finalized, paid request of which this node is a member,
started by its coordinator; sessions of requests no longer pending make room, a live one is
never dropped for a new one (the new one is refused, and its coordinator tries again)."""
MAX_SIGNING_SESSIONS = 64
"""Signing sessions in flight per coordinating member; that member's oldest is dropped beyond
this (its nonces with it), never another member's."""


class WalletLedger(Protocol):
    """What the wallet service reads from and submits to the chain."""

    @property
    def genesis_hash(self) -> Hash32: ...

    def state(self) -> StateReader:
        """The best block's state."""
        ...

    def finalized_state(self) -> StateReader:
        """The finalized block's state: wallet requests are acted on once final."""
        ...

    @property
    def finalized_number(self) -> int: ...

    def in_pool(self, tx_hash: Hash32) -> bool:
        """Whether a transaction this node submitted still waits in its pool."""
        ...

    def finalized_heads(self) -> trio.MemoryReceiveChannel[object]:
        """A new item each time the finalized block moves (the channel closes if this
        subscriber falls behind)."""
        ...

    def next_nonce(self, account: AccountId) -> int: ...

    def submit(self, encoded: bytes) -> Hash32:
        """Pool a signed transaction; raises InvalidTransaction with the reason."""
        ...

    def submit_signed(self, keypair: Keypair, call: Call) -> Hash32: ...


async def follow_finalized(
    ledger: WalletLedger, on_finalized: Callable[[trio.Nursery], None], task_status: Any
) -> None:
    """Calls `on_finalized` at start and when the finalized block moves, with a nursery for the
    work it starts; reports started after the first call. `on_finalized` looks at the chain as it
    is, so heads already queued behind the one received are skipped (sync finalizes hundreds of
    blocks a second). A subscriber that fell behind is dropped by the feed: it subscribes again
    and looks from where the chain is."""
    started = False
    async with trio.open_nursery() as nursery:
        while True:
            async with ledger.finalized_heads() as heads:
                on_finalized(nursery)
                if not started:
                    started = True
                    task_status.started()
                async for _ in heads:
                    _skip_queued(heads)
                    on_finalized(nursery)


def _skip_queued(heads: trio.MemoryReceiveChannel[object]) -> None:
    """Take every item already waiting in `heads` (an end of the channel is met by the next
    receive)."""
    while True:
        try:
            heads.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return


@dataclass(frozen=True, slots=True)
class _DkgSession:
    request_id: int
    attempt: int
    coordinator: AccountId
    """The only node whose rounds this session takes."""
    participant: DkgParticipant
    params: DkgParams
    committee_raw: bytes
    threshold: int
    login_key: AccountId
    purpose: wallets.Purpose = wallets.Purpose.SIGNING
    """An ENCRYPTION key's confirmation also covers the verifying shares it registers."""


@dataclass(frozen=True, slots=True)
class _SigningSession:
    key_package: KeyPackage
    nonces: SigningNonces
    payload: bytes
    login_key: AccountId | None
    """None for a payout: its authority is the finalized invoice, checked at commit."""
    login_signature: bytes


class CommitteeMember:
    """Answers `wallet` protocol requests. Every check is made here, on this node's own view
    of the chain: the coordinator is trusted with nothing but relaying, and a request from a
    node that may not send it changes nothing."""

    __slots__ = (
        "_dkg",
        "_dkg_requests",
        "_identity",
        "_ledger",
        "_rng",
        "_shares",
        "_signing",
    )

    def __init__(
        self,
        identity: Keypair,
        ledger: WalletLedger,
        shares: ShareStore,
        *,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._identity = identity
        self._ledger = ledger
        self._shares = shares
        self._rng = rng
        self._dkg: dict[bytes, _DkgSession] = {}
        self._dkg_requests: dict[int, bytes] = {}
        """Request id -> its session in flight: one at a time per on-chain request."""
        self._signing: dict[AccountId, dict[bytes, _SigningSession]] = {}

    def __repr__(self) -> str:
        return f"CommitteeMember(0x{self._identity.public.hex()})"

    @property
    def node_id(self) -> AccountId:
        return self._identity.public

    def sessions_in_flight(self) -> tuple[int, int]:
        """(DKG sessions, signing sessions) held in memory."""
        return len(self._dkg), sum(len(t) for t in self._signing.values())

    def handle(self, sender: AccountId, data: bytes) -> bytes:
        """One request from node `sender` in, one answer out; a refusal is an answer too."""
        try:
            request = WalletRequest.decode(data)
            payload = self.dispatch(sender, request)
        except Refused as refusal:
            return encode_refusal(refusal)
        return encode_answer(payload)

    def dispatch(self, sender: AccountId, request: WalletRequest) -> codec.RlpItem:
        """The payload of the answer; raises `Refused`."""
        kind, session, items = request.kind, request.session, request.items
        if kind is RequestKind.SIGN_RELAY:
            raise Refused(RefusalReason.MALFORMED, "a member answers sign-relay itself")
        if kind is RequestKind.SECRET_PARTIAL:
            return self._secret_partial(sender, session, items)
        if kind is RequestKind.DKG_START:
            return self._dkg_start(sender, session, items)
        if kind is RequestKind.SIGN_COMMIT:
            return self._sign_commit(sender, session, items)
        if kind is RequestKind.SIGN_SHARE:
            return self._sign_share(sender, session, items)
        if kind is RequestKind.SIGN_PAYOUT:
            return self._sign_payout(sender, session, items)
        return self._dkg_step(sender, kind, session, items)

    # DKG ----------------------------------------------------------------------------------

    def _dkg_start(
        self, sender: AccountId, session: bytes, items: tuple[codec.RlpItem, ...]
    ) -> codec.RlpItem:
        if len(items) != 2:
            raise Refused(RefusalReason.MALFORMED, "dkg-start takes a request id and an attempt")
        try:
            request_id = codec.uint(items[0], "request id")
            attempt = codec.uint(items[1], "attempt")
        except codec.CodecError as exc:
            raise Refused(RefusalReason.MALFORMED, str(exc)) from None
        if request_id >= 2**64 or attempt >= 2**32:
            raise Refused(RefusalReason.MALFORMED, "a request id or attempt out of range")
        if session != wallets.dkg_session_id(request_id, attempt):
            raise Refused(RefusalReason.MALFORMED, "the session is not this request attempt's")
        request = wallets.get_request(self._ledger.finalized_state(), request_id)
        if request is None:
            raise Refused(
                RefusalReason.UNKNOWN_REQUEST,
                f"no wallet request {request_id} is pending in the finalized chain",
            )
        committee = request.committee
        if self.node_id not in committee:
            raise Refused(RefusalReason.NOT_A_MEMBER, "this node is not in the committee")
        coordinator = wallets.coordinator_of(request_id, committee)
        if sender != coordinator:
            raise Refused(
                RefusalReason.NOT_FROM_COMMITTEE,
                f"request {request_id}'s DKG is relayed by its coordinator only",
            )
        current = self._dkg_requests.get(request_id)
        # Another attempt replaces the one held (the coordinator may have restarted and
        # counts from 0 again); the same one is not started twice.
        if current is not None and self._dkg[current].attempt == attempt:
            raise Refused(RefusalReason.MALFORMED, "this DKG attempt has started already")
        committee_raw = wallets.encode_committee(committee)
        try:
            params = DkgParams.create(
                session,
                request.threshold,
                (DkgMember(as_identifier(i + 1), m) for i, m in enumerate(committee)),
            )
            participant = DkgParticipant(params, self._identity, rng=self._rng)
            package = participant.start()
        except FrostError as error:
            raise Refused(RefusalReason.BAD_COMMITTEE, str(error)) from None
        if current is not None:
            self._drop_dkg(current)
        self._make_room()
        self._dkg[session] = _DkgSession(
            request_id, attempt, coordinator, participant, params, committee_raw,
            request.threshold, request.requester, request.purpose,
        )  # fmt: skip
        self._dkg_requests[request_id] = session
        return package.encode()

    def _make_room(self) -> None:
        """Sessions of requests no longer pending go; if every one is live, the new one is
        refused rather than one of them dropped."""
        if len(self._dkg) < MAX_DKG_SESSIONS:
            return
        state = self._ledger.finalized_state()
        for session, held in list(self._dkg.items()):
            if wallets.get_request(state, held.request_id) is None:
                self._drop_dkg(session)
        if len(self._dkg) >= MAX_DKG_SESSIONS:
            raise Refused(RefusalReason.BUSY, f"{len(self._dkg)} wallet DKGs are in flight")

    def _drop_dkg(self, session: bytes) -> None:
        held = self._dkg.pop(session)
        if self._dkg_requests.get(held.request_id) == session:
            del self._dkg_requests[held.request_id]

    def _dkg_step(
        self, sender: AccountId, kind: RequestKind, session: bytes, items: tuple[codec.RlpItem, ...]
    ) -> codec.RlpItem:
        state = self._dkg.get(session)
        if state is None:
            raise Refused(RefusalReason.UNKNOWN_SESSION, "no DKG session with this id")
        if sender != state.coordinator:
            raise Refused(
                RefusalReason.NOT_FROM_COMMITTEE, "this DKG is relayed by its coordinator only"
            )
        if len(items) != 1:
            raise Refused(RefusalReason.MALFORMED, f"{kind.value.decode()} takes one list")
        messages = [as_bytes(m, "message") for m in as_list(items[0], "messages")]
        try:
            return self._dkg_round(kind, state, messages)
        except FrostError as error:
            self._drop_dkg(session)
            raise Refused(RefusalReason.DKG_FAILED, str(error)) from None

    def _dkg_round(
        self, kind: RequestKind, session: _DkgSession, messages: list[bytes]
    ) -> codec.RlpItem:
        participant = session.participant
        if kind is RequestKind.DKG_ROUND1:
            for message in messages:
                participant.receive_round1(Round1Package.decode(message))
            return [
                [
                    codec.encode_uint(share.recipient),
                    seal_share(share, session.params.identity_key(share.recipient), rng=self._rng),
                ]
                for share in participant.finish_round1()
            ]
        if kind is RequestKind.DKG_ROUND2:
            for message in messages:
                participant.receive_share(open_share(message, self._identity))
            return participant.finish_round2().encode()
        if kind is RequestKind.DKG_COMPLAINTS:
            for message in messages:
                participant.receive_complaints(ComplaintsMessage.decode(message))
            return participant.finish_complaints().encode()
        for message in messages:
            participant.receive_confirmation(Confirmation.decode(message))
        output = participant.finish()
        group_key = output.public_key_package.group_public_key.encoding
        self._drop_dkg(session.params.session_id)
        try:
            self._shares.save(group_key, StoredShare(output.key_package, output.public_key_package))
        except (ShareStoreError, OSError) as error:
            raise Refused(
                RefusalReason.DKG_FAILED, f"this member cannot keep its share: {error}"
            ) from None
        if session.purpose is wallets.Purpose.ENCRYPTION:
            shares_raw = encode_vault_shares(output.public_key_package, len(session.params.members))
            payload = wallets.vault_confirmation_payload(
                session.request_id, group_key, session.committee_raw, session.threshold,
                session.login_key, shares_raw,
            )  # fmt: skip
            return [group_key, self._identity.sign(payload), shares_raw]
        payload = wallets.confirmation_payload(
            session.request_id, group_key, session.committee_raw, session.threshold,
            session.login_key,
        )  # fmt: skip
        return [group_key, self._identity.sign(payload)]

    # Signing ------------------------------------------------------------------------------

    def _sign_commit(
        self, sender: AccountId, session: bytes, items: tuple[codec.RlpItem, ...]
    ) -> codec.RlpItem:
        if len(items) != 2:
            raise Refused(RefusalReason.MALFORMED, "sign-commit takes a transaction and a login")
        approved = approved_transfer(
            self._ledger,
            self.node_id,
            as_bytes(items[0], "transaction"),
            as_bytes(items[1], "login signature"),
            coordinator=sender,
        )
        return self._commit(
            sender, session, approved.group_key, approved.payload,
            approved.record.login_key, approved.login_signature,
        )  # fmt: skip

    def _sign_payout(
        self, sender: AccountId, session: bytes, items: tuple[codec.RlpItem, ...]
    ) -> codec.RlpItem:
        if len(items) != 1:
            raise Refused(RefusalReason.MALFORMED, "sign-payout takes a transaction")
        approved = approved_payout(
            self._ledger, self.node_id, as_bytes(items[0], "transaction"), coordinator=sender
        )
        return self._commit(sender, session, approved.group_key, approved.payload, None, b"")

    def _commit(
        self,
        sender: AccountId,
        session: bytes,
        group_key: AccountId,
        payload: bytes,
        login_key: AccountId | None,
        login_signature: bytes,
    ) -> codec.RlpItem:
        """Round one of a signing this member approved: its commitments, bound to `payload`."""
        if session in self._signing.get(sender, {}):
            raise Refused(RefusalReason.MALFORMED, "this signing session has started already")
        try:
            stored = self._shares.load(group_key)
        except ShareStoreError as error:
            raise Refused(RefusalReason.NO_SHARE, str(error)) from None
        if stored is None:
            raise Refused(RefusalReason.NO_SHARE, "this node holds no share of the wallet")
        nonces, commitments = commit(stored.key_package, rng=self._rng, message=payload)
        _bounded_put(
            self._signing.setdefault(sender, {}),
            session,
            _SigningSession(stored.key_package, nonces, payload, login_key, login_signature),
            MAX_SIGNING_SESSIONS,
        )
        return [commitments.encode(), stored.public_package.encode()]

    def _sign_share(
        self, sender: AccountId, session: bytes, items: tuple[codec.RlpItem, ...]
    ) -> codec.RlpItem:
        if len(items) != 1:
            raise Refused(RefusalReason.MALFORMED, "sign-share takes a signing package")
        sessions = self._signing.get(sender, {})
        state = sessions.pop(session, None)
        if state is None:
            raise Refused(
                RefusalReason.UNKNOWN_SESSION, "no signing session with this id from this node"
            )
        if not sessions:
            self._signing.pop(sender, None)

        def approve(message: bytes) -> bool:
            if message != state.payload:
                return False
            return state.login_key is None or verify(
                state.login_key, message, state.login_signature
            )

        try:
            package = SigningPackage.decode(as_bytes(items[0], "signing package"))
            share = sign(state.key_package, state.nonces, package, approve=approve)
        except FrostError as error:
            raise Refused(RefusalReason.SIGNING_FAILED, str(error)) from None
        return share.encode()

    # Secrets ------------------------------------------------------------------------------

    def _secret_partial(
        self, sender: AccountId, session: bytes, items: tuple[codec.RlpItem, ...]
    ) -> codec.RlpItem:
        """This member's partial decryption for a replica the sender runs, checked on this
        node's finalized state (`secret_partials.check_query`)."""
        query, seen_at = SecretQuery.from_request(items)
        return answer_query(
            state=self._ledger.finalized_state(),
            finalized_number=self._ledger.finalized_number,
            identity=self._identity,
            shares=self._shares,
            requester=sender,
            session=session,
            query=query,
            seen_at=seen_at,
            rng=self._rng,
        )


@dataclass(frozen=True, slots=True)
class ApprovedTransfer:
    """A balance transfer from a wallet, approved by the wallet's login key."""

    unsigned: UnsignedTransaction
    record: wallets.WalletRecord
    dest: AccountId
    amount: int
    login_signature: bytes

    @property
    def group_key(self) -> AccountId:
        return AccountId(self.unsigned.sender)

    @property
    def payload(self) -> bytes:
        """What the committee signs: the transaction's signing payload."""
        payload: bytes = self.unsigned.signing_payload()
        return payload


def approved_transfer(
    ledger: WalletLedger,
    node_id: AccountId,
    raw: bytes,
    login_signature: bytes,
    *,
    coordinator: AccountId | None = None,
) -> ApprovedTransfer:
    """What a member checks before it takes part in a signing, and what a member asked by a
    node outside the committee checks before it coordinates one: a transfer of this chain from a
    wallet of which `node_id` is a member (coordinated by another member, when `coordinator` is
    given), signed by the wallet's login key. `Refused` with the first reason it is not."""
    unsigned = decode_unsigned(raw, ledger.genesis_hash)
    group_key = AccountId(unsigned.sender)
    record = _signing_wallet(ledger.state(), group_key, node_id, coordinator)
    call = unsigned.call
    if (call.module, call.function) != (TRANSFER.module.encode(), TRANSFER.name.encode()):
        raise Refused(RefusalReason.NOT_A_TRANSFER, "members sign balance transfers only")
    try:
        dest, amount = TRANSFER.decode_args(call.args)
    except InvalidTransaction as exc:
        raise Refused(RefusalReason.NOT_A_TRANSFER, exc.message) from None
    if not verify(record.login_key, unsigned.signing_payload(), login_signature):
        raise Refused(
            RefusalReason.BAD_LOGIN_SIGNATURE,
            "the login signature is not the wallet login key's signature of this transaction",
        )
    return ApprovedTransfer(unsigned, record, dest, amount, login_signature)


@dataclass(frozen=True, slots=True)
class ApprovedPayout:
    """A wallet's `billing.pay` of one of its open invoices, as the finalized chain has it."""

    unsigned: UnsignedTransaction
    record: wallets.WalletRecord
    invoice: billing.Invoice

    @property
    def group_key(self) -> AccountId:
        return AccountId(self.unsigned.sender)

    @property
    def payload(self) -> bytes:
        payload: bytes = self.unsigned.signing_payload()
        return payload


def payout_transaction(
    genesis_hash: Hash32, invoice: billing.Invoice, nonce: int
) -> UnsignedTransaction:
    """The one transaction that pays `invoice`: `billing.pay` from its wallet, the payees its
    lines, no tip. Coordinators build it and members compare what they are asked to sign with
    it, byte for byte."""
    call = PAY.call(invoice=invoice.id, payees=billing.encode_payees(invoice.lines))
    return UnsignedTransaction(genesis_hash, invoice.wallet, nonce, 0, call)


def approved_payout(
    ledger: WalletLedger,
    node_id: AccountId,
    raw: bytes,
    *,
    coordinator: AccountId | None = None,
) -> ApprovedPayout:
    """What a member checks, on its own finalized state, before it signs a payout: a
    `billing.pay` of this chain from a wallet of which `node_id` is a member (coordinated by
    another member, when `coordinator` is given), of an open invoice of that wallet, with payees
    equal to the invoice's lines, no tip and a nonce the wallet may use next. `Refused` with
    the first reason it is not: such a transaction is never signed on anyone's word."""
    unsigned = decode_unsigned(raw, ledger.genesis_hash)
    group_key = AccountId(unsigned.sender)
    state = ledger.finalized_state()
    record = _signing_wallet(state, group_key, node_id, coordinator)
    call = unsigned.call
    if (call.module, call.function) != (PAY.module.encode(), PAY.name.encode()):
        raise Refused(RefusalReason.NOT_A_PAYOUT, "a payout is a billing.pay transaction")
    try:
        invoice_id, payees_raw = PAY.decode_args(call.args)
    except InvalidTransaction as exc:
        raise Refused(RefusalReason.NOT_A_PAYOUT, exc.message) from None
    invoice = billing.invoice(state, invoice_id)
    if invoice is None:
        raise Refused(RefusalReason.UNKNOWN_INVOICE, f"no invoice {invoice_id} is finalized")
    if invoice.wallet != group_key:
        raise Refused(
            RefusalReason.NOT_A_PAYOUT,
            f"invoice {invoice_id} is owed by wallet 0x{invoice.wallet.hex()}, not this one",
        )
    if invoice.paid:
        raise Refused(RefusalReason.INVOICE_CLOSED, f"invoice {invoice_id} is paid")
    try:
        payees = billing.decode_payees(codec.decode(payees_raw))
    except codec.CodecError as exc:
        raise Refused(RefusalReason.PAYOUT_MISMATCH, f"payees: {exc}") from None
    if payees != invoice.lines:
        raise Refused(
            RefusalReason.PAYOUT_MISMATCH,
            f"the payees differ from invoice {invoice_id}'s lines ({len(invoice.lines)} "
            f"operators, {invoice.total} in total)",
        )
    expected = payout_transaction(ledger.genesis_hash, invoice, unsigned.nonce)
    if rlp.encode(expected) != raw:
        raise Refused(RefusalReason.NOT_A_PAYOUT, "a payout carries no tip")
    first = system.account(state, group_key).nonce
    if not first <= unsigned.nonce < first + PAYOUT_NONCE_WINDOW:
        raise Refused(
            RefusalReason.WRONG_NONCE,
            f"nonce {unsigned.nonce} is not one the wallet may use next (from {first}, at most "
            f"{PAYOUT_NONCE_WINDOW - 1} ahead)",
        )
    return ApprovedPayout(unsigned, record, invoice)


def encode_vault_shares(public: PublicKeyPackage, committee_size: int) -> bytes:
    """The verifying shares a vault registers: member i's (identifier i) in place i, empty for
    a member the DKG disqualified."""
    shares = public.verifying_shares
    return wallets.encode_verifying_shares(
        [
            shares[as_identifier(i)].encoding if as_identifier(i) in shares else b""
            for i in range(1, committee_size + 1)
        ]
    )


def _signing_wallet(
    state: StateReader, group_key: AccountId, node_id: AccountId, coordinator: AccountId | None
) -> wallets.WalletRecord:
    """The signing wallet `group_key` of which `node_id` is a member, its signing coordinated by
    a member (when `coordinator` is given). `Refused` with the first reason it is not."""
    record = wallets.get_wallet(state, group_key)
    if record is None:
        raise Refused(RefusalReason.UNKNOWN_WALLET, f"no wallet 0x{group_key.hex()} is registered")
    if node_id not in record.committee:
        raise Refused(RefusalReason.NOT_A_MEMBER, "this node is not in the wallet's committee")
    if coordinator is not None and coordinator not in record.committee:
        raise Refused(
            RefusalReason.NOT_FROM_COMMITTEE,
            "a wallet's signing is coordinated by a member of its committee only",
        )
    if record.purpose is not wallets.Purpose.SIGNING:
        raise Refused(RefusalReason.WRONG_PURPOSE, "a vault key never signs")
    return record


def decode_unsigned(raw: bytes, genesis_hash: Hash32) -> UnsignedTransaction:
    """A wallet transaction to sign: canonical RLP, for this chain."""
    try:
        unsigned = decode(raw, UnsignedTransaction)
    except (rlp.DecodingError, rlp.DeserializationError) as exc:
        raise Refused(RefusalReason.MALFORMED, f"not an unsigned transaction: {exc}") from None
    if rlp.encode(unsigned) != raw:
        raise Refused(RefusalReason.MALFORMED, "the transaction is not canonically encoded")
    if unsigned.genesis_hash != genesis_hash:
        raise Refused(RefusalReason.WRONG_CHAIN, "the transaction is for another chain")
    return unsigned  # type: ignore[no-any-return]


def _bounded_put(table: dict[bytes, V], key: bytes, value: V, limit: int) -> None:
    while len(table) >= limit:
        del table[next(iter(table))]
    table[key] = value
