"""Fetching a secret for a replica this node runs: ask every member of the owner's vault at once
for its partial decryption, check each against the member's verifying share recorded on chain,
stop at the first t valid ones, combine them and open the envelope. A member whose partial
decryption fails its proof is named (logged, and in `SecretUnavailable`'s detail when the rest
do not suffice); the plaintext lives in memory only, never in a log, a file or an error."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from chain.keys import Keypair
from chain.primitives import AccountId
from chain.runtime import secrets, wallets
from chain.state import StateReader
from wallet.errors import WalletError
from wallet.frost.elgamal import BadPartialDecryption, PartialDecryption, verify_partial
from wallet.frost.errors import FrostError
from wallet.frost.group import Point
from wallet.messages import (
    SESSION_ID_BYTES,
    Refused,
    RequestKind,
    WalletRequest,
    as_bytes,
    decode_answer,
)
from wallet.secret_partials import SecretQuery, open_answer
from wallet.vault import BadEnvelope, EnvelopeDoesNotOpen, decode_envelope, open_envelope

log = logging.getLogger("statemesh.wallet.secrets")

DEFAULT_TIMEOUT = 10.0


class SecretUnavailable(WalletError):
    """The secret cannot be opened now (fewer than t valid partial decryptions, no vault, an
    unknown version...): `reason` says why, naming the members at fault; the caller retries."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SecretLedger(Protocol):
    def finalized_state(self) -> StateReader: ...

    @property
    def finalized_number(self) -> int: ...


class MemberLink(Protocol):
    async def request(
        self,
        node_id: AccountId,
        data: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 - the p2p request takes it to reset its stream
    ) -> bytes:
        """The member's answer; raises a `WalletError` if it cannot be had."""
        ...


@dataclass(frozen=True, slots=True)
class Delivered:
    """An opened secret and who gave it."""

    values: dict[str, bytes] = field(repr=False)
    members: tuple[AccountId, ...]
    """The members whose partial decryptions were combined."""
    faulty: tuple[AccountId, ...]
    """Members whose partial decryption failed its proof."""


class SecretDelivery:
    """This node's client of the members' `secret-partial` requests."""

    __slots__ = ("_identity", "_ledger", "_link", "_local", "_rng", "_timeout")

    def __init__(
        self,
        *,
        identity: Keypair,
        ledger: SecretLedger,
        link: MemberLink,
        local: Callable[[AccountId, bytes], bytes] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._identity = identity
        self._ledger = ledger
        self._link = link
        self._local = local
        """How this node asks itself when it is a member (its `CommitteeMember.handle`)."""
        self._timeout = timeout
        self._rng = rng

    def __repr__(self) -> str:
        return f"SecretDelivery(0x{self._identity.public.hex()})"

    async def fetch(self, query: SecretQuery) -> Delivered:
        """The secret's key/value map for this replica; `SecretUnavailable` with the reason."""
        state = self._ledger.finalized_state()
        vault = wallets.vault_of(state, query.owner)
        if vault is None:
            raise SecretUnavailable(f"0x{query.owner.hex()} has no vault key yet")
        secret = secrets.secret_record(state, query.owner, query.name)
        if secret is None or secret.version != query.version:
            raise SecretUnavailable(f"{query.describe()} is not finalized here")
        try:
            envelope = decode_envelope(secret.envelope)
        except BadEnvelope as error:
            raise SecretUnavailable(f"{query.describe()}: {error}") from None
        if envelope.vault_key.encoding != vault.group_key:
            raise SecretUnavailable(f"{query.describe()} is sealed to another key than the vault")
        session = self._rng(SESSION_ID_BYTES)
        items = query.request_items(self._ledger.finalized_number)
        request = WalletRequest(RequestKind.SECRET_PARTIAL, session, items).encode()
        valid: dict[AccountId, PartialDecryption] = {}
        failures: dict[AccountId, str] = {}
        faulty: list[AccountId] = []

        async def ask(position: int, member: AccountId, done: trio.CancelScope) -> None:
            try:
                partial = await self._partial(member, session, query, request)
                if partial.identifier != position + 1:
                    raise BadPartialDecryption(
                        f"member 0x{member.hex()} answered with identifier {partial.identifier}"
                    )
                share = vault.verifying_shares[position]
                if not share:
                    raise BadPartialDecryption("the member holds no share of the vault")
                verify_partial(Point.decode(share), envelope.c1, partial)
            except BadPartialDecryption as error:
                faulty.append(member)
                failures[member] = f"bad partial decryption: {error}"
                log.warning(
                    "member 0x%s sent a bad partial decryption of %s: %s",
                    member.hex(), query.describe(), error,
                )  # fmt: skip
                return
            except (Refused, FrostError) as error:
                failures[member] = str(error)
                return
            except WalletError as error:
                failures[member] = f"unreachable: {error}"
                return
            valid[member] = partial
            if len(valid) >= vault.threshold:
                done.cancel()

        with trio.move_on_after(self._timeout) as timed_out:
            async with trio.open_nursery() as nursery:
                for position, member in enumerate(vault.committee):
                    nursery.start_soon(ask, position, member, nursery.cancel_scope)
        if len(valid) < vault.threshold:
            described = "; ".join(
                f"member 0x{m.hex()}: {why}" for m, why in sorted(failures.items())
            )
            late = " (the others did not answer in time)" if timed_out.cancelled_caught else ""
            raise SecretUnavailable(
                f"{len(valid)} of {len(vault.committee)} members gave a valid partial decryption "
                f"of {query.describe()}, {vault.threshold} needed{late}: {described}"
            )
        chosen = sorted(valid)[: vault.threshold]
        try:
            values = open_envelope(
                envelope, [valid[m] for m in chosen], query.owner, query.name, query.version
            )
        except (EnvelopeDoesNotOpen, BadEnvelope) as error:
            raise SecretUnavailable(str(error)) from None
        return Delivered(values, tuple(chosen), tuple(faulty))

    async def _partial(
        self, member: AccountId, session: bytes, query: SecretQuery, request: bytes
    ) -> PartialDecryption:
        if member == self._identity.public and self._local is not None:
            answer = self._local(member, request)
        else:
            answer = await self._link.request(member, request, timeout=self._timeout)
        box = as_bytes(decode_answer(answer), "sealed partial decryption")
        try:
            return open_answer(self._identity, member, session, query, box)
        except FrostError as error:
            # A box that does not open for us, or holds no partial decryption: the member's
            # fault, as a failed proof is.
            raise BadPartialDecryption(f"its answer: {error}") from None
