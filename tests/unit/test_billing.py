"""Billing in the runtime: an application paid by a platform wallet is charged, period by
period, what its replicas used on the nodes the chain placed them on; the wallet pays its
invoice to the operators; an unpaid one suspends, then deletes, the wallet's applications."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from chain.errors import GenesisError
from chain.genesis import build_genesis, parse_spec
from chain.keys import Keypair
from chain.primitives import AccountId
from chain.runtime import apps, balances, billing, system, wallets
from chain.runtime.billing import Billing, encode_payees
from chain.runtime.config import BillingConfig, Prices
from chain.runtime.executive import BlockExecution
from chain.runtime.nodes import NodeStatus
from chain.runtime.usage import Usage, UsageRecord, encode_records, report_payload
from chain.state import Overlay, TrieState
from chain.trie import BLANK_ROOT
from node.chain_spec import development_spec
from tests.factories import ALICE, BOB, CHARLIE, DAVE
from tests.unit.test_apps import CREATE, DELETE, web
from tests.unit.test_towers import EPOCH, NODE_KEYS, OPERATORS, TowerChain, tower_spec

(REPORT,) = Usage().calls()
(PAY, SET_PRICES) = Billing().calls()
CREATE_PAID = next(c for c in apps.Apps().calls() if c.name == "create_paid")
WALLET = Keypair.from_seed(b"\x77" * 32)
"""Stands for a committee's group key: a FROST signature verifies as an Ed25519 one."""
PERIOD_S = 4
PRICES = Prices(
    cpu_millicore_hour=3_600, memory_gib_hour=7_200_000, disk_gib_hour=0, gpu_hour=0,
    replica_hour_minimum=360_000,
)  # fmt: skip
GRACE_S = 8
DELETION_S = 24
FUNDS = 10**15


def billed_chain(*, funds: int = FUNDS, measure_slack_s: int = 30) -> TowerChain:
    """Three active cpu nodes (operators bob, charlie, dave) and ALICE's platform wallet."""
    spec = tower_spec(active=4, max_misses=1_000)  # no node is jailed while the test runs
    config = BillingConfig(
        prices={"cpu": PRICES}, grace_seconds=GRACE_S, deletion_seconds=DELETION_S,
        sudo=ALICE.public, measure_slack_seconds=measure_slack_s,
    )  # fmt: skip
    runtime = replace(spec.runtime, metering_period_seconds=PERIOD_S, billing=config)
    chain = TowerChain(replace(spec, runtime=runtime))
    for i in range(3):
        chain.register(i)
    chain.execute([])
    for i in range(3):
        chain.prove(i)
    chain.skip_to_epoch_end()
    chain.execute([])
    assert [chain.status(i) for i in range(3)] == [NodeStatus.ACTIVE] * 3
    overlay = Overlay(chain.state)
    record = wallets.WalletRecord((NODE_KEYS[0].public,), 1, ALICE.public, chain.number)
    wallets.put_wallet(overlay, WALLET.public, record)
    system.put_account(overlay, AccountId(WALLET.public), system.AccountInfo(0, funds))
    balances.set_total_issuance(overlay, balances.total_issuance(chain.state) + funds)
    write(chain, overlay)
    return chain


def write(chain: TowerChain, overlay: Overlay) -> None:
    """Puts changes made outside any block into the chain's state (test set-up only)."""
    commit = chain.state.commit(overlay.changes)
    for key, node in commit.nodes.items():
        chain.nodes[key] = node
    chain.root = commit.root


def now_ms(chain: TowerChain) -> int:
    return 1_000 * (chain.number + 1)


def period_now(chain: TowerChain) -> int:
    """The metering period of the next block."""
    return now_ms(chain) // (PERIOD_S * 1000)


