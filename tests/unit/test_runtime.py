"""The runtime: transfers, fees, tips, rejections, and the invariants over random sequences."""

from __future__ import annotations

import pytest
import rlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.blocks import Call, SignedTransaction
from chain.errors import BlockRejection, InvalidBlock, InvalidTransaction, TxRejection
from chain.keys import dev_keypair
from chain.runtime import balances, system
from chain.runtime.executive import Runtime
from tests.factories import (
    ALICE,
    BOB,
    CHARLIE,
    DAVE,
    MemoryChain,
    remark_call,
    spec_for,
    transfer_call,
)

ED = 1_000_000


@pytest.fixture
def chain() -> MemoryChain:
    return MemoryChain(spec_for(ALICE, BOB))


def free(chain: MemoryChain, who: bytes) -> int:
    return system.account(chain.state, who).free


def test_transfer_moves_funds_burns_fee_and_pays_tip(chain: MemoryChain) -> None:
    author = CHARLIE.public
    encoded = chain.sign(BOB, transfer_call(DAVE.public, 5 * ED), nonce=0, tip=7)
    fee = chain.runtime.config.fee(len(encoded))
    before = balances.total_issuance(chain.state)
    execution = chain.execute([encoded], author=author)
    assert execution.outcomes[0].error is None
    assert free(chain, BOB.public) == 10**18 - 5 * ED - fee - 7
    assert free(chain, DAVE.public) == 5 * ED
    assert free(chain, author) == 7
    assert system.account(chain.state, BOB.public).nonce == 1
    assert balances.total_issuance(chain.state) == before - fee
    names = [(e.module, e.name, e.phase) for e in execution.events]
    assert names == [
        ("balances", "TransactionFeePaid", 0),
        ("balances", "Transfer", 0),
        ("system", "ExtrinsicSuccess", 0),
    ]


def test_failed_call_pays_fee_and_reverts_call(chain: MemoryChain) -> None:
    # Valid at submission, but an earlier transfer in the same block spends the funds.
    first = chain.sign(BOB, transfer_call(DAVE.public, 10**18 - 10 * ED), nonce=0)
    second = chain.sign(BOB, transfer_call(DAVE.public, 9 * ED), nonce=1)
    execution = chain.execute([first, second])
    error = execution.outcomes[1].error
    assert error is not None and (error.module, error.error) == ("balances", "InsufficientBalance")
    assert system.account(chain.state, BOB.public).nonce == 2
    failed = [e for e in execution.events if e.name == "ExtrinsicFailed"]
    assert failed and failed[0].phase == 1


def test_new_account_needs_existential_deposit(chain: MemoryChain) -> None:
    encoded = chain.sign(BOB, transfer_call(DAVE.public, ED - 1), nonce=0)
    with pytest.raises(InvalidTransaction) as info:
        chain.runtime.validate_transaction(chain.state, encoded, chain.env())
    assert info.value.reason is TxRejection.CALL_FAILED
    assert str(info.value) == (
        "call would fail: balances.ExistentialDeposit: a new account needs at least 1000000, "
        "got 999999"
    )


def reject(chain: MemoryChain, encoded: bytes) -> InvalidTransaction:
    """Refused by the pool; unless only its call fails, a block holding it is invalid too."""
    root = chain.root
    with pytest.raises(InvalidTransaction) as info:
        chain.runtime.validate_transaction(chain.state, encoded, chain.env())
    failed_calls = (TxRejection.CALL_FAILED, TxRejection.OUTDATED, TxRejection.UNAFFORDABLE)
    if info.value.reason not in failed_calls:
        with pytest.raises(InvalidBlock) as block_info:
            chain.runtime.execute_block(chain.state, chain.env(), [encoded])
        assert block_info.value.reason is BlockRejection.INVALID_EXTRINSIC
    assert chain.root == root
    return info.value


def test_bad_signature(chain: MemoryChain) -> None:
    tx = rlp.decode(chain.sign(BOB, remark_call(b"hi"), nonce=0), sedes=SignedTransaction)
    forged = rlp.encode(tx.copy(signature=bytes(64)))
    assert reject(chain, forged).reason is TxRejection.BAD_SIGNATURE


def test_signature_by_another_key(chain: MemoryChain) -> None:
    tx = rlp.decode(chain.sign(BOB, remark_call(b"hi"), nonce=0), sedes=SignedTransaction)
    forged = rlp.encode(tx.copy(sender=ALICE.public))
    error = reject(chain, forged)
    assert str(error) == "bad signature: the signature does not match the sender and payload"


def test_wrong_genesis(chain: MemoryChain) -> None:
    other = MemoryChain(spec_for(ALICE, BOB, amount=10**17))
    error = reject(chain, other.sign(BOB, remark_call(b"x"), nonce=0))
    assert error.reason is TxRejection.WRONG_GENESIS
    assert error.message.startswith("signed for genesis 0x")


def test_stale_nonce(chain: MemoryChain) -> None:
    chain.execute([chain.sign(BOB, remark_call(b"a"), nonce=0)])
    error = reject(chain, chain.sign(BOB, remark_call(b"b"), nonce=0))
    assert str(error) == "stale nonce: nonce 0 is already used; the account's next nonce is 1"


