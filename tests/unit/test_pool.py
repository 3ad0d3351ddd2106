"""The transaction pool: ready and future queues, ordering, replacement, limits, bans,
revalidation after blocks, retraction and the status events watchers receive."""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import rlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from chain.blocks import Call, SignedTransaction, decode, tx_hash
from chain.errors import InvalidTransaction, TxRejection
from chain.keys import dev_keypair, sign_transaction
from chain.pool import (
    DeferredDryRuns,
    PoolEvent,
    PoolStatistics,
    PoolStatus,
    PoolUpdate,
    TransactionPool,
)
from chain.primitives import AccountId, Hash32
from chain.validity import ValidTransaction

GENESIS = Hash32(b"\x42" * 32)
BASE_FEE = 100
NAMES = ("alice", "bob", "charlie", "dave")
KEYS = {name: dev_keypair(name) for name in NAMES}
RICH = 10**12


def account(name: str) -> AccountId:
    return KEYS[name].public


@functools.cache
def encoded_tx(name: str, nonce: int, tip: int = 0, pad: int = 0) -> bytes:
    """A real signed transfer; `pad` lengthens its arguments to give it another size (and hash)."""
    args = rlp.encode([account("bob"), 10, b"\x00" * pad])
    call = Call(b"balances", b"transfer", args)
    tx = sign_transaction(KEYS[name], genesis_hash=GENESIS, nonce=nonce, call=call, tip=tip)
    return bytes(rlp.encode(tx))


def h(name: str, nonce: int, tip: int = 0, pad: int = 0) -> Hash32:
    return tx_hash(encoded_tx(name, nonce, tip, pad))


def cost(name: str, nonce: int, tip: int = 0, pad: int = 0) -> int:
    """What the fake runtime charges: base fee, a byte fee of 1 per byte, and the tip."""
    return BASE_FEE + len(encoded_tx(name, nonce, tip, pad)) + tip


@dataclass
class FakeState:
    """The runtime's validity rules over a dict of nonces and balances."""

    nonces: dict[AccountId, int] = field(default_factory=dict)
    balances: dict[AccountId, int] = field(
        default_factory=lambda: {k.public: RICH for k in KEYS.values()}
    )
    calls: int = 0
    revalidations: int = 0
    rechecks: int = 0
    doomed: set[Hash32] = field(default_factory=set)
    """Transactions whose dry run fails (as a manifest that fails late does)."""
    raced: dict[Hash32, TxRejection] = field(default_factory=dict)
    """Transactions whose dry run fails because of what others did (OUTDATED, UNAFFORDABLE)."""

    def validate(self, encoded: bytes) -> ValidTransaction:
        self.calls += 1
        try:
            tx = decode(encoded, SignedTransaction)
        except rlp.DecodingError as err:
            raise InvalidTransaction(TxRejection.MALFORMED, "not a signed transaction") from err
        nonce = self.nonces.get(tx.sender, 0)
        if tx.nonce < nonce:
            raise InvalidTransaction(
                TxRejection.STALE_NONCE, f"nonce {tx.nonce} is below the account nonce {nonce}"
            )
        fee = BASE_FEE + len(encoded)
        if self.balances.get(tx.sender, 0) < fee + tx.tip:
            raise InvalidTransaction(TxRejection.CANNOT_PAY_FEES, "the balance is too low")
        return ValidTransaction(
            hash=tx_hash(encoded),
            encoded=encoded,
            tx=tx,
            sender=tx.sender,
            nonce=tx.nonce,
            tip=tx.tip,
            account_nonce=nonce,
            fee=fee,
            balance=self.balances.get(tx.sender, 0),
            cost=fee + tx.tip,
        )

    def revalidate(self, vt: ValidTransaction) -> ValidTransaction:
        """What a new state can change: the nonce and the balance; the bytes were decoded once."""
        self.revalidations += 1
        return self._revalidate(vt, dry_run=True)

    def recheck(self, vt: ValidTransaction) -> ValidTransaction:
        """`revalidate` without the dry run."""
        self.rechecks += 1
        return self._revalidate(vt, dry_run=False)

    def _revalidate(self, vt: ValidTransaction, *, dry_run: bool) -> ValidTransaction:
        nonce = self.nonces.get(vt.sender, 0)
        if vt.nonce < nonce:
            raise InvalidTransaction(
                TxRejection.STALE_NONCE, f"nonce {vt.nonce} is below the account nonce {nonce}"
            )
        if self.balances.get(vt.sender, 0) < vt.fee + vt.tip:
            raise InvalidTransaction(TxRejection.CANNOT_PAY_FEES, "the balance is too low")
        if dry_run and vt.hash in self.doomed and vt.nonce == nonce:
            raise InvalidTransaction(TxRejection.CALL_FAILED, "apps.BadManifest: it fails late")
        if dry_run and vt.hash in self.raced and vt.nonce == nonce:
            raise InvalidTransaction(self.raced[vt.hash], "towers.StaleAnchor: it lost a race")
        return dataclasses.replace(vt, account_nonce=nonce, balance=self.balances.get(vt.sender, 0))

    def apply(self, txs: Iterable[ValidTransaction]) -> None:
        for vt in txs:
            if vt.nonce != self.nonces.get(vt.sender, 0):
                raise AssertionError(f"block applies nonce {vt.nonce} out of order")
            self.nonces[vt.sender] = vt.nonce + 1
            self.balances[vt.sender] -= vt.cost

    def unapply(self, txs: Iterable[ValidTransaction]) -> None:
        for vt in reversed(list(txs)):
            self.nonces[vt.sender] -= 1
            self.balances[vt.sender] += vt.cost


def make_pool(state: FakeState, **limits: Any) -> TransactionPool:
    return TransactionPool(state.validate, **limits)


def submit(pool: TransactionPool, name: str, nonce: int, tip: int = 0, pad: int = 0) -> Hash32:
    return pool.submit(encoded_tx(name, nonce, tip, pad), now=0.0).hash


def rejection(pool: TransactionPool, encoded: bytes, now: float = 0.0) -> tuple[TxRejection, str]:
    with pytest.raises(InvalidTransaction) as caught:
        pool.submit(encoded, now)
    return caught.value.reason, caught.value.message


def order(pool: TransactionPool) -> list[tuple[str, int]]:
    names = {account(n): n for n in NAMES}
    return [(names[vt.sender], vt.nonce) for vt in pool.ready()]


def ev(hash_: Hash32, status: PoolStatus, detail: str = "", by: Hash32 | None = None) -> PoolEvent:
    return PoolEvent(hash_, status, detail, by)