def step(chain: TowerChain) -> BlockExecution:
    """One block; in the first of each epoch, the three nodes prove their presence (so that
    they stay active however long the test runs)."""
    proofs = []
    if (chain.number + 1) % EPOCH == 1:
        for i in range(3):
            operator = OPERATORS[i]
            nonce = chain.nonces.get(operator.public, 0)
            proofs.append(chain.sign(operator, chain.proof_call(i), nonce=nonce))
            chain.nonces[operator.public] = nonce + 1
    execution: BlockExecution = chain.execute(proofs)
    assert [o.error for o in execution.outcomes] == [None] * len(proofs)
    return execution


def until_period(chain: TowerChain, period: int) -> None:
    while period_now(chain) < period:
        step(chain)


def settle(chain: TowerChain, period: int) -> None:
    """Runs the first block at or after the issue time of `period`, which issues its invoices."""
    while now_ms(chain) < billing.issue_time(period, PERIOD_S):
        step(chain)
    step(chain)


def node_of_app(chain: TowerChain, app: str) -> int:
    (entry,) = [e for e in apps.placement(chain.state, app) if e.node]
    return [k.public for k in NODE_KEYS].index(AccountId(entry.node))


def node_of(chain: TowerChain, replica: int) -> int:
    (entry,) = [e for e in apps.placement(chain.state, "web") if e.index == replica and e.node]
    return [k.public for k in NODE_KEYS].index(AccountId(entry.node))


def report_call(node: int, period: int, records: list[UsageRecord]):  # type: ignore[no-untyped-def]
    node_id = NODE_KEYS[node].public
    raw = encode_records(records)
    return REPORT.call(
        node_id=node_id, period=period, records=raw,
        node_signature=NODE_KEYS[node].sign(report_payload(node_id, period, raw)),
    )  # fmt: skip


def deploy(chain: TowerChain, replicas: int = 3) -> int:
    """Deploys `web`, billed to WALLET; the period from which it ran a whole period."""
    chain.send(ALICE, CREATE_PAID.call(manifest=web(replicas), wallet=WALLET.public))
    return period_now(chain) + 1


def usage(replica: int, cpu_ms: int = 1_000, memory: int = 16 * 2**20) -> UsageRecord:
    return UsageRecord("web", replica, 1, cpu_ms, memory, PERIOD_S * 1000, 0)


def total_free(chain: TowerChain) -> int:
    accounts = [*(k.public for k in (ALICE, BOB, CHARLIE, DAVE)), WALLET.public]
    return sum(system.account(chain.state, AccountId(a)).free for a in accounts)


def test_a_period_is_invoiced_and_paid_to_the_operators_of_the_nodes_that_ran_it() -> None:
    chain = billed_chain()
    period = deploy(chain)
    until_period(chain, period + 1)
    operators = sorted(OPERATORS[node_of(chain, r)].public for r in range(3))
    for replica in range(3):
        node = node_of(chain, replica)
        chain.send(OPERATORS[node], report_call(node, period, [usage(replica, cpu_ms=2_000)]))
    # A whole period (4 s) placed: 2 CPU-seconds are 2,000,000 millicore-ms, 2,000 at these
    # prices; 16 MiB (1/64 GiB) held for 4 s is 125; above the minimum for 4 s, 400.
    assert billing.charge(
        PRICES, cpu_ms=2_000, peak_memory_bytes=16 * 2**20, disk_bytes=0, gpu_ms=0,
        assigned_ms=4_000,
    ) == 2_125  # fmt: skip
    assert (
        billing.charge(
            PRICES, cpu_ms=0, peak_memory_bytes=0, disk_bytes=0, gpu_ms=0, assigned_ms=4_000
        )
        == 400
    )
    while now_ms(chain) < billing.issue_time(period, PERIOD_S):
        step(chain)
        assert billing.open_invoices(chain.state, WALLET.public) == []  # not issued yet
    step(chain)
    (invoice,) = billing.open_invoices(chain.state, WALLET.public)
    assert invoice == billing.Invoice(
        0, AccountId(WALLET.public), period, tuple((AccountId(o), 2_125) for o in operators),
        3 * 2_125, False,
    )  # fmt: skip
    assert billing.invoice(chain.state, 0) == invoice
    before = {o: system.account(chain.state, AccountId(o)).free for o in operators}
    wallet_before = system.account(chain.state, AccountId(WALLET.public)).free
    issuance, free = balances.total_issuance(chain.state), total_free(chain)
    execution = chain.send(WALLET, PAY.call(invoice=0, payees=encode_payees(invoice.lines)))
    assert [o.error for o in execution.outcomes] == [None]  # type: ignore[attr-defined]
    for o in operators:
        assert system.account(chain.state, AccountId(o)).free == before[o] + 2_125
    fee = wallet_before - 3 * 2_125 - system.account(chain.state, AccountId(WALLET.public)).free
    assert fee > 0  # the wallet paid its transaction's fee, burned
    assert balances.total_issuance(chain.state) == issuance - fee
    assert total_free(chain) == free - fee
    assert billing.invoice(chain.state, 0) == replace(invoice, paid=True)
    assert billing.open_invoices(chain.state, WALLET.public) == []
    assert billing.earnings(chain.state, operators[0]) == [(period, 2_125)]
    (items,) = billing.line_items(chain.state, 1, period_now(chain), 10)
    assert items[0] == period and [i.replica for i in items[1]] == [0, 1, 2]
    assert {i.assigned_ms for i in items[1]} == {PERIOD_S * 1000}
    # Paid once: a second payout of the same invoice is refused.
    assert chain.refuse(WALLET, PAY.call(invoice=0, payees=encode_payees(invoice.lines))) == (
        "billing.InvoiceClosed: invoice 0 is already paid"
    )


