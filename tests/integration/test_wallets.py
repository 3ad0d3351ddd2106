"""Platform wallets on real processes: three registered nodes form the committee; a wallet is
created by a DKG over p2p, funded, and spends with one member down; with two down the transfer
fails clearly and nothing is spent."""

from __future__ import annotations

import pytest

from tests.integration.harness import NodeProcess, cli, cli_json
from wallet.keys import dev_keypair

pytestmark = pytest.mark.integration


def free(node: NodeProcess, address: str) -> int:
    return int(node.call("system_account", address)["free"])


def test_create_fund_and_spend_with_a_member_down(
    registered_nodes: tuple[NodeProcess, list[NodeProcess]],
) -> None:
    dev, members = registered_nodes
    rpc = ["--rpc", dev.url]
    created = cli_json("wallet", "create", "--login", "dev-eve", *rpc)
    wallet = created["address"]
    assert created["threshold"] == 2 and len(created["committee"]) == 3
    dev.wait_for(lambda: dev.call("wallet_show", wallet) is not None, timeout=20, what="reg")
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
