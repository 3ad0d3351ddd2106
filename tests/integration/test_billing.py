"""Hourly billing on real processes with Docker, periods of a few seconds: three registered
nodes run an application that dev-eve deployed to be paid by her platform wallet, whose 2-of-3
committee is those three nodes. Each period's invoice is paid by the committee and every
operator's balance grows by exactly its lines; with one member stopped the payments go on; the
wallet emptied, the application is suspended (its containers gone, the application kept), and
once the wallet is funded again the invoice is paid and the application resumed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from chain.address import decode_address, encode_address
from chain.keys import dev_keypair
from chain.runtime import billing
from node.chain_spec import dev_node_id, dev_wallet, development_spec
from tests.integration.docker_harness import DockerEngine
from tests.integration.harness import ROOT, NodeProcess, cli, cli_json
from tests.integration.workloads.pods import app_containers

pytestmark = pytest.mark.integration

WEB = str(ROOT / "docs/examples/web.yaml")
PERIOD_SECONDS = 4
GRACE_SECONDS = 20
"""Every member's turn to pay an invoice comes before its grace ends (the fall-over is 5 s)."""
OPERATORS = ("ferdie", "bob", "charlie")
"""The dev node's operator and those of the two nodes joined to it: the wallet's committee."""
FUNDS = 10**16
PAYOUT_WAIT = 30
"""How long one payout may take at the chain's pace (a signing round, its block, finality)."""
MARGIN_INVOICES = 6
"""What the drained wallet keeps, in invoices: it pays them, then finds itself short."""


@pytest.fixture
def node_chain(tmp_path: Path) -> str:
    """The dev chain with a 2-of-3 committee, periods of PERIOD_SECONDS and a short grace."""
    spec = development_spec().to_json()
    spec["runtime"].update(
        walletCommitteeSize=3, walletThreshold=2, meteringPeriodSeconds=PERIOD_SECONDS
    )
    spec["billing"].update(gracePeriodSeconds=GRACE_SECONDS, deletionPeriodSeconds=3600)
    path = tmp_path / "billing.json"
    path.write_text(json.dumps(spec))
    return str(path)


@dataclass
class Events:
    """The finalized chain's events as the dev node serves them, read block by block once."""

    node: NodeProcess
    next: int
    seen: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def read(self) -> list[tuple[int, dict[str, Any]]]:
        head = self.node.finalized_number()
        for number in range(self.next, head + 1):
            block = self.node.call("chain_getBlockHash", number)
            self.seen.extend((number, e) for e in self.node.call("system_events", block))
        self.next = max(self.next, head + 1)
        return self.seen

    def named(self, name: str, **data: Any) -> list[tuple[int, dict[str, Any]]]:
        return [
            (n, e)
            for n, e in self.read()
            if e["name"] == name and all(e["data"].get(k) == v for k, v in data.items())
        ]


def free(node: NodeProcess, address: str, at: str | None = None) -> int:
    params = [address] if at is None else [address, at]
    return int(node.call("system_account", *params)["free"])


def fees_of(events: list[dict[str, Any]], who: str) -> int:
    return sum(
        int(e["data"]["fee"]) + int(e["data"]["tip"])
        for e in events
        if e["name"] == "TransactionFeePaid" and e["data"]["who"] == who
    )


def transferred_to(events: list[dict[str, Any]], who: str) -> int:
    """What plain transfers moved to `who` in a block, less what they moved from it (the
    wallet's drain and refund can share a block with a payout)."""
    net = 0
    for e in events:
        if e["name"] != "Transfer" or e["data"]["source"] == e["data"]["dest"]:
            continue
        if e["data"]["dest"] == who:
            net += int(e["data"]["amount"])
        if e["data"]["source"] == who:
            net -= int(e["data"]["amount"])
    return net


class RemoteState:
    """The dev node's state read over `state_getStorage`, as the runtime's readers read it."""

    def __init__(self, node: NodeProcess, at: str | None = None) -> None:
        self.node = node
        self.at = at

    def get(self, key: bytes) -> bytes | None:
        params = ["0x" + key.hex()] if self.at is None else ["0x" + key.hex(), self.at]
        value = self.node.call("state_getStorage", *params)
        return None if value is None else bytes.fromhex(value[2:])


def invoice_lines(node: NodeProcess, invoice_id: int) -> dict[str, int]:
    """An invoice's lines, operator address -> amount, as the chain holds them."""
    invoice = billing.invoice(RemoteState(node), invoice_id)  # type: ignore[arg-type]
    assert invoice is not None, invoice_id
    return {encode_address(operator): amount for operator, amount in invoice.lines}