def test_payouts_that_are_not_the_invoice_are_refused_and_change_nothing() -> None:
    chain = billed_chain()
    period = deploy(chain, replicas=1)
    until_period(chain, period + 1)
    node = node_of(chain, 0)
    chain.send(OPERATORS[node], report_call(node, period, [usage(0)]))
    settle(chain, period)
    (invoice,) = billing.open_invoices(chain.state, WALLET.public)
    ((operator, amount),) = invoice.lines
    for payees in ([(operator, amount + 1)], [(operator, amount - 1)], []):
        assert chain.refuse(WALLET, PAY.call(invoice=0, payees=encode_payees(payees))) == (
            "billing.PayoutMismatch: the payees differ from invoice 0's lines (1 operators, "
            f"{amount} in total)"
        )
    assert chain.refuse(BOB, PAY.call(invoice=0, payees=encode_payees(invoice.lines))) == (
        f"billing.NotInvoiceWallet: invoice 0 is paid by wallet 0x{WALLET.public.hex()} only"
    )
    assert chain.refuse(WALLET, PAY.call(invoice=7, payees=encode_payees([]))) == (
        "billing.UnknownInvoice: no invoice 7"
    )
    assert chain.refuse(WALLET, PAY.call(invoice=0, payees=b"\x01")).startswith(
        "billing.pay: payees are a list"
    )