READY, FUTURE = PoolStatus.READY, PoolStatus.FUTURE
INVALID, DROPPED, USURPED = PoolStatus.INVALID, PoolStatus.DROPPED, PoolStatus.USURPED
FULL = "the pool is full"


# ---------------------------------------------------------------------- ready and future


def test_a_transaction_at_the_account_nonce_is_ready() -> None:
    pool = make_pool(FakeState())
    vt = pool.submit(encoded_tx("alice", 0), now=0.0)
    assert vt.hash == h("alice", 0)
    assert pool.status(vt.hash) == "ready"
    assert vt.hash in pool and len(pool) == 1
    assert pool.drain_events() == [ev(vt.hash, READY)]
    assert pool.drain_events() == []


def test_a_gap_makes_future_and_the_missing_nonce_promotes_the_rest() -> None:
    pool = make_pool(FakeState())
    submit(pool, "alice", 2)
    submit(pool, "alice", 1)
    assert pool.status(h("alice", 2)) == pool.status(h("alice", 1)) == "future"
    assert order(pool) == []
    submit(pool, "alice", 0)
    assert order(pool) == [("alice", 0), ("alice", 1), ("alice", 2)]
    assert pool.drain_events() == [
        ev(h("alice", 2), FUTURE, "waits for nonce 0"),
        ev(h("alice", 1), FUTURE, "waits for nonce 0"),
        ev(h("alice", 0), READY),
        ev(h("alice", 1), READY),
        ev(h("alice", 2), READY),
    ]


def test_the_account_nonce_comes_from_the_validator() -> None:
    state = FakeState(nonces={account("alice"): 5})
    pool = make_pool(state)
    submit(pool, "alice", 6)
    assert pool.status(h("alice", 6)) == "future"
    submit(pool, "alice", 5)
    assert order(pool) == [("alice", 5), ("alice", 6)]


def test_ready_takes_the_highest_tip_first_but_never_before_a_predecessor() -> None:
    pool = make_pool(FakeState())
    submit(pool, "alice", 0, tip=1)
    submit(pool, "alice", 1, tip=100)
    submit(pool, "bob", 0, tip=50)
    submit(pool, "charlie", 0, tip=50)  # same tip as bob's, arrived later
    submit(pool, "dave", 0, tip=60)
    submit(pool, "dave", 1, tip=10)
    assert order(pool) == [
        ("dave", 0),
        ("bob", 0),
        ("charlie", 0),
        ("dave", 1),
        ("alice", 0),
        ("alice", 1),
    ]


def test_an_author_may_stop_early() -> None:
    pool = make_pool(FakeState())
    for name, tip in (("alice", 3), ("bob", 2), ("charlie", 1)):
        submit(pool, name, 0, tip=tip)
    assert [vt.hash for vt in itertools.islice(pool.ready(), 2)] == [
        h("alice", 0, 3),
        h("bob", 0, 2),
    ]


def test_pending_lists_ready_then_future_and_statistics_count_both() -> None:
    pool = make_pool(FakeState())
    submit(pool, "alice", 3)
    submit(pool, "bob", 0, tip=1)
    submit(pool, "alice", 0, tip=2)
    assert [vt.hash for vt in pool.pending()] == [h("alice", 0, 2), h("bob", 0, 1), h("alice", 3)]
    size = len(encoded_tx("bob", 0, 1))
    assert pool.statistics() == PoolStatistics(
        ready_count=2,
        ready_bytes=size + len(encoded_tx("alice", 0, 2)),
        future_count=1,
        future_bytes=len(encoded_tx("alice", 3)),
        banned_count=0,
    )


# ---------------------------------------------------------------------- duplicates, replacement


def test_the_same_transaction_twice_is_already_imported() -> None:
    state = FakeState()
    pool = make_pool(state)
    submit(pool, "alice", 0)
    assert rejection(pool, encoded_tx("alice", 0)) == (
        TxRejection.ALREADY_IMPORTED,
        f"transaction 0x{h('alice', 0).hex()} is already in the pool",
    )
    assert state.calls == 1  # refused before the validator runs


def test_a_replacement_must_pay_a_strictly_higher_tip() -> None:
    pool = make_pool(FakeState())
    submit(pool, "alice", 0, tip=5)
    pool.drain_events()
    for tip in (5, 4):
        assert rejection(pool, encoded_tx("alice", 0, tip, pad=1)) == (
            TxRejection.PRIORITY_TOO_LOW,
            f"transaction 0x{h('alice', 0, 5).hex()} with the same sender and nonce 0 pays "
            f"tip 5; a replacement must pay more than that, not {tip}",
        )
    assert pool.drain_events() == []
    assert [vt.hash for vt in pool.pending()] == [h("alice", 0, 5)]


def test_a_higher_tip_usurps_and_keeps_the_successors_in_place() -> None:
    pool = make_pool(FakeState())
    submit(pool, "alice", 0, tip=5)
    submit(pool, "alice", 1)
    submit(pool, "alice", 3, tip=1)
    pool.drain_events()
    new = submit(pool, "alice", 0, tip=6)
    assert pool.status(h("alice", 0, 5)) is None
    assert pool.status(new) == "ready" and pool.status(h("alice", 1)) == "ready"
    assert pool.drain_events() == [
        ev(h("alice", 0, 5), USURPED, f"replaced by 0x{new.hex()}", new),
        ev(new, READY),
    ]
    future = submit(pool, "alice", 3, tip=2)
    assert pool.drain_events() == [
        ev(h("alice", 3, 1), USURPED, f"replaced by 0x{future.hex()}", future),
        ev(future, FUTURE, "waits for nonce 2"),
    ]
    assert order(pool) == [("alice", 0), ("alice", 1)]


# ---------------------------------------------------------------------- bans


def test_an_invalid_transaction_is_banned_until_the_ban_expires() -> None:
    state = FakeState(balances={})
    pool = make_pool(state, ban_seconds=30.0)
    encoded = encoded_tx("alice", 0)
    assert rejection(pool, encoded, now=100.0) == (
        TxRejection.CANNOT_PAY_FEES,
        "the balance is too low",
    )
    state.balances[account("alice")] = RICH
    assert rejection(pool, encoded, now=110.0) == (
        TxRejection.TEMPORARILY_BANNED,
        f"transaction 0x{h('alice', 0).hex()} is temporarily banned for another 20.0 s "
        "after being found invalid or included",
    )
    assert state.calls == 1
    assert pool.is_banned(h("alice", 0), 129.9)
    assert pool.statistics().banned_count == 1
    assert pool.submit(encoded, now=130.0).hash == h("alice", 0)
    assert pool.statistics().banned_count == 0


