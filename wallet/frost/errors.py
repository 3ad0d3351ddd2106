"""The errors of the FROST library: one small tree whose members name, in `culprits`, the
participants whose input caused them, so a transport can penalise exactly those peers."""

from __future__ import annotations

from collections.abc import Iterable

from wallet.errors import WalletError


class FrostError(WalletError):
    """Base of every FROST error. Messages never contain secret values (shares, nonces)."""

    def __init__(self, message: str, *, culprits: Iterable[int] = ()) -> None:
        super().__init__(message)
        self.culprits: tuple[int, ...] = tuple(sorted(set(culprits)))
        """Identifiers of the participants at fault; empty when the fault is local, comes
        from the coordinator, or cannot be attributed (an unsigned or forged message)."""


# Encodings --------------------------------------------------------------------------------


class InvalidEncoding(FrostError):
    """Bytes that do not decode: wrong length, non-canonical, out of range, truncated."""


class InvalidPoint(InvalidEncoding):
    """Not the canonical encoding of a non-identity point of the prime-order subgroup."""


class InvalidScalar(InvalidEncoding):
    """Not the canonical encoding of a scalar below the group order L."""


class MalformedMessage(InvalidEncoding):
    """A message whose layout is wrong (truncated, trailing bytes, bad counts)."""


# Parameters and participants --------------------------------------------------------------


class InvalidIdentifier(FrostError):
    """An identifier outside 1..L-1 (0 would reveal the secret as a share)."""


class DuplicateIdentifier(FrostError):
    """The same identifier appears twice where each participant may appear once."""


class InvalidParameters(FrostError):
    """Thresholds or member lists that cannot form a group (e.g. t < 2 or t > n)."""


class UnknownParticipant(FrostError):
    """An identifier that is not a member of the group or session."""


# Signing ----------------------------------------------------------------------------------


class SigningError(FrostError):
    """A signing round cannot go on."""


class NonceReuse(SigningError):
    """A `SigningNonces` was used a second time; a reused nonce reveals the secret share."""


class NonceExport(SigningError):
    """An attempt to copy, pickle or otherwise persist a `SigningNonces`."""


class CommitmentMismatch(SigningError):
    """The signing package does not carry this signer's own round-one commitments."""


class UnsortedCommitments(SigningError):
    """A commitment list that is not in strictly ascending identifier order."""


class NotEnoughSigners(SigningError):
    """Fewer participants than the threshold: the API refuses instead of signing."""

    def __init__(self, message: str, *, have: int, need: int) -> None:
        super().__init__(message)
        self.have = have
        self.need = need


class MessageRejected(SigningError):
    """The signer's approval hook refused the message the coordinator asked it to sign."""


class MessageChanged(SigningError):
    """The message differs from the one these nonces were committed for in round one."""


class MissingSignatureShares(SigningError):
    """Participants that committed in round one sent no signature share."""


class UnexpectedSignatureShares(SigningError):
    """Signature shares from participants that are not in the signing package."""


class InvalidSignatureShare(SigningError):
    """Signature shares that fail verification against their signer's verifying share."""


class InvalidGroupSignature(SigningError):
    """Every share verifies but the aggregate does not: the key material is inconsistent."""


class IdentityGroupCommitment(SigningError):
    """The group commitment is the identity element; the round must start again."""


# Distributed key generation ---------------------------------------------------------------


class DkgError(FrostError):
    """A distributed key generation step cannot go on."""


class WrongSession(DkgError):
    """A message of another DKG session."""


class PhaseError(DkgError):
    """A DKG step called out of order."""


class InvalidMessageSignature(DkgError):
    """A message whose signature does not verify under its claimed sender's identity key.

    Not attributable (anyone can forge a bad signature), so `culprits` is empty and the
    claimed sender is in `claimed_sender`."""

    def __init__(self, message: str, *, claimed_sender: int) -> None:
        super().__init__(message)
        self.claimed_sender = claimed_sender


class UnexpectedMessage(DkgError):
    """A well-signed message this participant should not receive now (wrong recipient, a
    sender that is not qualified, the participant's own identifier)."""


class ConflictingMessage(DkgError):
    """A second, different, validly signed message from the same sender in one phase."""


class MissingMessages(DkgError):
    """A phase cannot finish: these members have not sent their message yet."""


class ExcludedFromGroup(DkgError):
    """This participant was disqualified; it holds no share of the group key."""


class NotEnoughQualified(DkgError):
    """Fewer qualified members remain than the threshold: no group key can be formed."""


class ConfirmationMismatch(DkgError):
    """Qualified members confirmed a different group key or qualified set than this one."""


class SealingError(FrostError):
    """A sealed share that does not open (wrong recipient, tampered, malformed)."""