def test_reports_that_are_not_what_the_chain_placed_are_refused() -> None:
    chain = billed_chain(measure_slack_s=0)  # a node's meter is exact here
    period = deploy(chain, replicas=1)
    node = node_of(chain, 0)
    other = (node + 1) % 3
    # Placed during period - 1: period - 2, still open to reports, it did not run there.
    assert chain.refuse(OPERATORS[node], report_call(node, period - 2, [usage(0)])) == (
        f"usage.OutsideAssignment: web replica 0 of instance 1 was not placed on this node in "
        f"period {period - 2}"
    )
    # Its kept volumes alone (no CPU, memory, uptime) are accepted there, and not charged.
    volumes = UsageRecord("web", 0, 1, 0, 0, 0, 5 * 2**20)
    chain.send(OPERATORS[node], report_call(node, period - 2, [volumes]))
    assert billing.period_items(chain.state, 1, period - 2) == []
    until_period(chain, period + 1)
    assert chain.refuse(OPERATORS[other], report_call(other, period, [usage(0)])) == (
        "usage.NotPlaced: web replica 0 of instance 1 is not placed on this node"
    )
    # web asks 100m of CPU with a limit of 500m: in 4 s placed, 2 CPU-seconds at most.
    message = chain.refuse(OPERATORS[node], report_call(node, period, [usage(0, cpu_ms=2_001)]))
    assert message == (
        "usage.AboveReservation: web replica 0 of instance 1: CPU millicore-ms 2001000 is above "
        "what it may use placed 4000 ms (2000000)"
    )
    message = chain.refuse(OPERATORS[node], report_call(node, period, [usage(0, memory=2**30)]))
    assert message.startswith("usage.AboveReservation: web replica 0 of instance 1: peak memory")
    chain.send(OPERATORS[node], report_call(node, period, [usage(0)]))
    assert chain.refuse(OPERATORS[node], report_call(node, period, [usage(0)])) == (
        f"usage.AlreadyReported: period {period} is already reported"
    )
    settle(chain, period)
    late = chain.refuse(OPERATORS[other], report_call(other, period, [usage(0)]))
    assert late == (
        f"usage.ReportingClosed: web period {period} is invoiced: its reports were due before "
        f"{billing.issue_time(period, PERIOD_S)} ms"
    )
    # One invoice for the one report.
    (invoice,) = billing.open_invoices(chain.state, WALLET.public)
    assert invoice.lines == ((OPERATORS[node].public, invoice.total),)


def test_a_wallet_of_no_committee_or_of_another_owner_cannot_pay_for_an_app() -> None:
    chain = billed_chain()
    nobody = Keypair.from_seed(b"\x78" * 32).public
    assert chain.refuse(ALICE, CREATE_PAID.call(manifest=web(1), wallet=nobody)) == (
        f"apps.UnknownWallet: 0x{nobody.hex()} is not a platform wallet: no committee holds its key"
    )
    assert chain.refuse(BOB, CREATE_PAID.call(manifest=web(1), wallet=WALLET.public)) == (
        f"apps.NotWalletOwner: wallet 0x{WALLET.public.hex()} belongs to another login key "
        "than the sender"
    )
    # An application deployed without a wallet is not billed: its usage charges nothing.
    chain.send(ALICE, CREATE.call(manifest=web(1)))
    period = period_now(chain) + 1
    until_period(chain, period + 1)
    node = node_of(chain, 0)
    chain.send(OPERATORS[node], report_call(node, period, [usage(0, cpu_ms=10**9)]))
    settle(chain, period)
    assert billing.next_invoice_id(chain.state) == 0


def test_prices_are_set_by_sudo_only() -> None:
    chain = billed_chain()
    config = chain.runtime.config.billing
    assert billing.prices(chain.state, config, "cpu") == PRICES
    args = {
        "cpu_millicore_hour": 1, "memory_gib_hour": 2, "disk_gib_hour": 3, "gpu_hour": 4,
        "replica_hour_minimum": 5,
    }  # fmt: skip
    assert chain.refuse(BOB, SET_PRICES.call(node_class="cpu", **args)) == (
        "billing.NotSudo: prices are set by the sudo account only"
    )
    assert chain.refuse(ALICE, SET_PRICES.call(node_class="tpu", **args)) == (
        "billing.UnknownClass: node classes are cpu, gpu, storage"
    )
    chain.send(ALICE, SET_PRICES.call(node_class="gpu", **args))
    assert billing.prices(chain.state, config, "gpu") == Prices(1, 2, 3, 4, 5)
    assert billing.prices(chain.state, config, "cpu") == PRICES


def expensive(chain: TowerChain) -> None:
    """A replica-hour costs 3.6 * 10^12: 4 * 10^9 a period, more than a poor wallet holds."""
    args = {
        "cpu_millicore_hour": 0, "memory_gib_hour": 0, "disk_gib_hour": 0, "gpu_hour": 0,
        "replica_hour_minimum": 36 * 10**11,
    }  # fmt: skip
    chain.send(ALICE, SET_PRICES.call(node_class="cpu", **args))