def test_malformed_bytes_are_rejected_and_banned() -> None:
    pool = make_pool(FakeState())
    assert rejection(pool, b"\x01\x02") == (TxRejection.MALFORMED, "not a signed transaction")
    assert rejection(pool, b"\x01\x02")[0] is TxRejection.TEMPORARILY_BANNED


def test_pool_refusals_do_not_ban() -> None:
    pool = make_pool(FakeState(), max_count=1)
    submit(pool, "alice", 0, tip=5)
    assert rejection(pool, encoded_tx("bob", 0, 1))[0] is TxRejection.POOL_FULL
    assert not pool.is_banned(h("bob", 0, 1), 0.0)
    assert pool.statistics().banned_count == 0


# ---------------------------------------------------------------------- pending costs


def test_a_sender_funded_for_three_fees_gets_three_pool_entries_not_fourteen() -> None:
    state = FakeState()
    state.balances[account("alice")] = sum(cost("alice", n) for n in range(3))
    pool = make_pool(state)
    for nonce in range(3):
        submit(pool, "alice", nonce)
    spent = pool.pending_cost(account("alice"))
    for nonce in range(3, 14):
        assert rejection(pool, encoded_tx("alice", nonce)) == (
            TxRejection.CANNOT_PAY_FEES,
            f"Inability to pay some fees: the sender's 3 pending transactions already spend "
            f"{spent} of its free balance {spent}, and this one needs {cost('alice', nonce)} "
            f"(fee {cost('alice', nonce)}, tip 0)",
        )
    assert len(pool) == 3 and spent == state.balances[account("alice")]
    # A refusal for want of funds is the pool's, not the transaction's: no ban.
    assert pool.statistics().banned_count == 0


def test_the_costs_count_from_the_account_nonce_and_only_up_to_the_new_transaction() -> None:
    state = FakeState(nonces={account("alice"): 5})
    state.balances[account("alice")] = cost("alice", 5) + cost("alice", 6, tip=50) - 1
    pool = make_pool(state)
    submit(pool, "alice", 5)
    assert rejection(pool, encoded_tx("alice", 6, tip=50))[0] is TxRejection.CANNOT_PAY_FEES
    submit(pool, "alice", 6, tip=40)
    assert order(pool) == [("alice", 5), ("alice", 6)]


def test_a_replacement_is_paid_for_instead_of_the_one_it_replaces() -> None:
    state = FakeState()
    state.balances[account("alice")] = cost("alice", 0) + cost("alice", 1, tip=10)
    pool = make_pool(state)
    submit(pool, "alice", 0)
    submit(pool, "alice", 1, tip=5)
    submit(pool, "alice", 1, tip=10)  # pays 5 more, which the balance still covers
    assert rejection(pool, encoded_tx("alice", 1, tip=11))[0] is TxRejection.CANNOT_PAY_FEES
    assert pool.pending_cost(account("alice")) == state.balances[account("alice")]


def test_an_earlier_nonce_is_paid_first_and_the_latest_ones_give_way() -> None:
    state = FakeState()
    state.balances[account("alice")] = cost("alice", 1) + cost("alice", 2) + 1
    pool = make_pool(state)
    submit(pool, "alice", 1)
    submit(pool, "alice", 2)
    pool.drain_events()
    submit(pool, "alice", 0)
    spent = cost("alice", 0) + cost("alice", 1) + cost("alice", 2)
    assert pool.drain_events() == [
        ev(h("alice", 0), READY),
        ev(h("alice", 1), READY),
        ev(h("alice", 2), READY),
        ev(
            h("alice", 2),
            DROPPED,
            f"Inability to pay some fees: the sender's pending transactions would spend "
            f"{spent} of its free balance {state.balances[account('alice')]}",
        ),
    ]
    assert order(pool) == [("alice", 0), ("alice", 1)]


def test_after_a_block_the_latest_nonces_go_until_the_new_balance_pays_for_the_rest() -> None:
    state = FakeState()
    pool = make_pool(state, revalidator=state.revalidate)
    for nonce in range(4):
        submit(pool, "alice", nonce)
    submit(pool, "bob", 0)
    # Alice moves funds away by other means: what is left pays for two of her transactions.
    state.balances[account("alice")] = cost("alice", 0) + cost("alice", 1)
    pool.drain_events()
    update = pool.on_block([], now=1.0)
    assert update.dropped == (h("alice", 3), h("alice", 2))
    assert update.invalid == ()
    assert order(pool) == [("alice", 0), ("alice", 1), ("bob", 0)]
    assert [e.status for e in pool.drain_events()] == [DROPPED, DROPPED]


@settings(max_examples=60, deadline=None)
@given(
    balance=st.integers(0, 2_000),
    submissions=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 60)), max_size=20),
)
def test_pending_costs_never_exceed_the_balance(
    balance: int, submissions: list[tuple[int, int]]
) -> None:
    state = FakeState()
    state.balances[account("alice")] = balance
    pool = make_pool(state)
    for nonce, tip in submissions:
        try:
            submit(pool, "alice", nonce, tip)
        except InvalidTransaction:
            pass
        assert pool.pending_cost(account("alice")) <= balance
    # Every transaction was admitted on its own merits: nothing earlier is unpaid.
    pending = sorted(pool.pending(), key=lambda vt: vt.nonce)
    assert sum(vt.cost for vt in pending) <= balance


# ---------------------------------------------------------------------- sender bans


def doomed_tx(state: FakeState, name: str, nonce: int, pad: int) -> bytes:
    """A transaction whose cheap checks pass and whose dry run fails: a late-failing manifest."""
    encoded = encoded_tx(name, nonce, pad=pad)
    state.doomed.add(tx_hash(encoded))
    return encoded


def test_checks_are_cheap_and_only_the_dry_run_calls_the_revalidator() -> None:
    state = FakeState()
    pool = make_pool(state, revalidator=state.revalidate)
    checked = pool.check(encoded_tx("alice", 0), now=0.0)
    assert (state.calls, state.revalidations, len(pool)) == (1, 0, 0)
    outcome = pool.dry_run(checked)
    assert state.revalidations == 1
    assert pool.complete(checked, outcome, now=0.0) == outcome
    assert order(pool) == [("alice", 0)]


