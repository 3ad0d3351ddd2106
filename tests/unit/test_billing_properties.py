"""Billing never creates nor destroys funds: for random usage, prices and wallet balances, what
the operators are paid for a period is what the wallet is debited, the total issuance moves by
the transaction fees alone, and a re-org derives the invoices again from its own reports."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain import codec
from chain.errors import InvalidTransaction
from chain.genesis import ChainSpec
from chain.primitives import AccountId
from chain.runtime import balances, billing, system
from chain.runtime.billing import GIB, encode_payees
from chain.runtime.config import Prices
from chain.state import Overlay
from tests.factories import ALICE
from tests.unit.test_billing import (
    PAY,
    SET_PRICES,
    WALLET,
    billed_chain,
    deploy,
    node_of,
    report_call,
    settle,
    until_period,
    usage,
    write,
)
from tests.unit.test_towers import OPERATORS, TowerChain


@dataclass(frozen=True)
class Snapshot:
    nodes: dict[bytes, bytes]
    root: bytes
    number: int
    nonces: dict[bytes, int]
    period: int


def _snapshot() -> tuple[Snapshot, ChainSpec]:
    chain = billed_chain()
    period = deploy(chain)
    snapshot = Snapshot(dict(chain.nodes), chain.root, chain.number, dict(chain.nonces), period)
    return snapshot, chain.spec


SNAPSHOT, SPEC = _snapshot()


def restore(snapshot: Snapshot) -> TowerChain:
    chain = TowerChain(SPEC)
    chain.nodes.update(snapshot.nodes)
    chain.root = snapshot.root  # type: ignore[assignment]
    chain.number = snapshot.number
    chain.nonces = dict(snapshot.nonces)
    return chain


def fund(chain: TowerChain, amount: int) -> None:
    overlay = Overlay(chain.state)
    info = system.account(chain.state, AccountId(WALLET.public))
    system.put_account(overlay, AccountId(WALLET.public), system.AccountInfo(info.nonce, amount))
    delta = amount - info.free
    balances.set_total_issuance(overlay, balances.total_issuance(chain.state) + delta)
    write(chain, overlay)


PRICE = st.integers(min_value=0, max_value=10**12)
USAGE = st.tuples(
    st.integers(min_value=0, max_value=2_000),  # cpu ms: at most 500m for 4 s
    st.integers(min_value=0, max_value=64 * 2**20),  # peak memory: the 64 Mi limit
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prices=st.tuples(PRICE, PRICE, PRICE, PRICE, PRICE),
    usages=st.lists(USAGE, min_size=3, max_size=3),
    reported=st.lists(st.booleans(), min_size=3, max_size=3),
    funds=st.integers(min_value=10**7, max_value=10**20),
)
def test_what_operators_are_paid_is_what_the_wallet_is_debited(
    prices: tuple[int, int, int, int, int],
    usages: list[tuple[int, int]],
    reported: list[bool],
    funds: int,
) -> None:
    chain = restore(SNAPSHOT)
    period = SNAPSHOT.period
    cpu, memory, disk, gpu, minimum = prices
    chain.send(
        ALICE,
        SET_PRICES.call(
            node_class="cpu", cpu_millicore_hour=cpu, memory_gib_hour=memory,
            disk_gib_hour=disk, gpu_hour=gpu, replica_hour_minimum=minimum,
        ),
    )  # fmt: skip
    fund(chain, funds)
    until_period(chain, period + 1)
    for replica, ((cpu_ms, peak), send) in enumerate(zip(usages, reported, strict=True)):
        if send:
            node = node_of(chain, replica)
            record = usage(replica, cpu_ms=cpu_ms, memory=peak)
            chain.send(OPERATORS[node], report_call(node, period, [record]))
    settle(chain, period)
    accounts = sorted({*(o.public for o in OPERATORS[:3]), WALLET.public})
    before = {a: system.account(chain.state, AccountId(a)).free for a in accounts}
    issuance = balances.total_issuance(chain.state)
    invoices = billing.open_invoices(chain.state, WALLET.public)
    assert len(invoices) <= 1
    if not invoices:
        # Nothing owed: nothing reported, or every amount 0 at these prices.
        assert billing.next_invoice_id(chain.state) == 0
        return
    (invoice,) = invoices
    assert invoice.total == sum(amount for _, amount in invoice.lines)
    assert all(amount > 0 for _, amount in invoice.lines)
    assert sum(1 for x in reported if x) >= len(invoice.lines)
    root = chain.root
    try:
        chain.send(WALLET, PAY.call(invoice=invoice.id, payees=encode_payees(invoice.lines)))
    except InvalidTransaction as exc:
        # The wallet cannot pay: refused before any block holds it, nothing moved.
        assert exc.message.startswith("billing.InsufficientFunds")
        assert chain.root == root
        assert not billing.invoice(chain.state, invoice.id).paid  # type: ignore[union-attr]
        return
    after = {a: system.account(chain.state, AccountId(a)).free for a in accounts}
    fee = issuance - balances.total_issuance(chain.state)
    assert fee > 0  # the payout's own fee was burned, and nothing else left or came
    paid_out = sum(after[o] - before[o] for o in accounts if o != WALLET.public)
    debited = before[WALLET.public] - after[WALLET.public] - fee
    assert sum(after.values()) - sum(before.values()) == -fee
    assert paid_out == debited == invoice.total
    assert billing.invoice(chain.state, invoice.id).paid  # type: ignore[union-attr]
    for operator, amount in invoice.lines:
        assert billing.earnings(chain.state, operator)[-1] == (period, amount)


def test_a_reorg_derives_the_invoice_from_its_own_reports_and_pays_it_once() -> None:
    period = SNAPSHOT.period

    def branch(cpu_ms: int) -> TowerChain:
        chain = restore(SNAPSHOT)
        until_period(chain, period + 1)
        node = node_of(chain, 0)
        chain.send(OPERATORS[node], report_call(node, period, [usage(0, cpu_ms=cpu_ms)]))
        settle(chain, period)
        return chain

    a, b = branch(1_000), branch(2_000)
    (on_a,) = billing.open_invoices(a.state, WALLET.public)
    (on_b,) = billing.open_invoices(b.state, WALLET.public)
    assert on_a.id == on_b.id == 0 and on_a.total < on_b.total
    a.send(WALLET, PAY.call(invoice=0, payees=encode_payees(on_a.lines)))
    # The payout of branch A does not fit the invoice of branch B, nor pays it twice on A.
    assert b.refuse(WALLET, PAY.call(invoice=0, payees=encode_payees(on_a.lines))).startswith(
        "billing.PayoutMismatch"
    )
    assert a.refuse(WALLET, PAY.call(invoice=0, payees=encode_payees(on_a.lines))) == (
        "billing.InvoiceClosed: invoice 0 is already paid"
    )
    # The same blocks give the same state on every node.
    assert branch(1_000).root == branch(1_000).root


AMOUNT = st.integers(min_value=0, max_value=2**64 - 1)
HOUR = billing.HOUR_MS


@given(
    price=st.builds(Prices, PRICE, PRICE, PRICE, PRICE, PRICE),
    cpu_ms=AMOUNT,
    memory=AMOUNT,
    disk=AMOUNT,
    assigned=st.integers(min_value=0, max_value=HOUR),
    gpus=st.integers(min_value=0, max_value=16),
)
def test_a_charge_is_the_exact_fraction_floored_once_and_at_least_the_minimum(
    price: Prices, cpu_ms: int, memory: int, disk: int, assigned: int, gpus: int
) -> None:
    amount = billing.charge(
        price, cpu_ms=cpu_ms, peak_memory_bytes=memory, disk_bytes=disk,
        gpu_ms=gpus * assigned, assigned_ms=assigned,
    )  # fmt: skip
    exact = (
        Fraction(cpu_ms * 1000 * price.cpu_millicore_hour, HOUR)
        + Fraction(memory * assigned * price.memory_gib_hour, GIB * HOUR)
        + Fraction(disk * assigned * price.disk_gib_hour, GIB * HOUR)
        + Fraction(gpus * assigned * price.gpu_hour, HOUR)
    )
    assert amount == max(int(exact), price.replica_hour_minimum * assigned // HOUR)
    more = billing.charge(
        price, cpu_ms=cpu_ms + 1, peak_memory_bytes=memory, disk_bytes=disk,
        gpu_ms=gpus * assigned, assigned_ms=assigned,
    )  # fmt: skip
    assert more >= amount  # more usage never costs less


@given(
    lines=st.dictionaries(
        st.binary(min_size=32, max_size=32),
        st.integers(min_value=1, max_value=2**128 - 1),
        max_size=20,
    ),
    invoice_id=AMOUNT,
    period=AMOUNT,
    paid=st.booleans(),
)
def test_an_invoice_round_trips(
    lines: dict[bytes, int], invoice_id: int, period: int, paid: bool
) -> None:
    ordered = tuple(sorted((AccountId(k), v) for k, v in lines.items()))
    made = billing.Invoice(
        invoice_id, AccountId(b"\x01" * 32), period, ordered, sum(lines.values()), paid
    )
    assert billing.Invoice.decode(made.encode()) == made
    assert billing.decode_payees(codec.decode(encode_payees(ordered))) == ordered
    if len(ordered) >= 2:  # out of order: refused
        with pytest.raises(codec.CodecError):
            billing.decode_payees(codec.decode(encode_payees(list(reversed(ordered)))))
