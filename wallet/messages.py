"""The `wallet` request/response protocol between a coordinator and committee members: one
request kind per DKG or signing round, and an answer that is either a payload or a refusal
with a reason. RLP lists; the FROST messages inside keep their own encodings. Only committee
members send these (but `SIGN_RELAY`, and `SECRET_PARTIAL`, which a member answers only for a
replica its finalized state assigns the asking node): a member takes a request only from the
node of another member (the p2p peer id is the node key), and a DKG only for a request the
chain finalized."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chain import codec
from chain.errors import Rejection
from wallet.errors import WalletError

PROTOCOL_WALLET = "wallet"
PROTOCOL_WALLET_RELAY = "wallet-relay"
"""`SIGN_RELAY` only: its answer takes a whole signing round, so it has its own deadline and
its own few slots, and a slow relay never holds the members' protocol."""
SESSION_ID_BYTES = 32
MAX_REQUEST_BYTES = 256 * 1024
MAX_RESPONSE_BYTES = 64 * 1024


class RequestKind(enum.Enum):
    DKG_START = b"dkg-start"
    """[session, request id, attempt] -> round-1 package. The committee, threshold and login key
    are the finalized request's; the session is `wallets.dkg_session_id(request, attempt)`."""
    DKG_ROUND1 = b"dkg-round1"
    """[session, [round-1 packages]] -> [[recipient identifier, sealed share], ...]"""
    DKG_ROUND2 = b"dkg-round2"
    """[session, [sealed shares for this member]] -> complaints message"""
    DKG_COMPLAINTS = b"dkg-complaints"
    """[session, [complaints messages]] -> confirmation"""
    DKG_CONFIRM = b"dkg-confirm"
    """[session, [confirmations]] -> [group key, node key's signature of the wallet]"""
    SIGN_COMMIT = b"sign-commit"
    """[session, unsigned transaction (RLP), login signature] -> [commitments, public package]"""
    SIGN_SHARE = b"sign-share"
    """[session, signing package] -> signature share"""
    SIGN_PAYOUT = b"sign-payout"
    """[session, unsigned transaction (RLP)] -> [commitments, public package]: a wallet's
    `billing.pay` of an open invoice, whose authority is the finalized invoice itself (members
    check it against their own finalized state); then SIGN_SHARE as for a transfer."""
    SECRET_PARTIAL = b"secret-partial"
    """[session, owner, secret name, version, app, replica, the requester's finalized block]
    -> this member's partial
    decryption of the secret, sealed to the requesting node (`wallet.secret_partials`): any
    node may ask, and gets it only for a replica its members' finalized state assigns it."""
    SIGN_RELAY = b"sign-relay"
    """[session, unsigned transaction (RLP), login signature] -> [transaction hash, [signers],
    [[skipped member, reason], ...]]: a node outside a wallet's committee asks a member to
    coordinate the signing and submit the transaction (the only request any node may send)."""


class RefusalReason(enum.Enum):
    MALFORMED = "Malformed"
    NOT_A_MEMBER = "NotAMember"
    BAD_COMMITTEE = "BadCommittee"
    UNKNOWN_SESSION = "UnknownSession"
    DKG_FAILED = "DkgFailed"
    UNKNOWN_WALLET = "UnknownWallet"
    NO_SHARE = "NoShare"
    WRONG_CHAIN = "WrongChain"
    NOT_A_TRANSFER = "NotATransfer"
    BAD_LOGIN_SIGNATURE = "BadLoginSignature"
    SIGNING_FAILED = "SigningFailed"
    UNKNOWN_REQUEST = "UnknownRequest"
    NOT_FROM_COMMITTEE = "NotFromCommittee"
    """The sending node is not the member this request may come from: ignored."""
    BUSY = "Busy"
    WRONG_PURPOSE = "WrongPurpose"
    """A vault key asked to sign, or a wallet key to decrypt."""
    NOT_ASSIGNED = "NotAssigned"
    """A partial decryption asked for a replica the requesting node does not run."""
    FOREIGN_SECRET = "ForeignSecret"
    """A partial decryption asked for an application that does not read that secret of its
    owner (another owner's, or one its manifest does not name)."""
    UNKNOWN_SECRET = "UnknownSecret"
    """No such secret, or not at that version, in the member's finalized state (yet)."""
    NO_VAULT = "NoVault"
    NOT_FINAL_YET = "NotFinalYet"
    """The requester's finalized chain is ahead of the member's: asked again later."""
    STALE_VIEW = "StaleView"
    """The requester's finalized chain is behind the member's, which refuses it."""
    NOT_A_PAYOUT = "NotAPayout"
    """Not a `billing.pay` of the sending wallet, or one with a tip."""
    UNKNOWN_INVOICE = "UnknownInvoice"
    INVOICE_CLOSED = "InvoiceClosed"
    PAYOUT_MISMATCH = "PayoutMismatch"
    """The payees differ from the finalized invoice's lines."""
    WRONG_NONCE = "WrongNonce"