def test_a_sender_whose_dry_runs_keep_failing_is_banned_for_a_while() -> None:
    state = FakeState()
    pool = make_pool(
        state, revalidator=state.revalidate, sender_strikes=3, strike_seconds=60.0,
        sender_ban_seconds=60.0,
    )  # fmt: skip
    for pad in range(3):
        assert rejection(pool, doomed_tx(state, "alice", 0, pad), now=10.0 + pad) == (
            TxRejection.CALL_FAILED,
            "apps.BadManifest: it fails late",
        )
    revalidations = state.revalidations
    assert rejection(pool, doomed_tx(state, "alice", 0, pad=3), now=20.0) == (
        TxRejection.TEMPORARILY_BANNED,
        f"sender {KEYS['alice'].address} is temporarily banned for another 52.0 s: 3 of its "
        "transactions failed their dry run within 60 s",
    )
    # Refused before the dry run, and good transactions of the sender are refused as well.
    good = encoded_tx("alice", 0, pad=10)
    assert rejection(pool, good, now=20.0)[0] is TxRejection.TEMPORARILY_BANNED
    assert state.revalidations == revalidations
    assert pool.sender_banned_until(account("alice"), 20.0) == 72.0
    assert pool.statistics().banned_senders == 1
    # Others are not affected, and the ban ends.
    submit(pool, "bob", 0)
    assert pool.submit(good, now=72.0).sender == account("alice")
    assert pool.statistics().banned_senders == 0


@pytest.mark.parametrize("reason", [TxRejection.OUTDATED, TxRejection.UNAFFORDABLE])
def test_dry_runs_that_lost_a_race_are_not_held_against_the_sender(reason: TxRejection) -> None:
    """A prover's proof whose anchor aged out while it waited, a payout another committee member
    beat, a transfer above a balance the sender's other transaction spent: each is refused and
    its hash banned, and however many there are, the sender is not (an honest node racing the
    chain would otherwise lock itself out of the pool)."""
    state = FakeState()
    pool = make_pool(state, revalidator=state.revalidate, sender_strikes=3)
    for pad in range(10):
        raced = encoded_tx("alice", 0, pad=pad)
        state.raced[tx_hash(raced)] = reason
        assert rejection(pool, raced, now=float(pad))[0] is reason
        assert rejection(pool, raced, now=float(pad))[0] is TxRejection.TEMPORARILY_BANNED
    assert pool.sender_banned_until(account("alice"), 10.0) is None
    assert pool.submit(encoded_tx("alice", 0, pad=99), now=10.0).sender == account("alice")


def test_strikes_older_than_the_window_are_forgotten() -> None:
    state = FakeState()
    pool = make_pool(state, revalidator=state.revalidate, strike_seconds=10.0)
    for pad, now in enumerate([0.0, 5.0, 10.5, 16.0]):
        assert rejection(pool, doomed_tx(state, "alice", 0, pad), now)[0] is TxRejection.CALL_FAILED
    assert rejection(pool, doomed_tx(state, "alice", 0, 9), 17.0)[0] is TxRejection.CALL_FAILED
    assert pool.sender_banned_until(account("alice"), 17.0) == 17.0 + 60.0


def test_nobody_can_get_another_sender_banned() -> None:
    """Claiming Alice as sender without her key fails the signature check, before any dry run;
    replaying a failed transaction of hers, once its own ban is over, counts against her once."""
    state = FakeState()

    def check_signature(encoded: bytes) -> ValidTransaction:
        tx = decode(encoded, SignedTransaction)
        if tx.signature != decode(encoded_tx("alice", tx.nonce), SignedTransaction).signature:
            raise InvalidTransaction(TxRejection.BAD_SIGNATURE, "the signature does not match")
        return state.validate(encoded)

    pool = TransactionPool(check_signature, revalidator=state.revalidate, ban_seconds=1.0)
    for pad in range(5):
        signed_by_bob = decode(encoded_tx("bob", 0, pad=pad), SignedTransaction)
        forged = rlp.encode(signed_by_bob.copy(sender=account("alice")))
        state.doomed.add(tx_hash(forged))
        assert rejection(pool, forged)[0] is TxRejection.BAD_SIGNATURE
    failed = encoded_tx("alice", 0)
    state.doomed.add(tx_hash(failed))
    for replay in range(5):
        assert rejection(pool, failed, now=2.0 * replay)[0] is TxRejection.CALL_FAILED
    assert state.revalidations == 5
    assert pool.sender_banned_until(account("alice"), 10.0) is None
    state.doomed.clear()
    assert pool.submit(failed, now=10.0).sender == account("alice")


def test_a_dry_run_that_fails_after_a_block_counts_against_its_sender() -> None:
    state = FakeState()
    pool = make_pool(state, revalidator=state.revalidate, sender_strikes=2)
    submit(pool, "alice", 0)
    submit(pool, "alice", 1)  # future when submitted: its dry run waits for nonce 0's block
    state.doomed.add(h("alice", 1))
    _, update = author_block(pool, state, take=1)
    assert update.invalid == (h("alice", 1),)
    assert pool.sender_banned_until(account("alice"), 0.0) is None
    encoded = doomed_tx(state, "alice", 1, pad=7)
    assert rejection(pool, encoded)[0] is TxRejection.CALL_FAILED
    assert pool.sender_banned_until(account("alice"), 0.0) == 60.0


# ---------------------------------------------------------------------- deferred dry runs

INLINE_BYTES = 2048
LARGE = 3000
"""Padding that makes a transfer longer than INLINE_BYTES: its dry run is left to the owner."""


def deferring_pool(state: FakeState, **limits: Any) -> TransactionPool:
    deferred = DeferredDryRuns(recheck=state.recheck, above_bytes=INLINE_BYTES)
    return make_pool(state, revalidator=state.revalidate, deferred=deferred, **limits)


def test_after_a_block_a_large_transaction_next_in_line_waits_for_its_dry_run() -> None:
    state = FakeState()
    pool = deferring_pool(state, sender_strikes=1)
    submit(pool, "alice", 0)
    large = submit(pool, "alice", 1, pad=LARGE)  # future: no dry run at submission
    submit(pool, "alice", 2)
    submit(pool, "bob", 0, pad=LARGE)  # stays next in line: rechecked and left again
    state.doomed.add(large)
    revalidations, rechecks = state.revalidations, state.rechecks
    _, update = author_block(pool, state, take=1)
    # Only the small one went through the revalidator; the large ones were rechecked (nonce,
    # balance) and their dry runs left to the owner.
    assert (state.revalidations - revalidations, state.rechecks - rechecks) == (1, 2)
    assert update.invalid == ()
    assert sorted(vt.hash for vt in update.unverified) == sorted([large, h("bob", 0, pad=LARGE)])
    assert order(pool) == [("alice", 1), ("alice", 2), ("bob", 0)]
    pool.drain_events()

    unverified = next(vt for vt in update.unverified if vt.hash == large)
    assert pool.settle(unverified, pool.dry_run(unverified), now=1.0)
    assert pool.drain_events() == [
        ev(large, INVALID, "call would fail: apps.BadManifest: it fails late"),
        ev(h("alice", 2), FUTURE, "waits for nonce 1"),
    ]
    assert order(pool) == [("bob", 0)]
    assert pool.is_banned(large, 1.0)
    assert pool.sender_banned_until(account("alice"), 1.0) == 61.0
    # Settled once: the same outcome again changes nothing.
    assert not pool.settle(unverified, pool.dry_run(unverified), now=1.0)
    assert pool.drain_events() == []


