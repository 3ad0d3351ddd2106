"""Vault keys in the `wallets` module: an owner asks for one, its committee registers it with
the members' verifying shares, `vault_of` reads it; a vault request is never completed as a
wallet nor a wallet request as a vault, and every bad registration changes nothing."""

from __future__ import annotations

from typing import Any

from chain import codec
from chain.blocks import Call
from chain.keys import Keypair
from chain.runtime import wallets
from chain.runtime.wallets import (
    Purpose,
    Wallets,
    confirmation_payload,
    encode_committee,
    encode_confirmations,
    encode_verifying_shares,
    register_fee_bound,
    vault_confirmation_payload,
    vault_of,
)
from tests.unit.test_towers import NODE_KEYS, OPERATORS, TowerChain
from tests.unit.test_wallets import LOGIN, events, fee_paid, free, members, wallet_chain

(REQUEST, REGISTER, REQUEST_VAULT, REGISTER_VAULT) = Wallets().calls()
VAULT = Keypair.from_seed(b"\x61" * 32).public
SHARES: list[bytes] = [bytes(Keypair.from_seed(bytes([0x62 + i]) * 32).public) for i in range(3)]


def vault_registration(
    request_id: int,
    signers: list[int],
    *,
    shares: list[bytes] = SHARES,
    signed_shares: list[bytes] | None = None,
    group: bytes = VAULT,
) -> Call:
    committee = encode_committee(members(0, 1, 2))
    payload = vault_confirmation_payload(
        request_id, group, committee, 2, LOGIN.public,
        encode_verifying_shares(shares if signed_shares is None else signed_shares),
    )  # fmt: skip
    confirmations = [(NODE_KEYS[i].public, NODE_KEYS[i].sign(payload)) for i in signers]
    return REGISTER_VAULT.call(
        request=request_id,
        group_key=group,
        verifying_shares=encode_verifying_shares(shares),
        confirmations=encode_confirmations(confirmations),
    )


def request_vault(chain: TowerChain) -> tuple[int, Any]:
    request_id = wallets.next_request_id(chain.state)
    return request_id, chain.send(LOGIN, REQUEST_VAULT.call())


def test_a_vault_is_requested_registered_and_read() -> None:
    chain = wallet_chain()
    start = free(chain, LOGIN.public)
    request_id, requested = request_vault(chain)
    record = wallets.get_request(chain.state, request_id)
    assert record is not None
    assert record.purpose is Purpose.ENCRYPTION
    assert record.deposit == register_fee_bound(chain.runtime.config, 3, Purpose.ENCRYPTION)
    assert [e["request"] for e in events(requested, "VaultRequested")] == [request_id]
    assert vault_of(chain.state, LOGIN.public) is None
    execution: Any = chain.send(OPERATORS[1], vault_registration(request_id, [0, 2]))
    assert execution.outcomes[0].error is None
    assert vault_of(chain.state, LOGIN.public) == wallets.VaultRecord(
        VAULT,
        tuple(members(0, 1, 2)),  # type: ignore[arg-type]
        2,
        tuple(SHARES),
        chain.number,
    )
    wallet = wallets.get_wallet(chain.state, VAULT)
    assert wallet is not None
    assert wallet.purpose is Purpose.ENCRYPTION
    refund = fee_paid(execution, OPERATORS[1].public)
    assert events(execution, "VaultRegistered") == [
        {
            "vault": VAULT, "owner": LOGIN.public, "request": request_id, "members": 3,
            "threshold": 2, "refunded": refund,
        }
    ]  # fmt: skip
    assert free(chain, LOGIN.public) == start - fee_paid(requested, LOGIN.public) - refund
    assert chain.refuse(LOGIN, REQUEST_VAULT.call()) == (
        f"wallets.VaultExists: account 0x{LOGIN.public.hex()} has a vault key already"
    )


def test_a_disqualified_member_has_no_share_but_the_threshold_must_hold() -> None:
    chain = wallet_chain()
    request_id, _ = request_vault(chain)
    one_short = [SHARES[0], b"", b""]
    assert chain.refuse(OPERATORS[0], vault_registration(request_id, [0, 1], shares=one_short)) == (
        "wallets.BadVerifyingShares: 1 members hold shares, the threshold is 2"
    )
    two = [SHARES[0], b"", SHARES[2]]
    chain.send(OPERATORS[0], vault_registration(request_id, [0, 2], shares=two))
    vault = vault_of(chain.state, LOGIN.public)
    assert vault is not None
    assert vault.verifying_shares == (SHARES[0], b"", SHARES[2])


def test_vault_registration_refusals_change_nothing() -> None:
    chain = wallet_chain()
    request_id, _ = request_vault(chain)
    operator = OPERATORS[0]
    # Shares other than those the members signed.
    forged = vault_registration(request_id, [0, 1], signed_shares=list(reversed(SHARES)))
    assert chain.refuse(operator, forged).startswith("wallets.BadConfirmation: ")
    assert chain.refuse(operator, vault_registration(request_id, [0])) == (
        "wallets.NotEnoughConfirmations: 1 committee members confirmed, the threshold is 2"
    )
    too_few = vault_registration(request_id, [0, 1], shares=SHARES[:2])
    assert chain.refuse(operator, too_few) == (
        "wallets.BadVerifyingShares: verifying shares are a list of 3 entries"
    )
    bad_length = vault_registration(request_id, [0, 1], shares=[b"\x01" * 31, *SHARES[1:]])
    assert chain.refuse(operator, bad_length) == (
        "wallets.BadVerifyingShares: a verifying share is 32 bytes, or empty"
    )
    # A vault request is not completed as a wallet.
    payload = confirmation_payload(
        request_id, VAULT, encode_committee(members(0, 1, 2)), 2, LOGIN.public
    )
    as_wallet = REGISTER.call(
        request=request_id,
        group_key=VAULT,
        confirmations=encode_confirmations(
            [(NODE_KEYS[i].public, NODE_KEYS[i].sign(payload)) for i in (0, 1)]
        ),
    )
    assert chain.refuse(operator, as_wallet) == (
        f"wallets.WrongPurpose: request {request_id} is a vault request: complete it with "
        "register_vault"
    )
    standby_operator = OPERATORS[3]  # node 3 is registered, but not in the committee
    assert chain.refuse(standby_operator, vault_registration(request_id, [0, 1])).startswith(
        "wallets.NotAMember: "
    )
    assert vault_of(chain.state, LOGIN.public) is None
    assert wallets.get_wallet(chain.state, VAULT) is None
    assert wallets.get_request(chain.state, request_id) is not None


def test_a_wallet_request_is_not_completed_as_a_vault() -> None:
    chain = wallet_chain()
    request_id = wallets.next_request_id(chain.state)
    chain.send(LOGIN, REQUEST.call())
    assert chain.refuse(OPERATORS[0], vault_registration(request_id, [0, 1])) == (
        f"wallets.WrongPurpose: request {request_id} is a wallet request: complete it with register"
    )


def test_records_round_trip_and_old_records_read_as_signing() -> None:
    record = wallets.WalletRecord(tuple(members(0, 1)), 2, LOGIN.public, 5, Purpose.ENCRYPTION)  # type: ignore[arg-type]
    assert wallets.WalletRecord.decode(record.encode()) == record
    committee: list[codec.RlpItem] = list(members(0, 1))
    old = codec.encode([committee, codec.encode_uint(2), LOGIN.public, codec.encode_uint(5)])
    assert wallets.WalletRecord.decode(old).purpose is Purpose.SIGNING
