"""Threshold Ed25519 signing for the platform wallet: FROST(Ed25519, SHA-512) as in RFC 9591,
with trusted-dealer and Pedersen DKG key generation. Pure and synchronous; the network rounds
are built on top of these messages and state machines."""

from wallet.frost.dealer import DealerOutput, split_secret, trusted_dealer_keygen
from wallet.frost.dkg import (
    Disqualification,
    DisqualificationReason,
    DkgMember,
    DkgOutput,
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
from wallet.frost.errors import FrostError
from wallet.frost.group import Point, Scalar
from wallet.frost.identifier import Identifier, as_identifier
from wallet.frost.keys import KeyPackage, PublicKeyPackage
from wallet.frost.polynomial import VssCommitment
from wallet.frost.share_box import open_share, seal_share
from wallet.frost.signing import (
    MessageApproval,
    SignatureShare,
    SigningCommitments,
    SigningNonces,
    SigningPackage,
    aggregate,
    commit,
    sign,
    verify_signature_share,
)

__all__ = [
    "Complaint",
    "ComplaintsMessage",
    "Confirmation",
    "DealerOutput",
    "Disqualification",
    "DisqualificationReason",
    "DkgMember",
    "DkgOutput",
    "DkgParams",
    "DkgParticipant",
    "DkgPhase",
    "FrostError",
    "Identifier",
    "KeyPackage",
    "MessageApproval",
    "Point",
    "ProofOfKnowledge",
    "PublicKeyPackage",
    "Round1Package",
    "Round2Share",
    "Scalar",
    "SignatureShare",
    "SigningCommitments",
    "SigningNonces",
    "SigningPackage",
    "VssCommitment",
    "aggregate",
    "as_identifier",
    "commit",
    "judge_complaint",
    "open_share",
    "run_in_process",
    "seal_share",
    "sign",
    "split_secret",
    "trusted_dealer_keygen",
    "verify_signature_share",
]