def test_a_dry_run_settles_nothing_once_another_block_moved_the_sender_on() -> None:
    state = FakeState()
    pool = deferring_pool(state)
    submit(pool, "alice", 0)
    submit(pool, "alice", 1, pad=LARGE)
    _, update = author_block(pool, state, take=1)
    (unverified,) = update.unverified
    state.doomed.add(unverified.hash)
    # The next block includes it before its dry run is done (it pays its fee, as a call that
    # fails in a block does): the stale outcome must not touch the pool.
    submit(pool, "alice", 2)
    _, update = author_block(pool, state, take=1)
    assert update.unverified == ()
    assert not pool.settle(unverified, pool.dry_run(unverified), now=1.0)
    assert order(pool) == [("alice", 2)]


def test_a_dry_run_that_costs_more_than_the_last_one_drops_the_latest_nonces() -> None:
    state = FakeState()
    pool = deferring_pool(state)
    submit(pool, "alice", 0)
    submit(pool, "alice", 1, pad=LARGE)
    submit(pool, "alice", 2)
    state.balances[account("alice")] = (
        cost("alice", 0) + cost("alice", 1, pad=LARGE) + cost("alice", 2) + 50
    )
    _, update = author_block(pool, state, take=1)
    (unverified,) = update.unverified
    pool.drain_events()
    # Its call moves 100 out of the balance: what is left no longer pays for nonce 2.
    moved = dataclasses.replace(unverified, cost=unverified.cost + 100)
    assert pool.settle(unverified, moved, now=1.0)
    assert [(e.hash, e.status) for e in pool.drain_events()] == [(h("alice", 2), DROPPED)]
    assert order(pool) == [("alice", 1)]
    assert pool.pending_cost(account("alice")) == moved.cost <= moved.balance


def test_a_retracted_large_transaction_is_dry_run_after_the_block_not_at_retraction() -> None:
    state = FakeState()
    pool = deferring_pool(state)
    large = submit(pool, "alice", 0, pad=LARGE)
    block, _ = author_block(pool, state)
    assert len(pool) == 0
    # A re-org takes the block back: the large one returns on the validator's checks alone, and
    # the block that follows every re-org leaves its dry run to the owner.
    state.unapply(block)
    revalidations = state.revalidations
    assert [vt.hash for vt in pool.retract([vt.encoded for vt in block], now=1.0)] == [large]
    update = pool.on_block([], now=1.0)
    assert state.revalidations == revalidations
    assert [vt.hash for vt in update.unverified] == [large]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.booleans(), min_size=1, max_size=6),
    spare=st.integers(0, 3_000),
    moved=st.integers(0, 5_000),
    fails=st.booleans(),
)
def test_settling_keeps_pending_costs_within_the_balance_and_nonces_in_order(
    sizes: list[bool], spare: int, moved: int, fails: bool
) -> None:
    state = FakeState()
    pool = deferring_pool(state)
    pads = [LARGE if large else 0 for large in sizes]
    state.balances[account("alice")] = (
        cost("alice", 0) + sum(cost("alice", n + 1, pad=p) for n, p in enumerate(pads)) + spare
    )
    submit(pool, "alice", 0)
    for nonce, pad in enumerate(pads, start=1):
        submit(pool, "alice", nonce, pad=pad)
    _, update = author_block(pool, state, take=1)
    for unverified in update.unverified:
        if fails:
            state.doomed.add(unverified.hash)
            outcome: ValidTransaction | InvalidTransaction = pool.dry_run(unverified)
        else:
            outcome = dataclasses.replace(unverified, cost=unverified.cost + moved)
        pool.settle(unverified, outcome, now=1.0)
    balance = state.balances[account("alice")]
    assert pool.pending_cost(account("alice")) <= balance
    ready = [vt.nonce for vt in pool.ready()]
    assert ready == list(range(1, 1 + len(ready)))
    # A failed head leaves its successors waiting as future; nothing else opens a gap.
    pending = sorted(vt.nonce for vt in pool.pending())
    assert pending == list(range(pending[0], pending[0] + len(pending))) if pending else True


# ---------------------------------------------------------------------- limits and eviction


def test_a_full_pool_evicts_its_lowest_tip_for_a_higher_one() -> None:
    pool = make_pool(FakeState(), max_count=3)
    submit(pool, "alice", 0, tip=1)
    submit(pool, "bob", 0, tip=2)
    submit(pool, "charlie", 0, tip=3)
    pool.drain_events()
    assert rejection(pool, encoded_tx("dave", 0, 1)) == (
        TxRejection.POOL_FULL,
        f"the pool is full (3 transactions, {3 * len(encoded_tx('alice', 0, 1))} bytes) and "
        "holds nothing of lower priority than this transaction "
        f"({len(encoded_tx('dave', 0, 1))} bytes, tip 1) to make room",
    )
    new = submit(pool, "dave", 0, tip=2)
    assert pool.drain_events() == [
        ev(h("alice", 0, 1), DROPPED, f"evicted by 0x{new.hex()}: {FULL}"),
        ev(new, READY),
    ]
    # Equal tips: the latest arrival goes first, since `ready()` would take it last.
    newest = submit(pool, "alice", 0, tip=9)
    assert pool.drain_events()[0] == ev(new, DROPPED, f"evicted by 0x{newest.hex()}: {FULL}")
    assert order(pool) == [("alice", 0), ("charlie", 0), ("bob", 0)]


def test_future_transactions_are_evicted_before_any_ready_one() -> None:
    pool = make_pool(FakeState(), max_count=3)
    submit(pool, "alice", 0, tip=5)
    submit(pool, "alice", 2, tip=9)
    submit(pool, "bob", 0, tip=5)
    new = submit(pool, "charlie", 0, tip=1)
    assert pool.status(h("alice", 2, 9)) is None
    assert pool.drain_events()[-2:] == [
        ev(h("alice", 2, 9), DROPPED, f"evicted by 0x{new.hex()}: {FULL}"),
        ev(new, READY),
    ]