def check_paid_exactly(
    node: NodeProcess, wallet: str, paid: list[tuple[int, dict[str, Any]]]
) -> None:
    """Across each block that paid invoices of `wallet`, each operator's balance moved by its
    lines less the fees it paid there, and the wallet's by the totals and its fees (and, for
    both, by any plain transfer in the same block)."""
    by_block: dict[int, list[dict[str, Any]]] = {}
    for number, event in paid:
        by_block.setdefault(number, []).append(event)
    for number, events in by_block.items():
        block = node.call("chain_getBlockHash", number)
        parent = node.call("chain_getBlockHash", number - 1)
        all_events = node.call("system_events", block)
        owed: dict[str, int] = {}
        for event in events:
            lines = invoice_lines(node, int(event["data"]["invoice"]))
            assert sum(lines.values()) == int(event["data"]["total"])
            for operator, amount in lines.items():
                owed[operator] = owed.get(operator, 0) + amount
        for name in OPERATORS:
            operator = dev_keypair(name).address
            moved = free(node, operator, block) - free(node, operator, parent)
            others = transferred_to(all_events, operator) - fees_of(all_events, operator)
            assert moved == owed.get(operator, 0) + others, name
        total = sum(int(e["data"]["total"]) for e in events)
        moved = free(node, wallet, block) - free(node, wallet, parent)
        assert moved == -total + transferred_to(all_events, wallet) - fees_of(all_events, wallet)


def paying_off(dev: NodeProcess, events: Events, wallet: str) -> None:
    """Waits for the application's resumption while the committee pays the invoices left open
    while the wallet was empty, oldest first, one payout at a time: each payout (or the
    resumption) must come within PAYOUT_WAIT of the last, however many were left open."""

    def resumed_or_paid(before: int) -> bool:
        if events.named("AppResumed", app="web"):
            return True
        return len(events.named("InvoicePaid", wallet=wallet)) > before

    while not events.named("AppResumed", app="web"):
        paid = len(events.named("InvoicePaid", wallet=wallet))
        dev.wait_for(
            lambda paid=paid: resumed_or_paid(paid),
            timeout=PAYOUT_WAIT,
            what=f"the next open invoice paid ({paid} paid) or the application resumed",
        )