POOR = 10**8
"""Enough for the fees of a few transactions, not for an invoice at `expensive` prices."""


def test_unpaid_arrears_suspend_payment_resumes_and_a_long_suspension_deletes() -> None:
    chain = billed_chain(funds=POOR)
    expensive(chain)
    period = deploy(chain, replicas=1)
    until_period(chain, period + 1)
    node = node_of(chain, 0)
    chain.send(OPERATORS[node], report_call(node, period, [usage(0)]))
    settle(chain, period)
    (invoice,) = billing.open_invoices(chain.state, WALLET.public)
    message = chain.refuse(WALLET, PAY.call(invoice=0, payees=encode_payees(invoice.lines)))
    assert message.startswith(
        f"billing.InsufficientFunds: invoice 0 is {invoice.total}, the wallet holds "
    )
    suspend_at = billing.grace_end(period, chain.runtime.config)
    while now_ms(chain) < suspend_at:
        step(chain)
        assert billing.suspended_since(chain.state, "web") is None
    execution = step(chain)
    assert [(e.module, e.name) for e in execution.events if e.name == "AppSuspended"] == [
        ("apps", "AppSuspended")
    ]
    assert billing.suspended_since(chain.state, "web") == suspend_at
    assert apps.placement(chain.state, "web") == []
    assert apps.get_app(chain.state, "web") is not None  # manifest and name kept
    for _ in range(3):
        step(chain)
    assert apps.placement(chain.state, "web") == []  # stays off the nodes
    # In arrears, the wallet pays for no new application.
    other = web(1).replace(b'"name":"web"', b'"name":"web-two"')
    assert other != web(1)
    assert chain.refuse(ALICE, CREATE_PAID.call(manifest=other, wallet=WALLET.public)) == (
        f"apps.WalletInArrears: wallet 0x{WALLET.public.hex()} has left invoice 0 "
        f"({invoice.total}, period {period}) unpaid past its grace period: fund it, and deploy "
        "once it is paid"
    )
    # Funded, the wallet pays the arrears: the application is placed again.
    overlay = Overlay(chain.state)
    system.put_account(overlay, AccountId(WALLET.public), system.AccountInfo(0, 10**12))
    write(chain, overlay)
    paid = chain.send(WALLET, PAY.call(invoice=0, payees=encode_payees(invoice.lines)))
    assert ("billing", "AppResumed") in [(e.module, e.name) for e in paid.events]  # type: ignore[attr-defined]
    assert billing.suspended_since(chain.state, "web") is None
    assert len([e for e in apps.placement(chain.state, "web") if e.node]) == 1


def test_a_suspension_longer_than_the_deletion_period_deletes_the_app() -> None:
    chain = billed_chain(funds=POOR)
    period = deploy(chain, replicas=1)
    until_period(chain, period + 1)
    node = node_of(chain, 0)
    chain.send(OPERATORS[node], report_call(node, period, [usage(0)]))
    suspend_at = billing.grace_end(period, chain.runtime.config)
    while now_ms(chain) <= suspend_at:
        step(chain)
    assert billing.suspended_since(chain.state, "web") == suspend_at
    deleted = []
    while now_ms(chain) <= suspend_at + DELETION_S * 1000:
        execution = step(chain)
        deleted += [e for e in execution.events if e.name == "AppDeletedForArrears"]
    assert len(deleted) == 1
    assert apps.get_app(chain.state, "web") is None
    assert billing.suspended_names(chain.state) == []
    assert billing.apps_paid_by(chain.state, WALLET.public) == []
    assert [t.instance for t in apps.tombstones(chain.state)] == [1]  # volumes retained