def test_a_future_transaction_cannot_evict_a_ready_one() -> None:
    pool = make_pool(FakeState(), max_count=2)
    submit(pool, "alice", 0)
    submit(pool, "bob", 0)
    assert rejection(pool, encoded_tx("charlie", 1, 100))[0] is TxRejection.POOL_FULL
    assert len(pool) == 2


def test_evicting_a_ready_transaction_turns_its_successors_future() -> None:
    pool = make_pool(FakeState(), max_count=3)
    submit(pool, "alice", 0, tip=1)
    submit(pool, "alice", 1, tip=9)
    submit(pool, "bob", 0, tip=5)
    pool.drain_events()
    new = submit(pool, "charlie", 0, tip=3)
    assert pool.drain_events() == [
        ev(h("alice", 0, 1), DROPPED, f"evicted by 0x{new.hex()}: {FULL}"),
        ev(h("alice", 1, 9), FUTURE, "waits for nonce 0"),
        ev(new, READY),
    ]


def test_successors_demoted_by_an_eviction_respect_the_future_limits() -> None:
    pool = make_pool(FakeState(), max_count=4, max_future_count=1)
    submit(pool, "alice", 0, tip=1)
    submit(pool, "alice", 1, tip=2)
    submit(pool, "alice", 2, tip=2)
    submit(pool, "bob", 0, tip=5)
    pool.drain_events()
    new = submit(pool, "charlie", 0, tip=3)
    assert pool.drain_events() == [
        ev(h("alice", 0, 1), DROPPED, f"evicted by 0x{new.hex()}: {FULL}"),
        ev(h("alice", 1, 2), FUTURE, "waits for nonce 0"),
        ev(h("alice", 2, 2), FUTURE, "waits for nonce 0"),
        ev(new, READY),
        ev(h("alice", 2, 2), DROPPED, "the future queue is full"),
    ]
    assert pool.statistics().future_count == 1


def test_a_newcomer_never_evicts_its_own_predecessor() -> None:
    pool = make_pool(FakeState(), max_count=2)
    submit(pool, "alice", 0, tip=1)
    submit(pool, "bob", 0, tip=5)
    submit(pool, "alice", 1, tip=9)
    assert order(pool) == [("alice", 0), ("alice", 1)]
    assert pool.status(h("bob", 0, 5)) is None


