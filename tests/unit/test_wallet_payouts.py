"""Payouts of platform wallets in one process: the committee's members sign a wallet's
`billing.pay` only when it pays an open invoice of their own finalized state exactly; the
member whose turn it is pays, the next one takes over when it is down, a failed payout is
tried again later, and a one-node committee (1 of 1) pays alone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import rlp
import trio
import trio.testing

from chain import codec
from chain.blocks import UnsignedTransaction
from chain.primitives import AccountId
from chain.runtime import billing, wallets
from chain.runtime.executive import Runtime, default_modules
from chain.runtime.framework import put_uints
from chain.runtime.wallets import Wallets
from chain.state import Overlay
from tests.factories import BOB, DAVE
from tests.unit.test_towers import NODE_KEYS
from tests.unit.test_wallet_service import Network, member_line, run
from wallet.committee import TooFewMembersAnswered, WalletService
from wallet.member import PAY, PAYOUT_NONCE_WINDOW, TRANSFER, payout_transaction
from wallet.messages import Refused, RequestKind, WalletRequest, decode_answer
from wallet.payouts import Payouts, coordinators, fallover_for, retry_delay, turn_of
from wallet.shares import ShareStore

LINES = ((min(BOB.public, DAVE.public), 700), (max(BOB.public, DAVE.public), 300))


def issue(net: Network, wallet: bytes, lines: tuple[tuple[bytes, int], ...] = LINES) -> int:
    """An open invoice of `wallet` in the chain's state, as `billing` issues it (written
    directly: the runtime's issuing from usage reports is billing's own tests' concern)."""
    chain = net.chain
    overlay = Overlay(chain.state)
    made = billing.Invoice(
        billing.next_invoice_id(overlay), AccountId(wallet), 3,
        tuple((AccountId(w), a) for w, a in lines), sum(a for _, a in lines), False,
    )  # fmt: skip
    billing._store_invoice(overlay, made)
    overlay.put(billing._NEXT_INVOICE, codec.encode_uint(made.id + 1))
    put_uints(
        overlay, billing._OPEN + wallet, [*billing.open_invoice_ids(overlay, wallet), made.id]
    )
    commit = chain.state.commit(overlay.changes)
    for node_hash, node in commit.nodes.items():
        chain.nodes[node_hash] = node
    chain.root = commit.root
    return made.id


def open_invoice(net: Network, invoice_id: int) -> billing.Invoice:
    found = billing.invoice(net.chain.state, invoice_id)
    assert found is not None
    return found


def wallet_record(net: Network, group: bytes) -> wallets.WalletRecord:
    record = wallets.get_wallet(net.chain.state, group)
    assert record is not None
    return record


def balances(net: Network) -> dict[bytes, int]:
    return {who: net.balance(who) for who, _ in LINES}


def service_of(net: Network, node_id: bytes) -> WalletService:
    return net.service(net.node(node_id))


@pytest.fixture
def net(tmp_path: Path) -> Network:
    return Network(tmp_path)


@pytest.fixture
def funded(net: Network) -> tuple[Network, bytes]:
    group = net.create().group_key
    net.fund(group)
    return net, group


def test_the_coordinator_pays_the_invoice_exactly_once(funded: tuple[Network, bytes]) -> None:
    net, group = funded
    invoice_id = issue(net, group)
    invoice = open_invoice(net, invoice_id)
    before, wallet_before = balances(net), net.balance(group)
    first = coordinators(invoice_id, wallet_record(net, group).committee)[0]
    payouts = Payouts(service_of(net, first), net.ledger)
    run(lambda: payouts.pay(wallet_record(net, group), invoice))
    assert balances(net) == {who: before[who] + amount for who, amount in LINES}
    sent = rlp.decode(net.ledger.submitted[-1])
    assert sent[1] == group and sent[4][:2] == [b"billing", b"pay"]
    fee = wallet_before - 1000 - net.balance(group)
    assert fee == net.chain.runtime.config.fee(len(net.ledger.submitted[-1]))
    assert billing.invoice(net.chain.state, invoice_id) == replace(invoice, paid=True)
    assert billing.open_invoices(net.chain.state, group) == []
    # Paying it again: every member refuses, on its own finalized state, and nothing moves.
    submitted = len(net.ledger.submitted)
    with pytest.raises(TooFewMembersAnswered) as info:
        run(lambda: payouts.pay(wallet_record(net, group), invoice))
    closed = f"refused: InvoiceClosed: invoice {invoice_id} is paid"
    assert str(info.value) == (
        "0 of 3 committee members agreed to sign, 2 needed: "
        + "; ".join(member_line(m, closed) for m in net.committee)
    )
    assert len(net.ledger.submitted) == submitted


def ask(net: Network, member: int, sender: bytes, unsigned: UnsignedTransaction) -> str:
    """A member's answer to a payout's round one: "ok" or the refusal."""
    request = WalletRequest(RequestKind.SIGN_PAYOUT, b"\x01" * 32, (rlp.encode(unsigned),))
    try:
        decode_answer(net.service(member).member.handle(AccountId(sender), request.encode()))
    except Refused as refusal:
        return str(refusal)
    return "ok"


