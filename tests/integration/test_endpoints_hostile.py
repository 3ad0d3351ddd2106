"""A hostile peer holding a registered node's key advertises that node's replicas at addresses
that are not the one it registered: wrapped loopback, metadata and unspecified addresses, a
private address, loopback in 6to4 form and a global address. The dev node takes none of them,
relays none, penalises the sender until it is banned, and keeps authoring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chain.keys import Keypair, dev_keypair
from tests.integration.harness import ROOT, NodeProcess, cli
from tests.integration.test_towers import status_is

pytestmark = pytest.mark.integration

SEED = bytes(range(32))


def test_forged_endpoint_advertisements_are_refused_and_their_sender_banned(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "dev.json"
    built = cli("build-spec", "--dev")
    assert built.returncode == 0, built.stderr
    spec.write_text(built.stdout)
    dev = NodeProcess(tmp_path / "dev").start()
    address = dev.call("system_localListenAddresses")[0]
    bob = NodeProcess(
        tmp_path / "bob",
        args=[
            *("--chain", "dev", "--bootnodes", address),
            *("--operator", "dev-bob", "--node-key", SEED.hex()),
        ],
    )
    try:
        bob.start()
        dev.wait_for(status_is(dev, dev_keypair("bob").address, "active"), timeout=60, what="bob")
        registered = {n["nodeId"] for n in dev.call("nodes_list")["nodes"]}
        assert Keypair.from_seed(SEED).address in registered
        network_id = dev.call("chain_getBlockHash", 0)[2:18]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "testkit.rogue_peer",
                network_id,
                address,
                "forged-endpoints",
                str(spec),
                SEED.hex(),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=ROOT,
        )
        assert result.stdout.strip(), result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["sent"] > 0
        assert report["connected"] is False, dev.log()[-3000:]
        assert "banned" in dev.log()
        # Nothing of it was taken: no route, no endpoint names any forged address.
        assert all(not route["backends"] for route in dev.call("ingress_routes"))
        start = dev.best_number()
        dev.wait_for(lambda: dev.best_number() > start + 1, timeout=20, what="blocks after")
    finally:
        bob.stop()
        dev.stop()