def test_genesis_carries_prices_periods_and_sudo_and_refuses_bad_ones() -> None:
    spec = development_spec()
    assert parse_spec(spec.to_json()) == spec
    assert spec.runtime.billing.sudo == spec.authorities[0]
    good = spec.to_json()
    changes: list[tuple[dict[str, Any], str]] = [
        ({"prices": {"tpu": {}}}, "billing.prices.tpu: classes are cpu, gpu, storage"),
        ({"prices": {"cpu": {"cpuHour": "1"}}}, "billing.prices.cpu: unknown field(s) cpuHour"),
        ({"prices": {"cpu": {"gpuHour": "-1"}}}, "billing.prices.cpu.gpuHour must not be negative"),
        ({"prices": {"cpu": {"gpuHour": str(2**64)}}}, "billing.prices.cpu: a price is at most"),
        ({"gracePeriodSeconds": 10**6}, "billing.gracePeriodSeconds must not exceed"),
        ({"sudo": "nope"}, "billing.sudo"),
        ({"refunds": 1}, "billing: unknown field(s) refunds"),
    ]
    for change, message in changes:
        data = {**good, "billing": {**good["billing"], **change}}
        with pytest.raises(GenesisError) as info:
            parse_spec(data)
        assert str(info.value).startswith(message)
    # Another price is another chain.
    cheaper = {**good, "billing": {**good["billing"], "prices": {}}}
    empty = TrieState({}, BLANK_ROOT)
    assert build_genesis(parse_spec(cheaper), empty).hash != build_genesis(spec, empty).hash


def test_a_replica_still_stopping_after_its_removal_is_accepted_and_not_charged() -> None:
    chain = billed_chain()
    period = deploy(chain, replicas=1)
    node = node_of(chain, 0)
    until_period(chain, period + 1)
    step(chain)
    chain.send(ALICE, DELETE.call(app="web"))  # the replica leaves the node in period + 1
    until_period(chain, period + 2)
    # The node stopped the container a little later: its report of period + 1 shows it.
    chain.send(OPERATORS[node], report_call(node, period + 1, [usage(0, cpu_ms=100)]))
    (items,) = billing.line_items(chain.state, 1, period + 1, 1)
    assert items[0] == period + 1 and items[1][0].assigned_ms < PERIOD_S * 1000
    until_period(chain, period + 3)
    # In period + 2 it was not placed at all: still stopping (within the grace), not charged.
    chain.send(OPERATORS[node], report_call(node, period + 2, [usage(0, cpu_ms=100)]))
    assert billing.period_items(chain.state, 1, period + 2) == []
    assert billing.STOP_GRACE_MS > 2 * PERIOD_S * 1000


def test_a_meter_off_by_its_sampling_is_accepted_and_charged_for_the_time_placed() -> None:
    chain = billed_chain()  # 30 s of measuring slack
    period = deploy(chain, replicas=1)
    until_period(chain, period + 1)
    node = node_of(chain, 0)
    # A replica placed just after the period ends: the node's report of the period counts it.
    api = web(1).replace(b'"web"', b'"api"').replace(b"web.statemesh", b"api.statemesh")
    chain.send(ALICE, CREATE_PAID.call(manifest=api, wallet=WALLET.public))
    other = node_of_app(chain, "api")
    late = UsageRecord("api", 0, 2, 10, 2**20, 500, 0)
    # 2.001 CPU-seconds in the 4 s placed at a 500m limit: within what the slack allows.
    mine = [late] if other == node else []
    chain.send(OPERATORS[node], report_call(node, period, [*mine, usage(0, cpu_ms=2_001)]))
    if other != node:
        chain.send(OPERATORS[other], report_call(other, period, [late]))
    (item,) = billing.period_items(chain.state, 1, period)
    assert item.cpu_ms == 2_001
    assert item.amount == billing.charge(
        PRICES, cpu_ms=2_000, peak_memory_bytes=16 * 2**20, disk_bytes=0, gpu_ms=0,
        assigned_ms=4_000,
    )  # fmt: skip
    assert billing.period_items(chain.state, 2, period) == []  # accepted, not charged
    # Far beyond the slack, a report is refused all the same.
    until_period(chain, period + 2)
    message = chain.refuse(OPERATORS[node], report_call(node, period + 1, [usage(0, cpu_ms=10**6)]))
    assert message.startswith("usage.AboveReservation: web replica 0 of instance 1: CPU")