def test_members_refuse_every_payout_but_the_invoice_exactly(
    funded: tuple[Network, bytes],
) -> None:
    net, group = funded
    invoice_id = issue(net, group)
    invoice = open_invoice(net, invoice_id)
    other = net.create().group_key
    others_invoice = open_invoice(net, issue(net, other))
    genesis = net.chain.genesis_hash
    committee = wallet_record(net, group).committee
    member = net.node(committee[0])
    coordinator = committee[1]
    good = payout_transaction(genesis, invoice, 0)
    assert ask(net, member, coordinator, good) == "ok"

    def pay(
        payees: tuple[tuple[bytes, int], ...], invoice_id: int = invoice_id
    ) -> UnsignedTransaction:
        call = PAY.call(invoice=invoice_id, payees=billing.encode_payees(payees))
        return UnsignedTransaction(genesis, group, 0, 0, call)

    (low, low_amount), (high, high_amount) = LINES
    one_more = pay(((low, low_amount + 1), (high, high_amount)))
    one_less = pay(((low, low_amount), (high, high_amount - 1)))
    dropped = pay(((low, low_amount),))
    stranger = pay(((low, low_amount), (b"\xff" * 32, high_amount)))  # another operator
    mismatch = (
        f"PayoutMismatch: the payees differ from invoice {invoice_id}'s lines (2 operators, "
        "1000 in total)"
    )
    for bad in (one_more, one_less, dropped, stranger):
        assert ask(net, member, coordinator, bad) == mismatch
    assert ask(net, member, coordinator, pay(LINES, invoice_id=99)) == (
        "UnknownInvoice: no invoice 99 is finalized"
    )
    # Another wallet's invoice, paid from this wallet.
    assert ask(net, member, coordinator, pay(others_invoice.lines, others_invoice.id)) == (
        f"NotAPayout: invoice {others_invoice.id} is owed by wallet 0x{other.hex()}, not this one"
    )
    transfer = UnsignedTransaction(genesis, group, 0, 0, TRANSFER.call(dest=BOB.public, amount=1))
    assert ask(net, member, coordinator, transfer) == (
        "NotAPayout: a payout is a billing.pay transaction"
    )
    tipped = UnsignedTransaction(genesis, group, 0, 1, good.call)
    assert ask(net, member, coordinator, tipped) == "NotAPayout: a payout carries no tip"
    ahead = payout_transaction(genesis, invoice, PAYOUT_NONCE_WINDOW)
    assert ask(net, member, coordinator, ahead) == (
        f"WrongNonce: nonce {PAYOUT_NONCE_WINDOW} is not one the wallet may use next (from 0, at "
        f"most {PAYOUT_NONCE_WINDOW - 1} ahead)"
    )
    other_chain = UnsignedTransaction(b"\x07" * 32, group, 0, 0, good.call)
    assert ask(net, member, coordinator, other_chain) == (
        "WrongChain: the transaction is for another chain"
    )
    outsider = NODE_KEYS[3].public
    assert ask(net, member, outsider, good) == (
        "NotFromCommittee: a wallet's signing is coordinated by a member of its committee only"
    )
    assert ask(net, 3, coordinator, good) == (
        "NotAMember: this node is not in the wallet's committee"
    )
    # An invoice the best chain has and the finalized one not yet is not signed for.
    net.ledger.hold_finality = True
    net.ledger.finalized_state()
    later = open_invoice(net, issue(net, group))
    assert ask(net, member, coordinator, payout_transaction(genesis, later, 0)) == (
        f"UnknownInvoice: no invoice {later.id} is finalized"
    )


def test_order_turns_and_back_off() -> None:
    committee = tuple(AccountId(bytes([i]) * 32) for i in (1, 2, 3))
    assert coordinators(0, committee) == committee
    assert coordinators(4, committee) == committee[1:] + committee[:1]
    assert [turn_of(m, 4, committee, 10.0) for m in committee] == [20.0, 0.0, 10.0]
    assert [retry_delay(n, 2.0, 30.0) for n in (1, 2, 3, 4, 5, 100)] == [2, 4, 8, 16, 30, 30]
    assert fallover_for(86400, 3) == 10.0
    assert fallover_for(8, 3) == 2.0  # every turn before the grace period ends


def finalize(net: Network) -> None:
    """A block is final: every follower still subscribed hears of it."""
    ledger = net.ledger
    ledger.hold_finality = False
    for send in list(ledger.heads):
        try:
            send.send_nowait(net.chain.number)
        except trio.BrokenResourceError:  # the follower unsubscribed
            ledger.heads.remove(send)


def pump(net: Network, loops: dict[int, Payouts], until, seconds: float = 120.0) -> float:  # type: ignore[no-untyped-def]
    """Runs the loops under a mock clock, the chain finalizing a block every second, until
    `until()` holds; how many seconds (chain time) it took."""

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            for loop in loops.values():
                await nursery.start(loop.run)
            start = trio.current_time()
            while not until():
                if trio.current_time() - start > seconds:
                    raise AssertionError(f"not within {seconds} s")
                await trio.sleep(1.0)
                finalize(net)
            nursery.cancel_scope.cancel()
            return trio.current_time() - start

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def paid(net: Network, invoice_id: int) -> bool:
    found = billing.invoice(net.ledger.finalized_state(), invoice_id)
    return found is not None and found.paid


