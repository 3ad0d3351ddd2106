"""Real validator processes on loopback: finality and a transaction reaching every node; a
killed validator catching up and a late full node syncing from genesis."""

from __future__ import annotations

from pathlib import Path

import pytest
import rlp

from chain.keys import dev_keypair, sign_transaction
from testkit.local_network import LocalNetwork, assert_no_conflicting_finality
from tests.factories import transfer_call

pytestmark = pytest.mark.integration


def test_validators_finalize_and_a_transaction_reaches_every_node(testnet: LocalNetwork) -> None:
    a, *_, d = testnet.nodes
    for node in testnet.nodes:
        node.wait_for(lambda n=node: n.finalized_number() >= 3, timeout=30, what="finality")
    assert d.call("system_health")["peers"] >= 1
    genesis = bytes.fromhex(a.call("chain_getBlockHash", 0)[2:])
    dest = dev_keypair("ferdie").public
    before = int(d.call("system_account", dev_keypair("ferdie").address)["free"])
    later = sign_transaction(
        dev_keypair("bob"), genesis_hash=genesis, nonce=1, call=transfer_call(dest, 7)
    )
    # A future transaction waits in every pool: D has it only if gossip carried it.
    later_hex = "0x" + rlp.encode(later).hex()
    a.call("author_submitExtrinsic", later_hex)
    d.wait_for(lambda: later_hex in d.call("author_pendingExtrinsics"), timeout=10, what="gossip")
    tx = sign_transaction(
        dev_keypair("bob"), genesis_hash=genesis, nonce=0, call=transfer_call(dest, 1_234_567)
    )
    tx_hash = a.call("author_submitExtrinsic", "0x" + rlp.encode(tx).hex())

    def final_on_d() -> bool:
        receipt = d.call("chain_getExtrinsic", tx_hash)
        return bool(receipt) and receipt["blockNumber"] <= d.finalized_number()

    d.wait_for(final_on_d, timeout=30, what="the transfer final on node D")
    after = int(
        d.call("system_account", dev_keypair("ferdie").address, d.call("chain_getFinalizedHead"))[
            "free"
        ]
    )
    assert after in (before + 1_234_567, before + 1_234_567 + 7)
    assert_no_conflicting_finality(testnet.nodes)


def test_three_of_four_keep_finalizing_and_the_fourth_catches_up(
    testnet: LocalNetwork, tmp_path: Path
) -> None:
    a, b, c, d = testnet.nodes
    a.wait_for(lambda: a.finalized_number() >= 2, timeout=30, what="finality")
    d.kill9()
    start = a.finalized_number()
    a.wait_for(lambda: a.finalized_number() >= start + 6, timeout=30, what="finality with 3 of 4")
    d.start()
    target = a.finalized_number()
    d.wait_for(
        lambda: d.finalized_number() >= target, timeout=40, what="the restarted node catching up"
    )
    # A full node started late syncs from genesis and verifies every justification it gets.
    late = testnet.full_node(tmp_path / "late")
    late.start()
    try:
        target = a.finalized_number()
        late.wait_for(lambda: late.finalized_number() >= target, timeout=60, what="the late node")
        assert "synced" in late.log() or "syncing" in late.log()
        assert_no_conflicting_finality([a, b, c, d, late])
    finally:
        late.stop()