def test_an_app_paid_by_its_wallet_committee_through_a_member_down_and_arrears(
    compute_nodes: tuple[NodeProcess, list[NodeProcess]],
    docker_client: docker.DockerClient,
) -> None:
    dev, others = compute_nodes
    rpc = ["--rpc", dev.url]
    dev.wait_for(lambda: dev.call("towers_active")["total"] == 3, timeout=60, what="3 active")
    created = cli_json("wallet", "create", "--login", "dev-eve", *rpc)
    assert created["status"] == "registered"
    wallet = created["wallet"]["address"]
    assert created["wallet"]["threshold"] == 2 and len(created["wallet"]["committee"]) == 3
    funded = cli("tx", "transfer", "--from", "dev-alice", "--to", wallet, "--amount", str(FUNDS),
                 *rpc)  # fmt: skip
    assert funded.returncode == 0, funded.stderr
    events = Events(dev, dev.finalized_number() + 1)
    deployed = cli("app", "deploy", WEB, "--from", "dev-eve", "--wallet", wallet, *rpc)
    assert deployed.returncode == 0, deployed.stderr

    # Three periods paid, each exactly.
    paid = dev.wait_for(
        lambda: len(p := events.named("InvoicePaid", wallet=wallet)) >= 3 and p,
        timeout=60,
        what="three invoices paid",
    )
    check_paid_exactly(dev, wallet, paid)
    earned = {name: 0 for name in OPERATORS}
    for _, event in paid:
        for operator, amount in invoice_lines(dev, int(event["data"]["invoice"])).items():
            name = next(n for n in OPERATORS if dev_keypair(n).address == operator)
            earned[name] += amount
    assert sum(earned.values()) > 0

    # One committee member stopped (not the dev node, the chain's one authority): the next
    # invoices are paid all the same.
    others[1].stop()
    issued = max(int(e["data"]["invoice"]) for _, e in events.named("InvoiceIssued"))

    def paid_after_the_stop() -> bool:
        paid = events.named("InvoicePaid", wallet=wallet)
        return any(int(e["data"]["invoice"]) > issued for _, e in paid)

    dev.wait_for(paid_after_the_stop, timeout=40, what="an invoice issued after the stop, paid")
    check_paid_exactly(dev, wallet, events.named("InvoicePaid", wallet=wallet))
    # Back up: a stopped node's containers stay where they are (as on any restart) and only
    # their node can remove them, so the member takes part again before the suspension.
    others[1].start()
    behind = dev.finalized_number()
    dev.wait_for(
        lambda: others[1].finalized_number() >= behind,
        timeout=PAYOUT_WAIT,
        what="the restarted member caught up",
    )

    # The wallet emptied: the next invoice cannot be paid; past its grace the application is
    # suspended, its containers go, the application stays.
    def drain() -> bool:
        """All but what the open invoices owe and a few periods' invoices: those issued while
        the transfer is signed (seconds on a loaded machine, several periods of this chain)
        would otherwise be paid first and leave the wallet short of the transfer, which the
        pool refuses. What is left goes to the next invoices until one finds the wallet short.
        The transfer is in the pool once the command returns: once the wallet has nothing in
        the pool, read the balance, and try again if the transfer did not get in."""
        left = free(dev, wallet)
        state = RemoteState(dev)
        owed = sum(i.total for i in billing.open_invoices(state, decode_address(wallet)))  # type: ignore[arg-type]
        keep = MARGIN_INVOICES * last_invoice
        if left - owed <= keep + last_invoice:
            return True
        drained = cli("wallet", "transfer", "--wallet", wallet, "--to",
                      dev_keypair("dave").address, "--amount", str(left - owed - keep),
                      "--login", "dev-eve", *rpc)  # fmt: skip
        if drained.returncode != 0:
            refusals.append(drained.stderr.strip())
            return False
        dev.wait_for(
            lambda: (
                int(dev.call("system_accountNextIndex", wallet))
                == int(dev.call("system_account", wallet)["nonce"])
            ),
            timeout=PAYOUT_WAIT,
            what="the wallet's transfer in a block or refused",
        )
        return False  # read again: drained, or try again

    last_invoice = max(int(e["data"]["total"]) for _, e in events.named("InvoicePaid"))
    refusals: list[str] = []
    try:
        dev.wait_for(drain, timeout=2 * PAYOUT_WAIT, what="the wallet drained")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nthe transfer's refusals: {refusals[-5:]}") from None
    dev.wait_for(
        lambda: events.named("AppSuspended", app="web"),
        # The margin's invoices, the one it cannot pay (issued up to two periods after its
        # period) and its grace, with room for payouts behind on a loaded machine.
        timeout=(MARGIN_INVOICES + 2) * PERIOD_SECONDS + 2 * GRACE_SECONDS + PAYOUT_WAIT,
        what="the app suspended",
    )
    dev.wait_for(lambda: not app_containers(docker_client, "web"), timeout=30, what="no containers")
    assert dev.call("apps_get", "web") is not None

    # Funded again: the committee pays what is owed and the application comes back.
    refunded = cli("tx", "transfer", "--from", "dev-alice", "--to", wallet, "--amount",
                   str(FUNDS), *rpc)  # fmt: skip
    assert refunded.returncode == 0, refunded.stderr
    paying_off(dev, events, wallet)
    dev.wait_for(lambda: app_containers(docker_client, "web"), timeout=40, what="containers back")
    check_paid_exactly(dev, wallet, events.named("InvoicePaid", wallet=wallet))


def test_the_dev_chain_pays_from_its_genesis_wallet(
    tmp_path: Path, docker_engine: DockerEngine, busybox_image: str
) -> None:
    """`statemesh node --dev` as it ships (`make run`): its genesis holds a funded platform wallet
    whose 1-of-1 committee is the dev node itself; an application dev-alice deploys with
    `--wallet` on it has its first invoice (periods of 10 s) paid within a minute."""
    dev = NodeProcess(
        tmp_path / "dev", args=["--dev", "--docker-host", docker_engine.host], dev_node_key=True
    )
    try:
        dev.start()
        rpc = ["--rpc", dev.url]
        wallet = encode_address(dev_wallet().address)
        shown = cli_json("wallet", "show", wallet, *rpc)
        assert shown["threshold"] == 1 and shown["committee"] == [encode_address(dev_node_id())]
        dev.wait_for(lambda: dev.call("towers_active")["total"] == 1, timeout=40, what="active")
        events = Events(dev, dev.finalized_number() + 1)
        deployed = cli("app", "deploy", WEB, "--from", "dev-alice", "--wallet", wallet, *rpc)
        assert deployed.returncode == 0, deployed.stderr
        paid = dev.wait_for(
            lambda: events.named("InvoicePaid", wallet=wallet), timeout=60, what="an invoice paid"
        )
        check_paid_exactly(dev, wallet, paid)
        # The dev node's operator was paid what the invoice says, as `query earnings` shows.
        earned = cli_json("query", "earnings", dev_keypair("ferdie").address, *rpc)
        invoice = int(paid[0][1]["data"]["invoice"])
        line = invoice_lines(dev, invoice)[dev_keypair("ferdie").address]
        assert any(int(e["amount"]) == line for e in earned["earnings"]), (earned, line)
    finally:
        dev.stop()
