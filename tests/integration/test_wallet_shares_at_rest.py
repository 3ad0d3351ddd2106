"""A real node process and its wallet share files: those sealed the old way (under the node key
in its base path) are re-sealed under its operator key when it starts; started again with
another operator key, it refuses to start, says why, and leaves the files as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.keys import dev_keypair
from node.chain_spec import development_spec
from tests.integration.harness import NodeProcess
from tests.unit.test_wallet_shares import NODE_SEED, seal_the_old_way, three_wallets
from wallet.shares import SealKey, ShareStore

pytestmark = pytest.mark.integration

OPERATOR = dev_keypair("ferdie")
"""A dev node's operator when none is given."""


def test_a_node_reseals_old_share_files_and_refuses_another_operator(tmp_path: Path) -> None:
    wallet_shares = three_wallets()
    base = tmp_path / "node"
    chain_path = base / "chains" / development_spec().id
    old = [seal_the_old_way(chain_path, group, share) for group, share in wallet_shares[:2]]
    node = NodeProcess(base, args=["--dev", "--node-key", NODE_SEED.hex()])
    try:
        node.start()
        node.wait_for(lambda: "re-sealed 2 wallet share file(s)" in node.log(), what="re-seal")
    finally:
        node.stop()
    key_id = SealKey.derive(OPERATOR.seed).key_id
    for path in old:
        assert path.read_bytes().startswith(b"SMWS2" + key_id)
    store = ShareStore(chain_path, OPERATOR.seed)
    for group, share in wallet_shares[:2]:
        assert store.load(group) == share
    resealed = {path: path.read_bytes() for path in old}

    other = NodeProcess(
        base, args=["--dev", "--node-key", NODE_SEED.hex(), "--operator", "dev-eve"]
    )
    with pytest.raises(RuntimeError) as refused:
        other.start()
    assert (
        f"error: 2 wallet share file(s) in {chain_path / 'wallets'} are sealed under another "
        "operator key than this node's: start the node with the --operator key they were sealed "
        "under (or move them away to give up these shares)"
    ) in str(refused.value)
    assert {path: path.read_bytes() for path in old} == resealed