def test_far_future_nonce(chain: MemoryChain) -> None:
    error = reject(chain, chain.sign(BOB, remark_call(b"b"), nonce=65))
    assert str(error) == (
        "future nonce: nonce 65 is 65 ahead of the account's next nonce 0; at most 64 allowed"
    )


def test_future_nonce_is_valid_for_the_pool_but_not_in_a_block(chain: MemoryChain) -> None:
    encoded = chain.sign(BOB, remark_call(b"b"), nonce=3)
    valid = chain.runtime.validate_transaction(chain.state, encoded, chain.env())
    assert (valid.nonce, valid.account_nonce) == (3, 0)
    with pytest.raises(InvalidBlock):
        chain.runtime.execute_block(chain.state, chain.env(), [encoded])


def test_insufficient_balance(chain: MemoryChain) -> None:
    """Refused as unaffordable, which the pool does not hold against the sender."""
    error = reject(chain, chain.sign(BOB, transfer_call(DAVE.public, 2 * 10**18), nonce=0))
    assert error.reason is TxRejection.UNAFFORDABLE
    assert error.message.startswith("balances.InsufficientBalance: transfer of 2000000000000000000")


def test_cannot_pay_fees(chain: MemoryChain) -> None:
    poor = dev_keypair("eve")
    error = reject(chain, chain.sign(poor, remark_call(b"x"), nonce=0))
    assert error.reason is TxRejection.CANNOT_PAY_FEES


def test_malformed(chain: MemoryChain) -> None:
    error = reject(chain, b"\xc3\x01\x02")
    assert error.reason is TxRejection.MALFORMED


def test_unknown_call(chain: MemoryChain) -> None:
    error = reject(chain, chain.sign(BOB, Call(b"balances", b"mint", b"\xc0"), nonce=0))
    assert str(error) == "unknown call: no call balances.mint in this runtime"


def test_bad_arguments(chain: MemoryChain) -> None:
    error = reject(chain, chain.sign(BOB, Call(b"balances", b"transfer", b"\xc1\x01"), nonce=0))
    assert error.reason is TxRejection.BAD_ARGUMENTS
    assert error.message.startswith("balances.transfer takes (dest: account, amount: balance)")


def test_oversize(chain: MemoryChain) -> None:
    error = reject(
        chain, chain.sign(BOB, Call(b"system", b"remark", rlp.encode([b"x" * 70_000])), nonce=0)
    )
    assert error.reason is TxRejection.OVERSIZE


KEYS = [ALICE, BOB, CHARLIE, DAVE]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 3),
            st.integers(0, 2 * 10**18),
            st.integers(0, 1000),
        ),
        max_size=12,
    )
)
def test_issuance_is_conserved_and_invalid_changes_nothing(
    transfers: list[tuple[int, int, int, int]],
) -> None:
    """For any sequence of transfers: the valid ones execute; the invalid ones are refused and
    change nothing; free balances always add up to the total issuance, and the issuance drops
    by exactly the fees."""
    chain = MemoryChain(spec_for(*KEYS))
    runtime: Runtime = chain.runtime
    initial = balances.total_issuance(chain.state)
    burned = 0
    nonces = [0, 0, 0, 0]
    for source, dest, amount, tip in transfers:
        encoded = chain.sign(
            KEYS[source], transfer_call(KEYS[dest].public, amount), nonce=nonces[source], tip=tip
        )
        root = chain.root
        try:
            runtime.validate_transaction(chain.state, encoded, chain.env())
        except InvalidTransaction:
            assert chain.root == root
            continue
        execution = chain.execute([encoded])
        assert execution.outcomes[0].error is None
        nonces[source] += 1
        burned += runtime.config.fee(len(encoded))
        total = sum(free(chain, k.public) for k in KEYS)
        assert total == balances.total_issuance(chain.state) == initial - burned


def test_revalidate_after_a_block(chain: MemoryChain) -> None:
    """Revalidation sees what a block changed: a used nonce, spent funds, a promoted nonce."""
    next_one = chain.sign(BOB, transfer_call(DAVE.public, 5 * ED), nonce=1)
    valid = chain.runtime.validate_transaction(chain.state, next_one, chain.env())
    assert valid.account_nonce == 0
    chain.execute([chain.sign(BOB, remark_call(b"a"), nonce=0)])
    assert chain.runtime.revalidate(chain.state, valid, chain.env()).account_nonce == 1
    chain.execute([next_one])
    with pytest.raises(InvalidTransaction, match="stale nonce"):
        chain.runtime.revalidate(chain.state, valid, chain.env())
    spend_all = chain.sign(BOB, transfer_call(DAVE.public, 10**18 - 10 * ED), nonce=2)
    later = chain.sign(BOB, transfer_call(DAVE.public, 5 * ED), nonce=3)
    pending = chain.runtime.validate_transaction(chain.state, later, chain.env())
    chain.execute([spend_all])
    with pytest.raises(InvalidTransaction) as info:
        chain.runtime.revalidate(chain.state, pending, chain.env())
    assert info.value.reason in (TxRejection.UNAFFORDABLE, TxRejection.CANNOT_PAY_FEES)
