"""Platform wallets on real processes: three registered nodes form the committee. A stranger
(dev-eve, no node of hers) asks for a wallet with `wallets.request`, which she signs and pays;
the committee's coordinator runs the DKG over p2p once the request is final and registers the
wallet, and no operator is out of pocket for it. A peer outside the committee that tries to
start a request's DKG at its members is refused, and the genuine DKG completes. The wallet is
funded and spends with one member down; with two down the transfer fails clearly and nothing is
spent."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import pytest
import rlp

from chain.keys import dev_keypair, sign_transaction
from chain.primitives import Hash32
from tests.integration.harness import NodeProcess, RpcFailure, cli, cli_json
from wallet.committee import REQUEST

pytestmark = pytest.mark.integration

OPERATORS = ("ferdie", "bob", "charlie")
"""The dev node's operator (a dev node's default) and those of the two nodes joined to it."""


def free(node: NodeProcess, address: str, at: str | None = None) -> int:
    params = [address] if at is None else [address, at]
    return int(node.call("system_account", *params)["free"])


def fees_by(events: list[dict[str, Any]], who: str) -> dict[int, int]:
    """The fee `who` paid in each phase (extrinsic index) of a block."""
    return {
        e["phase"]: int(e["data"]["fee"]) + int(e["data"]["tip"])
        for e in events
        if e["name"] == "TransactionFeePaid" and e["data"]["who"] == who
    }


def test_a_strangers_wallet_costs_no_operator_anything_and_spends_with_a_member_down(
    registered_nodes: tuple[NodeProcess, list[NodeProcess]],
) -> None:
    dev, members = registered_nodes
    rpc = ["--rpc", dev.url]
    eve = dev_keypair("eve").address
    # The old way in: any caller made the serving node's operator pay for a wallet. Gone.
    with pytest.raises(RpcFailure) as gone:
        dev.call("wallet_create", eve)
    assert gone.value.code == -32601
    eve_before = free(dev, eve)
    start = dev.best_number()
    created = cli_json("wallet", "create", "--login", "dev-eve", *rpc)
    assert created["status"] == "registered"
    info = created["wallet"]
    wallet = info["address"]
    assert info["threshold"] == 2 and len(info["committee"]) == 3 and info["login"] == eve

    # Eve paid her request's fee and the registration's, nothing more (the rest of her deposit
    # came back). Across the block that registered the wallet, each operator's balance moved by
    # exactly the fees of its other transactions there: the registration cost its submitter
    # nothing.
    block = dev.call("chain_getBlockHash", info["registeredAt"])
    parent = dev.call("chain_getBlockHash", info["registeredAt"] - 1)
    events = dev.call("system_events", block)
    (registered,) = [e for e in events if e["name"] == "WalletRegistered"]
    assert registered["data"]["request"] == created["id"]
    phase = registered["phase"]
    submitter = next(e["data"]["who"] for e in events if e["phase"] == phase)
    assert submitter in {dev_keypair(name).address for name in OPERATORS}
    register_fee = fees_by(events, submitter)[phase]
    assert int(registered["data"]["refunded"]) == register_fee
    request_fee = sum(
        fee
        for n in range(start + 1, info["registeredAt"] + 1)
        for fee in fees_by(
            dev.call("system_events", dev.call("chain_getBlockHash", n)), eve
        ).values()
    )
    assert free(dev, eve) == eve_before - request_fee - register_fee
    for name in OPERATORS:
        operator = dev_keypair(name).address
        others = sum(fee for at, fee in fees_by(events, operator).items() if at != phase)
        assert free(dev, operator, block) - free(dev, operator, parent) == -others, name

    dkg_from_a_stranger_is_ignored_and_the_genuine_one_completes(dev, members, created["id"] + 1)

    funded = cli("tx", "transfer", "--from", "dev-alice", "--to", wallet, "--amount",
                 "50000000", *rpc)  # fmt: skip
    assert funded.returncode == 0, funded.stderr
    members[1].stop()  # one member down: 2 of 3 still sign
    target = dev_keypair("dave").address
    before = free(dev, target)
    sent = cli("wallet", "transfer", "--wallet", wallet, "--to", target, "--amount",
               "1000000", "--login", "dev-eve", *rpc)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.count("signed by") == 2 and "skipped" in sent.stdout
    dev.wait_for(lambda: free(dev, target) == before + 1_000_000, timeout=20, what="spent")
    members[0].stop()  # two down: no threshold
    left = free(dev, wallet)
    failed = cli("wallet", "transfer", "--wallet", wallet, "--to", target, "--amount",
                 "1000000", "--login", "dev-eve", *rpc)  # fmt: skip
    assert failed.returncode != 0 and "2 needed" in failed.stderr + failed.stdout
    assert free(dev, wallet) == left
    forged = cli("wallet", "transfer", "--wallet", wallet, "--to", target, "--amount",
                 "1000000", "--login", "dev-bob", *rpc)  # fmt: skip
    assert forged.returncode != 0


def dkg_from_a_stranger_is_ignored_and_the_genuine_one_completes(
    dev: NodeProcess, members: list[NodeProcess], request_id: int
) -> None:
    """With a member frozen (from before the request is in a block) the request's DKG cannot
    start: meanwhile a stranger asks the two live members to start it (with every early
    attempt's session) over p2p and is refused; once the member runs again, the coordinator's
    attempt completes."""
    owner = dev_keypair("dave")
    genesis = dev.call("chain_getBlockHash", 0)
    request = sign_transaction(
        owner,
        genesis_hash=Hash32(bytes.fromhex(genesis[2:])),
        nonce=int(dev.call("system_accountNextIndex", owner.address)),
        call=REQUEST.call(),
        tip=0,
    )
    frozen = members[1].process
    assert frozen is not None
    dev.call("author_submitExtrinsic", "0x" + rlp.encode(request).hex())
    frozen.send_signal(signal.SIGSTOP)
    try:
        dev.wait_for(
            lambda: dev.call("wallet_request", request_id) is not None, timeout=20, what="request"
        )
        assert dev.call("wallet_request", request_id)["login"] == owner.address
        targets = [node.call("system_localListenAddresses")[0] for node in (dev, members[0])]
        stranger = subprocess.run(
            [sys.executable, "-m", "tests.integration.wallet_stranger", genesis[2:18],
             str(request_id), *targets],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert stranger.returncode == 0, stranger.stderr
        relayed = f"NotFromCommittee: request {request_id}'s DKG is relayed by its coordinator only"
        assert json.loads(stranger.stdout) == {target: [relayed] * 4 for target in targets}
        assert dev.call("wallet_request", request_id)["status"] == "pending"
    finally:
        frozen.send_signal(signal.SIGCONT)
    dev.wait_for(
        lambda: dev.call("wallet_request", request_id)["status"] == "registered",
        timeout=60,
        what="the genuine DKG",
    )