def loops_of(net: Network, **options: float) -> dict[int, Payouts]:
    return {i: Payouts(net.service(i), net.ledger, **options) for i in range(4)}


def test_the_loop_pays_each_invoice_once_with_its_first_coordinator(
    funded: tuple[Network, bytes],
) -> None:
    net, group = funded
    ids = [issue(net, group), issue(net, group)]
    before = balances(net)
    loops = loops_of(net, fallover=10.0)
    took = pump(net, loops, lambda: sum(loop.outcomes["paid"] for loop in loops.values()) == 2)
    assert all(paid(net, i) for i in ids)
    assert took < 10.0  # no fall-over needed
    assert balances(net) == {who: before[who] + 2 * amount for who, amount in LINES}
    committee = wallet_record(net, group).committee
    for invoice_id in ids:
        first = net.node(coordinators(invoice_id, committee)[0])
        assert loops[first].outcomes["paid"] >= 1
    assert loops[3].outcomes == {}  # not a member


def test_the_next_member_pays_when_the_first_is_down(funded: tuple[Network, bytes]) -> None:
    net, group = funded
    invoice_id = issue(net, group)
    order = coordinators(invoice_id, wallet_record(net, group).committee)
    net.router.down = {order[0]}
    loops = loops_of(net, fallover=10.0)
    del loops[net.node(order[0])]
    second = loops[net.node(order[1])]
    took = pump(net, loops, lambda: second.outcomes["paid"] == 1)
    assert paid(net, invoice_id)
    assert 10.0 <= took < 20.0
    assert loops[net.node(order[1])].outcomes == {"paid": 1}


def test_a_failed_payout_leaves_the_invoice_open_and_is_tried_again(
    net: Network,
) -> None:
    group = net.create().group_key
    net.fund(group, 10**7)  # the fee, and not the invoice
    invoice_id = issue(net, group, ((BOB.public, 10**9),))
    loops = loops_of(net, fallover=10.0, retry=20.0, max_retry=60.0)
    first = net.node(coordinators(invoice_id, wallet_record(net, group).committee)[0])

    def failed_twice() -> bool:
        return loops[first].outcomes["failed"] >= 2

    took = pump(net, loops, failed_twice)
    assert 20.0 <= took < 40.0  # the second attempt waited out the back-off
    assert not paid(net, invoice_id)
    assert billing.open_invoices(net.chain.state, group) == [open_invoice(net, invoice_id)]
    net.fund(group, 2 * 10**9)
    before = net.balance(BOB.public)
    # Funded: tried again at the next finalized block, whatever its back-off was.
    took = pump(net, loops, lambda: loops[first].outcomes["paid"] == 1)
    assert took <= 2.0
    assert paid(net, invoice_id)
    assert net.balance(BOB.public) == before + 10**9


def test_a_one_node_committee_creates_its_wallet_and_pays_alone(tmp_path: Path) -> None:
    net = Network(tmp_path)
    one = replace(net.chain.runtime.config, wallet_committee_size=1, wallet_threshold=1)
    net.chain.runtime = Runtime(
        one, net.chain.genesis_hash, modules=(*default_modules(), Wallets())
    )
    request_id = net.request()
    request = wallets.get_request(net.chain.state, request_id)
    assert request is not None
    (member,) = request.committee
    created = run(lambda: service_of(net, member).create(request_id))
    assert (created.committee, created.threshold) == ((member,), 1)
    stored = ShareStore(net.paths[net.node(member)], NODE_KEYS[net.node(member)].seed)
    share = stored.load(created.group_key)
    assert share is not None and share.public_package.min_signers == 1
    net.fund(created.group_key)
    invoice_id = issue(net, created.group_key)
    before = balances(net)
    loops = loops_of(net)
    pump(net, loops, lambda: loops[net.node(member)].outcomes["paid"] == 1)
    assert paid(net, invoice_id)
    assert balances(net) == {who: before[who] + amount for who, amount in LINES}
    assert loops[net.node(member)].outcomes == {"paid": 1}
    assert net.service(net.node(member)).signing_rounds == {"signed": 1}


def test_a_vault_key_never_signs_a_payout(funded: tuple[Network, bytes]) -> None:
    net, group = funded
    invoice = open_invoice(net, issue(net, group))
    record = wallet_record(net, group)
    overlay = Overlay(net.chain.state)
    wallets.put_wallet(overlay, group, replace(record, purpose=wallets.Purpose.ENCRYPTION))
    commit = net.chain.state.commit(overlay.changes)
    for node_hash, node in commit.nodes.items():
        net.chain.nodes[node_hash] = node
    net.chain.root = commit.root
    unsigned = payout_transaction(net.chain.genesis_hash, invoice, 0)
    member, coordinator = record.committee[0], record.committee[1]
    assert ask(net, net.node(member), coordinator, unsigned) == (
        "WrongPurpose: a vault key never signs"
    )