class Refused(Rejection[RefusalReason], WalletError):
    """A member's refusal: carried back to the coordinator as the answer."""


@dataclass(frozen=True, slots=True)
class WalletRequest:
    kind: RequestKind
    session: bytes
    items: tuple[codec.RlpItem, ...]

    def encode(self) -> bytes:
        return codec.encode([self.kind.value, self.session, *self.items])

    @classmethod
    def decode(cls, data: bytes) -> WalletRequest:
        try:
            item = codec.decode(data)
        except codec.CodecError as exc:
            raise Refused(RefusalReason.MALFORMED, f"not RLP: {exc}") from None
        if not isinstance(item, list) or len(item) < 2:
            raise Refused(RefusalReason.MALFORMED, "a request is [kind, session, ...]")
        kind_raw, session, *rest = item
        try:
            kind = RequestKind(kind_raw)
        except ValueError:
            raise Refused(RefusalReason.MALFORMED, "unknown request kind") from None
        if not isinstance(session, bytes) or len(session) != SESSION_ID_BYTES:
            raise Refused(RefusalReason.MALFORMED, f"a session id is {SESSION_ID_BYTES} bytes")
        return cls(kind, session, tuple(rest))


_OK = b"ok"
_REFUSED = b"refused"


def encode_answer(payload: codec.RlpItem) -> bytes:
    return codec.encode([_OK, payload])


def encode_refusal(refusal: Refused) -> bytes:
    return codec.encode([_REFUSED, [refusal.reason.value.encode(), refusal.message.encode()]])


def decode_answer(data: bytes) -> codec.RlpItem:
    """The payload of an answer; raises `Refused` for a refusal or an unreadable answer."""
    try:
        item = codec.decode(data)
    except codec.CodecError as exc:
        raise Refused(RefusalReason.MALFORMED, f"unreadable answer: {exc}") from None
    if not isinstance(item, list) or len(item) != 2:
        raise Refused(RefusalReason.MALFORMED, "an answer is [status, payload]")
    status, payload = item
    if status == _OK:
        return payload
    if status == _REFUSED and isinstance(payload, list) and len(payload) == 2:
        reason_raw, message = payload
        try:
            reason = RefusalReason(bytes(reason_raw).decode())  # type: ignore[arg-type]
        except (ValueError, TypeError, UnicodeDecodeError):
            reason = RefusalReason.MALFORMED
        if isinstance(message, bytes):
            raise Refused(reason, message.decode(errors="replace"))
    raise Refused(RefusalReason.MALFORMED, "an answer with an unknown status")


def as_bytes(item: codec.RlpItem, what: str) -> bytes:
    if not isinstance(item, bytes):
        raise Refused(RefusalReason.MALFORMED, f"{what} must be bytes")
    return item


def as_list(item: codec.RlpItem, what: str) -> list[codec.RlpItem]:
    if not isinstance(item, list):
        raise Refused(RefusalReason.MALFORMED, f"{what} must be a list")
    return item
