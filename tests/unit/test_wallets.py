"""The `wallets` runtime module: committee selection, wallet requests (deposit, bounds, expiry)
and their registration by the committee, paid by the requester."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import rlp

from chain.blocks import Call
from chain.keys import Keypair, sign_transaction
from chain.runtime import system, wallets
from chain.runtime.executive import Runtime, default_modules
from chain.runtime.nodes import NodeStatus
from chain.runtime.wallets import (
    CommitteeUnavailable,
    Wallets,
    confirmation_payload,
    encode_committee,
    encode_confirmations,
    register_fee_bound,
    select_committee,
)
from tests.factories import ALICE, transfer_call
from tests.unit.test_towers import NODE_KEYS, OPERATORS, TowerChain, tower_spec

(REQUEST, REGISTER, REQUEST_VAULT, REGISTER_VAULT) = Wallets().calls()
GROUP = Keypair.from_seed(b"\x51" * 32).public
LOGIN = Keypair.from_seed(b"\x52" * 32)
FUNDS = 10**12


def wallet_chain(*, funded: tuple[Keypair, ...] = (LOGIN,)) -> TowerChain:
    """Nodes 0, 1 and 2 active (towers of 2), node 3 standby (one proof is not enough); the
    `funded` keys hold FUNDS each."""
    chain = TowerChain(tower_spec(active=3))
    chain.runtime = Runtime(
        chain.spec.runtime, chain.genesis_hash, modules=(*default_modules(), Wallets())
    )
    for i in range(4):
        chain.register(i)
    for i, proofs in enumerate((2, 2, 2, 1)):
        for _ in range(proofs):
            chain.prove(i)
    chain.skip_to_epoch_end()
    chain.execute([])
    assert [chain.status(i) for i in range(4)] == [NodeStatus.ACTIVE] * 3 + [NodeStatus.STANDBY]
    for key in funded:
        chain.send(ALICE, transfer_call(key.public, FUNDS))
    return chain


@pytest.fixture(scope="module")
def chain() -> TowerChain:
    return wallet_chain()


def members(*indices: int) -> list[bytes]:
    return sorted(NODE_KEYS[i].public for i in indices)


def free(chain: TowerChain, who: bytes) -> int:
    return system.account(chain.state, who).free


def fee_paid(execution: Any, who: bytes) -> int:
    return sum(
        int(dict(e.data)["fee"])
        for e in execution.events
        if e.name == "TransactionFeePaid" and dict(e.data)["who"] == who
    )


def events(execution: Any, name: str) -> list[dict[str, Any]]:
    return [dict(e.data) for e in execution.events if e.name == name]


def registration(
    request_id: int,
    signers: list[int],
    *,
    group: bytes = GROUP,
    committee: list[bytes] | None = None,
    signed_login: bytes = LOGIN.public,
    signed_request: int | None = None,
) -> Call:
    encoded = encode_committee(committee or members(0, 1, 2))
    payload = confirmation_payload(
        request_id if signed_request is None else signed_request, group, encoded, 2, signed_login
    )
    confirmations = [(NODE_KEYS[i].public, NODE_KEYS[i].sign(payload)) for i in signers]
    return REGISTER.call(
        request=request_id, group_key=group, confirmations=encode_confirmations(confirmations)
    )


def request(chain: TowerChain, who: Keypair = LOGIN) -> tuple[int, Any]:
    request_id = wallets.next_request_id(chain.state)
    return request_id, chain.send(who, REQUEST.call())


def test_committee_is_the_highest_active_towers(chain: TowerChain) -> None:
    committee = select_committee(chain.state)
    assert committee == wallets.Committee(tuple(members(0, 1, 2)), 2)  # type: ignore[arg-type]
    two = select_committee(chain.state, size=2, threshold=2)
    assert list(two.members) == members(0, 1, 2)[:2]  # equal towers: the lowest ids
    with pytest.raises(CommitteeUnavailable) as info:
        select_committee(chain.state, size=4, threshold=3)
    assert str(info.value) == "a wallet committee needs 4 active nodes, 3 are active"
    with pytest.raises(ValueError) as bad:
        select_committee(chain.state, size=3, threshold=1)
    assert str(bad.value) == (
        "committee parameters must satisfy 2 <= t <= n <= 64 or t = n = 1, got t=1, n=3"
    )
    with pytest.raises(ValueError):
        select_committee(chain.state, size=2, threshold=1)
    (one,) = select_committee(chain.state, size=1, threshold=1).members
    assert one in members(0, 1, 2)


def test_a_request_holds_a_deposit_and_records_the_committee() -> None:
    chain = wallet_chain()
    before = free(chain, LOGIN.public)
    request_id, execution = request(chain)
    deposit = register_fee_bound(chain.runtime.config, 3)
    fee = fee_paid(execution, LOGIN.public)
    assert fee == chain.runtime.config.fee(len(chain.sign(LOGIN, REQUEST.call(), nonce=0)))
    assert free(chain, LOGIN.public) == before - fee - deposit
    record = wallets.get_request(chain.state, request_id)
    expires = chain.number + wallets.REQUEST_TTL_BLOCKS
    assert record == wallets.RequestRecord(
        LOGIN.public, tuple(members(0, 1, 2)), 2, chain.number, expires, deposit
    )  # type: ignore[arg-type]
    assert events(execution, "WalletRequested") == [
        {
            "request": request_id, "login": LOGIN.public,
            "coordinator": wallets.coordinator_of(request_id, record.committee),
            "members": 3, "threshold": 2, "deposit": deposit, "expires_at": expires,
        }
    ]  # fmt: skip
    assert wallets.pending_requests(chain.state, LOGIN.public) == 1
    assert wallets.requests_made_at(chain.state, chain.number) == [request_id]


def test_register_completes_the_request_and_costs_the_submitter_nothing() -> None:
    chain = wallet_chain()
    start = free(chain, LOGIN.public)
    request_id, requested = request(chain)
    submitter = OPERATORS[1]  # node 1's operator
    before = free(chain, submitter.public)
    execution = chain.send(submitter, registration(request_id, [0, 2]))
    assert execution.outcomes[0].error is None
    register_fee = fee_paid(execution, submitter.public)
    assert free(chain, submitter.public) == before
    # The requester paid both fees and nothing else: the rest of the deposit came back.
    assert free(chain, LOGIN.public) == start - fee_paid(requested, LOGIN.public) - register_fee
    record = wallets.get_wallet(chain.state, GROUP)
    assert record == wallets.WalletRecord(tuple(members(0, 1, 2)), 2, LOGIN.public, chain.number)  # type: ignore[arg-type]
    assert events(execution, "WalletRegistered") == [
        {
            "wallet": GROUP, "login": LOGIN.public, "request": request_id, "members": 3,
            "threshold": 2, "refunded": register_fee,
        }
    ]  # fmt: skip
    assert wallets.get_request(chain.state, request_id) is None
    assert wallets.wallet_of_request(chain.state, request_id) == GROUP
    assert wallets.pending_requests(chain.state, LOGIN.public) == 0
    assert chain.refuse(submitter, registration(request_id, [0, 1])) == (
        f"wallets.UnknownRequest: no wallet request {request_id} is pending"
    )


def test_a_member_node_key_may_register_too() -> None:
    chain = wallet_chain(funded=(LOGIN, NODE_KEYS[2]))
    request_id, _ = request(chain)
    before = free(chain, NODE_KEYS[2].public)
    chain.send(NODE_KEYS[2], registration(request_id, [1, 2]))
    assert wallets.get_wallet(chain.state, GROUP) is not None
    assert free(chain, NODE_KEYS[2].public) == before


def test_register_refusals_change_nothing() -> None:
    chain = wallet_chain(funded=(LOGIN, Keypair.from_seed(b"\x77" * 32)))
    request_id, _ = request(chain)
    member_operator = OPERATORS[0]
    stranger = Keypair.from_seed(b"\x77" * 32)
    assert chain.refuse(member_operator, registration(request_id + 1, [0, 1])) == (
        f"wallets.UnknownRequest: no wallet request {request_id + 1} is pending"
    )
    assert chain.refuse(stranger, registration(request_id, [0, 1])) == (
        f"wallets.NotAMember: 0x{stranger.public.hex()} is neither a member of request "
        f"{request_id}'s committee nor a member's operator"
    )
    standby_operator = OPERATORS[3]  # node 3 is registered, but not in the committee
    assert chain.refuse(standby_operator, registration(request_id, [0, 1])).startswith(
        "wallets.NotAMember: "
    )
    assert chain.refuse(member_operator, registration(request_id, [0])) == (
        "wallets.NotEnoughConfirmations: 1 committee members confirmed, the threshold is 2"
    )
    outsider = NODE_KEYS[3].public
    assert chain.refuse(member_operator, registration(request_id, [0, 3])) == (
        f"wallets.BadConfirmation: node 0x{outsider.hex()} confirmed but is not a committee member"
    )
    assert chain.refuse(member_operator, registration(request_id, [0, 0])) == (
        f"wallets.BadConfirmation: node 0x{NODE_KEYS[0].public.hex()} confirmed twice"
    )
    forged = f"the confirmation of node 0x{NODE_KEYS[0].public.hex()} is not its node key's"
    other_login = Keypair.from_seed(b"\x53" * 32).public
    assert chain.refuse(
        member_operator, registration(request_id, [0, 1], signed_login=other_login)
    ) == (f"wallets.BadConfirmation: {forged} signature of this wallet")
    assert chain.refuse(
        member_operator, registration(request_id, [0, 1], signed_request=request_id + 7)
    ) == (f"wallets.BadConfirmation: {forged} signature of this wallet")
    garbage = REGISTER.call(request=request_id, group_key=GROUP, confirmations=b"\x01\x02")
    assert chain.refuse(member_operator, garbage).startswith("wallets.BadConfirmation: ")
    assert wallets.get_wallet(chain.state, GROUP) is None
    assert wallets.get_request(chain.state, request_id) is not None


def test_a_wallet_key_registers_once() -> None:
    chain = wallet_chain()
    first, _ = request(chain)
    second, _ = request(chain)
    chain.send(OPERATORS[0], registration(first, [0, 1]))
    assert chain.refuse(OPERATORS[0], registration(second, [0, 1])) == (
        f"wallets.WalletExists: wallet 0x{GROUP.hex()} is registered"
    )


def test_pending_requests_per_account_are_bounded() -> None:
    chain = wallet_chain()
    for _ in range(wallets.MAX_PENDING_PER_ACCOUNT):
        request(chain)
    assert chain.refuse(LOGIN, REQUEST.call()) == (
        f"wallets.TooManyRequests: the account has {wallets.MAX_PENDING_PER_ACCOUNT} wallet "
        f"requests pending, at most {wallets.MAX_PENDING_PER_ACCOUNT} allowed"
    )
    # Another account is not held back by this one.
    chain.send(ALICE, REQUEST.call())


def test_a_request_expires_and_its_deposit_comes_back() -> None:
    chain = wallet_chain()
    start = free(chain, LOGIN.public)
    request_id, requested = request(chain)
    deposit = register_fee_bound(chain.runtime.config, 3)
    for _ in range(wallets.REQUEST_TTL_BLOCKS - 1):
        chain.execute([])
    assert wallets.get_request(chain.state, request_id) is not None
    execution = chain.execute([])
    assert events(execution, "WalletRequestExpired") == [
        {"request": request_id, "login": LOGIN.public, "deposit": deposit}
    ]
    assert wallets.get_request(chain.state, request_id) is None
    assert wallets.pending_requests(chain.state, LOGIN.public) == 0
    assert free(chain, LOGIN.public) == start - fee_paid(requested, LOGIN.public)
    assert chain.refuse(OPERATORS[0], registration(request_id, [0, 1])) == (
        f"wallets.UnknownRequest: no wallet request {request_id} is pending"
    )


def test_request_refusals_change_nothing() -> None:
    poor = Keypair.from_seed(b"\x78" * 32)
    chain = wallet_chain(funded=(LOGIN,))
    fee = chain.runtime.config.fee(len(chain.sign(poor, REQUEST.call(), nonce=0)))
    chain.send(ALICE, transfer_call(poor.public, fee + 10**6))
    deposit = register_fee_bound(chain.runtime.config, 3)
    assert chain.refuse(poor, REQUEST.call()) == (
        f"wallets.InsufficientDeposit: the deposit is {deposit}, the free balance {10**6}"
    )
    with_args = Call(b"wallets", b"request", rlp.encode([b"x"]))
    assert chain.refuse(LOGIN, with_args) == (
        "wallets.request takes (): expected a list of 0 arguments"
    )
    empty = TowerChain(tower_spec(active=3))
    assert empty.refuse(ALICE, REQUEST.call()) == (
        "wallets.CommitteeUnavailable: a wallet committee needs 3 active nodes, 0 are active"
    )


@pytest.mark.parametrize("size", [3, wallets.MAX_COMMITTEE])
def test_the_deposit_covers_the_largest_registration(chain: TowerChain, size: int) -> None:
    """A registration with every member's confirmation and the largest request id fits the
    size the deposit pays for."""
    keys = [Keypair.from_seed(i.to_bytes(32, "big")) for i in range(1, size + 1)]
    confirmations = [(k.public, k.sign(b"x" * 40)) for k in keys]
    call = REGISTER.call(
        request=2**64 - 1, group_key=GROUP, confirmations=encode_confirmations(confirmations)
    )
    tx = sign_transaction(
        OPERATORS[0], genesis_hash=chain.genesis_hash, nonce=2**64 - 1, call=call, tip=0
    )
    length = len(rlp.encode(tx))
    assert length <= wallets.REGISTER_BASE_BYTES + wallets.REGISTER_BYTES_PER_MEMBER * size
    assert chain.runtime.config.fee(length) <= register_fee_bound(chain.runtime.config, size)


def test_a_one_node_committee_requests_and_registers_with_one_confirmation() -> None:
    chain = wallet_chain()
    one = replace(chain.runtime.config, wallet_committee_size=1, wallet_threshold=1)
    chain.runtime = Runtime(one, chain.genesis_hash, modules=(*default_modules(), Wallets()))
    request_id, _ = request(chain)
    record = wallets.get_request(chain.state, request_id)
    assert record is not None and (len(record.committee), record.threshold) == (1, 1)
    (member,) = record.committee
    node = next(i for i, key in enumerate(NODE_KEYS) if key.public == member)
    encoded = encode_committee([member])
    payload = confirmation_payload(request_id, GROUP, encoded, 1, LOGIN.public)
    stranger = next(i for i in range(3) if i != node)
    forged = REGISTER.call(
        request=request_id,
        group_key=GROUP,
        confirmations=encode_confirmations(
            [(NODE_KEYS[stranger].public, NODE_KEYS[stranger].sign(payload))]
        ),
    )
    assert chain.refuse(OPERATORS[node], forged) == (
        f"wallets.BadConfirmation: node 0x{NODE_KEYS[stranger].public.hex()} confirmed but is "
        "not a committee member"
    )
    confirmations = encode_confirmations([(member, NODE_KEYS[node].sign(payload))])
    call = REGISTER.call(request=request_id, group_key=GROUP, confirmations=confirmations)
    execution = chain.send(OPERATORS[node], call)
    assert execution.outcomes[0].error is None  # type: ignore[attr-defined]
    assert wallets.get_wallet(chain.state, GROUP) == wallets.WalletRecord(
        (member,), 1, LOGIN.public, chain.number
    )
