"""A committee member's side of platform wallets: it runs its own DKG participant for each
session a coordinator relays, keeps the resulting share encrypted, and signs a wallet
transaction only after checking it itself (a balance transfer of a registered wallet of which
it is a member, approved by the wallet's login key over the exact transaction bytes)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import rlp

from chain import codec
from chain.blocks import Call, UnsignedTransaction
from chain.errors import InvalidTransaction
from chain.primitives import AccountId, Hash32
from chain.runtime import nodes, wallets
from chain.runtime.balances import Balances
from chain.signature import verify
from chain.state import StateReader
from node.wallet_messages import (
    RefusalReason,
    Refused,
    RequestKind,
    WalletRequest,
    as_bytes,
    as_list,
    encode_answer,
    encode_refusal,
)
from node.wallet_shares import ShareStore, ShareStoreError, StoredShare
from wallet.frost import (
    ComplaintsMessage,
    Confirmation,
    DkgMember,
    DkgParams,
    DkgParticipant,
    FrostError,
    KeyPackage,
    Round1Package,
    SigningNonces,
    SigningPackage,
    as_identifier,
    commit,
    open_share,
    seal_share,
    sign,
)
from wallet.keys import Keypair

(TRANSFER,) = Balances().calls()
V = TypeVar("V")
MAX_SESSIONS = 64
"""Sessions in flight per kind; the oldest is dropped beyond this (its nonces with it)."""


class WalletLedger(Protocol):
    """What the wallet service reads from and submits to the chain."""

    @property
    def genesis_hash(self) -> Hash32: ...

    def state(self) -> StateReader:
        """The best block's state."""
        ...

    def next_nonce(self, account: AccountId) -> int: ...

    def submit(self, encoded: bytes) -> Hash32:
        """Pool a signed transaction; raises InvalidTransaction with the reason."""
        ...

    def submit_signed(self, keypair: Keypair, call: Call) -> Hash32: ...


@dataclass(frozen=True, slots=True)
class _DkgSession:
    participant: DkgParticipant
    params: DkgParams
    committee_raw: bytes
    threshold: int
    login_key: AccountId


@dataclass(frozen=True, slots=True)
class _SigningSession:
    key_package: KeyPackage
    nonces: SigningNonces
    payload: bytes
    login_key: AccountId
    login_signature: bytes