def test_the_pool_is_limited_by_bytes_too() -> None:
    size = len(encoded_tx("alice", 0))
    pool = make_pool(FakeState(), max_bytes=3 * size)
    submit(pool, "alice", 0, tip=1)
    submit(pool, "bob", 0, tip=2)
    submit(pool, "charlie", 0, tip=3)
    big = encoded_tx("dave", 0, 4, pad=size // 2)  # needs the room of two transactions
    pool.drain_events()
    new = pool.submit(big, now=0.0).hash
    assert [e.hash for e in pool.drain_events() if e.status is DROPPED] == [
        h("alice", 0, 1),
        h("bob", 0, 2),
    ]
    assert pool.status(new) == "ready"
    assert pool.statistics().ready_bytes == size + len(big) <= 3 * size


def test_a_transaction_larger_than_the_pool_is_refused() -> None:
    pool = make_pool(FakeState(), max_bytes=100)
    size = len(encoded_tx("alice", 0))
    assert rejection(pool, encoded_tx("alice", 0)) == (
        TxRejection.POOL_FULL,
        f"the transaction is {size} bytes, more than the pool holds (100 bytes)",
    )


def test_no_room_means_nothing_is_evicted() -> None:
    size = len(encoded_tx("alice", 0))
    pool = make_pool(FakeState(), max_bytes=3 * size)
    submit(pool, "alice", 0, tip=1)
    submit(pool, "bob", 0, tip=2)
    submit(pool, "charlie", 0, tip=3)
    pool.drain_events()
    # Evicting the tip-1 and tip-2 ones would make room, but the tip-3 one would have to go too.
    big = encoded_tx("dave", 0, 3, pad=size * 3 // 2)
    assert rejection(pool, big)[0] is TxRejection.POOL_FULL
    assert pool.drain_events() == []
    assert order(pool) == [("charlie", 0), ("bob", 0), ("alice", 0)]
    # The candidates it looked at stay candidates.
    submit(pool, "dave", 0, tip=2)
    assert pool.status(h("alice", 0, 1)) is None


def test_the_future_queue_has_its_own_limits() -> None:
    pool = make_pool(FakeState(), max_future_count=2)
    submit(pool, "alice", 5, tip=1)
    submit(pool, "bob", 5, tip=2)
    assert rejection(pool, encoded_tx("charlie", 5, 1)) == (
        TxRejection.POOL_FULL,
        f"the future part of the pool is full (2 transactions, {2 * len(encoded_tx('bob', 5, 2))}"
        f" bytes) and holds nothing of lower priority than this transaction "
        f"({len(encoded_tx('charlie', 5, 1))} bytes, tip 1) to make room",
    )
    submit(pool, "charlie", 5, tip=3)
    assert pool.status(h("alice", 5, 1)) is None
    submit(pool, "dave", 0)  # ready transactions are not bound by the future limits
    assert pool.statistics().future_count == 2


def test_one_sender_cannot_fill_the_future_queue() -> None:
    pool = make_pool(FakeState(), max_future_per_sender=2)
    submit(pool, "alice", 2)
    submit(pool, "alice", 3)
    assert rejection(pool, encoded_tx("alice", 4)) == (
        TxRejection.POOL_FULL,
        "the sender already has 2 future transactions waiting in the pool, the most allowed",
    )
    submit(pool, "alice", 3, tip=1)  # a replacement takes no new place
    submit(pool, "alice", 0)  # nor does a ready one
    submit(pool, "bob", 2)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError) as caught:
        make_pool(FakeState(), max_count=0)
    assert str(caught.value) == "max_count must be at least 1, got 0"
    with pytest.raises(ValueError) as caught:
        make_pool(FakeState(), ban_seconds=-1)
    assert str(caught.value) == "ban_seconds must not be negative, got -1"


# ---------------------------------------------------------------------- blocks


def author_block(
    pool: TransactionPool, state: FakeState, take: int | None = None, now: float = 0.0
) -> tuple[list[ValidTransaction], PoolUpdate]:
    """Take what the author would, apply it to the state and tell the pool."""
    block = list(itertools.islice(pool.ready(), take))
    state.apply(block)
    return block, pool.on_block([vt.hash for vt in block], now)


def test_a_block_prunes_its_transactions_and_revalidates_the_rest() -> None:
    state = FakeState()
    pool = make_pool(state)
    submit(pool, "alice", 0, tip=9)
    submit(pool, "alice", 1, tip=9)
    submit(pool, "alice", 2)
    submit(pool, "bob", 1)  # waits for bob's nonce 0, which reaches the chain another way
    submit(pool, "charlie", 0)  # stale once charlie's nonce moves on elsewhere
    pool.drain_events()
    state.nonces[account("bob")] = 1
    state.nonces[account("charlie")] = 1
    calls = state.calls
    block, update = author_block(pool, state, take=2)
    assert [vt.hash for vt in block] == [h("alice", 0, 9), h("alice", 1, 9)]
    assert update == PoolUpdate(
        pruned=(h("alice", 0, 9), h("alice", 1, 9)),
        invalid=(h("charlie", 0),),
        dropped=(),
        promoted=(h("bob", 1),),
        demoted=(),
        revalidated=3,
    )
    assert state.calls - calls == 3
    assert pool.drain_events() == [
        ev(h("charlie", 0), INVALID, "stale nonce: nonce 0 is below the account nonce 1"),
        ev(h("bob", 1), READY),
    ]
    assert order(pool) == [("alice", 2), ("bob", 1)]
    # Invalid and included transactions are banned, so echoes cost no validation.
    for hash_, encoded in (
        (h("charlie", 0), encoded_tx("charlie", 0)),
        (block[0].hash, block[0].encoded),
    ):
        assert pool.is_banned(hash_, 0.0)
        assert rejection(pool, encoded)[0] is TxRejection.TEMPORARILY_BANNED


def test_a_block_that_lowers_a_nonce_demotes_and_may_overflow_the_future_queue() -> None:
    state = FakeState(nonces={account("alice"): 1, account("bob"): 1})
    pool = make_pool(state, max_future_count=2)
    submit(pool, "alice", 1, tip=5)
    submit(pool, "alice", 2, tip=5)
    submit(pool, "bob", 1, tip=1)
    pool.drain_events()
    state.nonces = {}  # the new best block is on a fork where neither has sent anything
    update = pool.on_block([], now=0.0)
    assert update == PoolUpdate(
        pruned=(),
        invalid=(),
        dropped=(h("bob", 1, 1),),
        promoted=(),
        demoted=(h("alice", 1, 5), h("alice", 2, 5), h("bob", 1, 1)),
        revalidated=3,
    )
    assert pool.drain_events() == [
        ev(h("alice", 1, 5), FUTURE, "waits for nonce 0"),
        ev(h("alice", 2, 5), FUTURE, "waits for nonce 0"),
        ev(h("bob", 1, 1), FUTURE, "waits for nonce 0"),
        ev(h("bob", 1, 1), DROPPED, "the future queue is full"),
    ]


def test_a_validator_failure_during_revalidation_changes_nothing() -> None:
    state = FakeState()
    pool = make_pool(state)
    submit(pool, "alice", 0)
    submit(pool, "bob", 0)

    def broken(encoded: bytes) -> ValidTransaction:
        raise RuntimeError("state unavailable")

    pool._validate = broken
    with pytest.raises(RuntimeError, match="state unavailable"):
        pool.on_block([h("alice", 0)], now=0.0)
    assert order(pool) == [("alice", 0), ("bob", 0)]
    assert not pool.is_banned(h("alice", 0), 0.0)


def test_on_block_revalidates_two_thousand_transactions() -> None:
    state = FakeState()
    pool = make_pool(state)
    for nonce in range(500):
        for name in NAMES:
            submit(pool, name, nonce, tip=nonce % 7)
    assert pool.statistics().ready_count == 2000
    _, update = author_block(pool, state, take=100)
    assert update.revalidated == 1900 and len(update.pruned) == 100
    assert pool.statistics().ready_count == 1900


def test_a_revalidator_replaces_the_validator_after_blocks() -> None:
    state = FakeState()
    pool = TransactionPool(state.validate, revalidator=state.revalidate)
    submit(pool, "alice", 0)
    submit(pool, "alice", 1)
    submit(pool, "bob", 2)
    # A submission is the validator's cheap checks, then, for the one next in line only, the
    # revalidator's dry run.
    assert (state.calls, state.revalidations) == (3, 1)
    state.nonces[account("bob")] = 3
    _, update = author_block(pool, state, take=1)
    assert (state.calls, state.revalidations) == (3, 3)
    assert update.invalid == (h("bob", 2),)
    assert [vt.account_nonce for vt in pool.ready()] == [1]


def test_mark_invalid_removes_bans_and_cuts_off_the_successors() -> None:
    pool = make_pool(FakeState())
    submit(pool, "alice", 0, tip=5)
    submit(pool, "alice", 1)
    submit(pool, "alice", 2)
    submit(pool, "bob", 0, tip=1)
    pool.drain_events()
    taken = []
    for vt in pool.ready():
        taken.append(vt.hash)
        if vt.hash == h("alice", 0, 5):
            assert pool.mark_invalid(vt.hash, now=0.0)
    assert taken == [h("alice", 0, 5), h("bob", 0, 1)]
    assert pool.drain_events() == [
        ev(h("alice", 0, 5), INVALID, "failed while a block was being built"),
        ev(h("alice", 1), FUTURE, "waits for nonce 0"),
        ev(h("alice", 2), FUTURE, "waits for nonce 0"),
    ]
    assert rejection(pool, encoded_tx("alice", 0, 5))[0] is TxRejection.TEMPORARILY_BANNED
    assert not pool.mark_invalid(h("dave", 0), now=0.0)
    assert pool.is_banned(h("dave", 0), now=0.0)
    submit(pool, "alice", 0, tip=6)
    assert order(pool) == [("alice", 0), ("bob", 0), ("alice", 1), ("alice", 2)]


def test_retract_reinjects_a_retracted_block_ignoring_bans() -> None:
    state = FakeState()
    pool = make_pool(state)
    submit(pool, "bob", 0)
    submit(pool, "alice", 0)
    submit(pool, "alice", 1)
    block, _ = author_block(pool, state, take=2)
    assert [vt.hash for vt in block] == [h("bob", 0), h("alice", 0)]
    submit(pool, "alice", 2)
    pool.drain_events()
    # The fork choice switches to a chain without that block: its state is genesis again.
    state.nonces = {}
    pooled = pool.retract([vt.encoded for vt in block], now=1.0)
    assert [vt.hash for vt in pooled] == [h("bob", 0), h("alice", 0)]
    update = pool.on_block([], now=1.0)
    assert update.invalid == () and update.dropped == ()
    assert order(pool) == [("bob", 0), ("alice", 0), ("alice", 1), ("alice", 2)]
    assert pool.drain_events() == [
        ev(h("bob", 0), READY),
        ev(h("alice", 1), FUTURE, "waits for nonce 0"),
        ev(h("alice", 2), FUTURE, "waits for nonce 0"),
        ev(h("alice", 0), READY),
        ev(h("alice", 1), READY),
        ev(h("alice", 2), READY),
    ]
    assert not pool.is_banned(h("alice", 0), now=1.0)


def test_retract_skips_transactions_invalid_on_the_new_chain() -> None:
    state = FakeState(nonces={account("alice"): 3})
    pool = make_pool(state)
    assert pool.retract([encoded_tx("alice", 1), encoded_tx("alice", 3)], now=0.0) == [
        pool.pending()[0]
    ]
    assert order(pool) == [("alice", 3)]
    assert pool.is_banned(h("alice", 1), now=0.0)


# ---------------------------------------------------------------------- properties

SUBMISSIONS = st.lists(
    st.tuples(st.sampled_from(NAMES), st.integers(0, 6), st.integers(0, 3)), max_size=40
)


@settings(max_examples=150, deadline=None)
@given(SUBMISSIONS, st.dictionaries(st.sampled_from(NAMES), st.integers(0, 2)))
def test_ready_is_contiguous_from_the_account_nonce(
    submissions: list[tuple[str, int, int]], nonces: dict[str, int]
) -> None:
    state = FakeState(nonces={account(n): v for n, v in nonces.items()})
    pool = make_pool(state)
    for name, nonce, tip in submissions:
        try:
            submit(pool, name, nonce, tip)
        except InvalidTransaction:
            pass
    check_ready_order(pool, state)


def check_ready_order(pool: TransactionPool, state: FakeState) -> list[ValidTransaction]:
    """Each sender's nonces come in order from its account nonce, and every step takes the
    highest tip among the transactions whose predecessors were taken."""
    taken = list(pool.ready())
    expected = dict(state.nonces)
    for i, vt in enumerate(taken):
        assert vt.nonce == expected.get(vt.sender, 0)
        expected[vt.sender] = vt.nonce + 1
        heads: dict[AccountId, ValidTransaction] = {}
        for later in taken[i + 1 :]:
            heads.setdefault(later.sender, later)
        assert all(vt.tip >= head.tip for sender, head in heads.items() if sender != vt.sender)
    return taken


class PoolMachine(RuleBasedStateMachine):
    """Submissions, blocks, retractions, invalid reports and time in any order, under tight
    limits: the pool's queues, statistics, limits and events always agree."""

    def __init__(self) -> None:
        super().__init__()
        self.size = len(encoded_tx("alice", 0))
        # Enough for about three transactions each: the balance binds as often as the limits.
        self.state = FakeState(balances={account(n): 3 * (BASE_FEE + self.size) for n in NAMES})
        self.pool = make_pool(
            self.state,
            max_count=8,
            max_bytes=7 * self.size,
            max_future_count=2,
            max_future_bytes=2 * self.size + 60,
            max_future_per_sender=2,
            ban_seconds=5.0,
        )
        self.now = 0.0
        self.blocks: list[list[ValidTransaction]] = []
        self.last: dict[Hash32, PoolStatus] = {}

    @rule(
        name=st.sampled_from(NAMES),
        ahead=st.integers(0, 4),
        tip=st.integers(0, 3),
        pad=st.sampled_from([0, 40]),
    )
    def submit(self, name: str, ahead: int, tip: int, pad: int) -> None:
        nonce = self.state.nonces.get(account(name), 0) + ahead
        try:
            self.pool.submit(encoded_tx(name, nonce, tip, pad), self.now)
        except InvalidTransaction as err:
            assert err.reason in {
                TxRejection.ALREADY_IMPORTED,
                TxRejection.TEMPORARILY_BANNED,
                TxRejection.PRIORITY_TOO_LOW,
                TxRejection.POOL_FULL,
                TxRejection.STALE_NONCE,
                TxRejection.CANNOT_PAY_FEES,
            }

    @rule(name=st.sampled_from(NAMES), amount=st.integers(0, 300))
    def spend_elsewhere(self, name: str, amount: int) -> None:
        """The sender's balance goes down by other means (a block the pool had nothing in)."""
        balance = self.state.balances[account(name)]
        self.state.balances[account(name)] = max(0, balance - amount)
        self.pool.on_block([], self.now)

    @rule(take=st.integers(0, 5))
    def author(self, take: int) -> None:
        block, update = author_block(self.pool, self.state, take, self.now)
        assert update.invalid == ()
        self.blocks.append(block)
        for vt in block:
            self.last.pop(vt.hash, None)

    @rule()
    def retract(self) -> None:
        if not self.blocks:
            return
        block = self.blocks.pop()
        self.state.unapply(block)
        self.pool.retract([vt.encoded for vt in block], self.now)
        self.pool.on_block([], self.now)

    @rule(index=st.integers(0, 7))
    def mark_invalid(self, index: int) -> None:
        taken = list(self.pool.ready())
        if taken:
            self.pool.mark_invalid(taken[index % len(taken)].hash, self.now)

    @rule(seconds=st.sampled_from([0.5, 3.0, 6.0]))
    def tick(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def queues_limits_and_events_agree(self) -> None:
        taken = check_ready_order(self.pool, self.state)
        pending = self.pool.pending()
        future = pending[len(taken) :]
        stats = self.pool.statistics()
        assert pending[: len(taken)] == taken
        assert stats.ready_count == len(taken)
        assert stats.ready_bytes == sum(len(vt.encoded) for vt in taken)
        assert stats.future_count == len(future) == len(pending) - len(taken)
        assert stats.future_bytes == sum(len(vt.encoded) for vt in future)
        assert len(pending) == len(self.pool) <= 8
        assert stats.ready_bytes + stats.future_bytes <= 7 * self.size
        assert stats.future_count <= 2 and stats.future_bytes <= 2 * self.size + 60
        assert all(self.pool.status(vt.hash) == "ready" for vt in taken)
        assert all(self.pool.status(vt.hash) == "future" for vt in future)
        for event in self.pool.drain_events():
            self.last[event.hash] = event.status
        for hash_, status in self.last.items():
            assert self.pool.status(hash_) == (status if status in (READY, FUTURE) else None)
        assert all(vt.hash in self.last for vt in pending)
        for name in NAMES:
            assert self.pool.pending_cost(account(name)) <= self.state.balances[account(name)]


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(
    max_examples=120,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