class CommitteeMember:
    """Answers `wallet` protocol requests. Every check is made here, on this node's own view
    of the chain: the coordinator is trusted with nothing but relaying."""

    __slots__ = ("_dkg", "_identity", "_ledger", "_rng", "_shares", "_signing")

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
        self._signing: dict[bytes, _SigningSession] = {}

    def __repr__(self) -> str:
        return f"CommitteeMember(0x{self._identity.public.hex()})"

    @property
    def node_id(self) -> AccountId:
        return self._identity.public

    def sessions_in_flight(self) -> tuple[int, int]:
        """(DKG sessions, signing sessions) held in memory."""
        return len(self._dkg), len(self._signing)

    def handle(self, data: bytes) -> bytes:
        """One request in, one answer out; a refusal is an answer too."""
        try:
            request = WalletRequest.decode(data)
            payload = self._dispatch(request)
        except Refused as refusal:
            return encode_refusal(refusal)
        return encode_answer(payload)

    def _dispatch(self, request: WalletRequest) -> codec.RlpItem:
        kind, session, items = request.kind, request.session, request.items
        if kind is RequestKind.DKG_START:
            return self._dkg_start(session, items)
        if kind is RequestKind.SIGN_COMMIT:
            return self._sign_commit(session, items)
        if kind is RequestKind.SIGN_SHARE:
            return self._sign_share(session, items)
        return self._dkg_step(kind, session, items)

    # DKG ----------------------------------------------------------------------------------

    def _dkg_start(self, session: bytes, items: tuple[codec.RlpItem, ...]) -> codec.RlpItem:
        if len(items) != 3:
            raise Refused(RefusalReason.MALFORMED, "dkg-start takes committee, threshold, login")
        committee_raw = as_bytes(items[0], "committee")
        try:
            committee = wallets.decode_committee(committee_raw)
            threshold = codec.uint(items[1], "threshold")
            login_key = AccountId(codec.fixed(items[2], 32, "login key"))
        except codec.CodecError as exc:
            raise Refused(RefusalReason.BAD_COMMITTEE, str(exc)) from None
        if self.node_id not in committee:
            raise Refused(RefusalReason.NOT_A_MEMBER, "this node is not in the committee")
        state = self._ledger.state()
        for member in committee:
            if nodes.get_node(state, member) is None:
                raise Refused(
                    RefusalReason.BAD_COMMITTEE, f"member 0x{member.hex()} is not a registered node"
                )
        if session in self._dkg:
            raise Refused(RefusalReason.MALFORMED, "this DKG session has started already")
        try:
            params = DkgParams.create(
                session,
                threshold,
                (DkgMember(as_identifier(i + 1), m) for i, m in enumerate(committee)),
            )
            participant = DkgParticipant(params, self._identity, rng=self._rng)
            package = participant.start()
        except FrostError as error:
            raise Refused(RefusalReason.BAD_COMMITTEE, str(error)) from None
        _bounded_put(
            self._dkg,
            session,
            _DkgSession(participant, params, committee_raw, threshold, login_key),
        )
        return package.encode()

    def _dkg_step(
        self, kind: RequestKind, session: bytes, items: tuple[codec.RlpItem, ...]
    ) -> codec.RlpItem:
        state = self._dkg.get(session)
        if state is None:
            raise Refused(RefusalReason.UNKNOWN_SESSION, "no DKG session with this id")
        if len(items) != 1:
            raise Refused(RefusalReason.MALFORMED, f"{kind.value.decode()} takes one list")
        messages = [as_bytes(m, "message") for m in as_list(items[0], "messages")]
        try:
            return self._dkg_round(kind, state, messages)
        except FrostError as error:
            del self._dkg[session]
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
        self._shares.save(group_key, StoredShare(output.key_package, output.public_key_package))
        del self._dkg[session.params.session_id]
        payload = wallets.confirmation_payload(
            group_key, session.committee_raw, session.threshold, session.login_key
        )
        return [group_key, self._identity.sign(payload)]

    # Signing ------------------------------------------------------------------------------

    def _sign_commit(self, session: bytes, items: tuple[codec.RlpItem, ...]) -> codec.RlpItem:
        if len(items) != 2:
            raise Refused(RefusalReason.MALFORMED, "sign-commit takes a transaction and a login")
        unsigned_raw = as_bytes(items[0], "transaction")
        login_signature = as_bytes(items[1], "login signature")
        unsigned = self._decode_transaction(unsigned_raw)
        payload: bytes = unsigned.signing_payload()
        group_key = AccountId(unsigned.sender)
        record = wallets.get_wallet(self._ledger.state(), group_key)
        if record is None:
            raise Refused(
                RefusalReason.UNKNOWN_WALLET, f"no wallet 0x{group_key.hex()} is registered"
            )
        if self.node_id not in record.committee:
            raise Refused(RefusalReason.NOT_A_MEMBER, "this node is not in the wallet's committee")
        call = unsigned.call
        if (call.module, call.function) != (TRANSFER.module.encode(), TRANSFER.name.encode()):
            raise Refused(RefusalReason.NOT_A_TRANSFER, "members sign balance transfers only")
        try:
            TRANSFER.decode_args(call.args)
        except InvalidTransaction as exc:
            raise Refused(RefusalReason.NOT_A_TRANSFER, exc.message) from None
        if not verify(record.login_key, payload, login_signature):
            raise Refused(
                RefusalReason.BAD_LOGIN_SIGNATURE,
                "the login signature is not the wallet login key's signature of this transaction",
            )
        if session in self._signing:
            raise Refused(RefusalReason.MALFORMED, "this signing session has started already")
        try:
            stored = self._shares.load(group_key)
        except ShareStoreError as error:
            raise Refused(RefusalReason.NO_SHARE, str(error)) from None
        if stored is None:
            raise Refused(RefusalReason.NO_SHARE, "this node holds no share of the wallet")
        nonces, commitments = commit(stored.key_package, rng=self._rng, message=payload)
        _bounded_put(
            self._signing,
            session,
            _SigningSession(stored.key_package, nonces, payload, record.login_key, login_signature),
        )
        return [commitments.encode(), stored.public_package.encode()]

    def _decode_transaction(self, raw: bytes) -> UnsignedTransaction:
        try:
            unsigned = rlp.decode(raw, sedes=UnsignedTransaction, strict=True)
        except (rlp.DecodingError, rlp.DeserializationError) as exc:
            raise Refused(RefusalReason.MALFORMED, f"not an unsigned transaction: {exc}") from None
        if rlp.encode(unsigned) != raw:
            raise Refused(RefusalReason.MALFORMED, "the transaction is not canonically encoded")
        if unsigned.genesis_hash != self._ledger.genesis_hash:
            raise Refused(RefusalReason.WRONG_CHAIN, "the transaction is for another chain")
        return unsigned  # type: ignore[no-any-return]

    def _sign_share(self, session: bytes, items: tuple[codec.RlpItem, ...]) -> codec.RlpItem:
        if len(items) != 1:
            raise Refused(RefusalReason.MALFORMED, "sign-share takes a signing package")
        state = self._signing.pop(session, None)
        if state is None:
            raise Refused(RefusalReason.UNKNOWN_SESSION, "no signing session with this id")

        def approve(message: bytes) -> bool:
            return message == state.payload and verify(
                state.login_key, message, state.login_signature
            )

        try:
            package = SigningPackage.decode(as_bytes(items[0], "signing package"))
            share = sign(state.key_package, state.nonces, package, approve=approve)
        except FrostError as error:
            raise Refused(RefusalReason.SIGNING_FAILED, str(error)) from None
        return share.encode()


def _bounded_put(table: dict[bytes, V], key: bytes, value: V) -> None:
    while len(table) >= MAX_SESSIONS:
        del table[next(iter(table))]
    table[key] = value
