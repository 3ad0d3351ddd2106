"""Real validator processes on loopback: a validator that signs two prevotes of one round for
different blocks is reported by the node that received both, and every node's chain records
the offence once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chain.address import encode_address
from testkit.built_chain import unlock_validator
from testkit.local_network import LocalNetwork
from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration


def test_an_equivocating_validator_is_recorded_on_chain(testnet: LocalNetwork) -> None:
    a, b = testnet.nodes[0], testnet.nodes[1]
    a.wait_for(lambda: a.finalized_number() >= 1, timeout=30, what="finality")
    testnet.nodes[3].stop()  # its key now signs only what the equivocator sends
    network_id = a.call("chain_getBlockHash", 0)[2:18]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.vote_equivocator",
            network_id,
            testnet.layout[0].multiaddr,
            str(testnet.folder),
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    sent = json.loads(result.stdout.strip().splitlines()[-1])
    offender = encode_address(unlock_validator(testnet.folder, 3).public)

    def recorded() -> list[dict[str, object]] | None:
        listed = b.call("offences_list")
        return listed["offences"] if listed["total"] else None  # type: ignore[no-any-return]

    offences = b.wait_for(recorded, timeout=40, what="the offence on chain")
    assert len(offences) == 1, offences
    (offence,) = offences
    assert (offence["kind"], offence["offender"], offence["round"]) == (
        "vote",
        offender,
        sent["round"],
    )
    assert "reporting it to the chain" in a.log()
    # Finality goes on with the three honest validators.
    start = b.finalized_number()
    b.wait_for(lambda: b.finalized_number() > start + 1, timeout=30, what="finality afterwards")
    assert b.call("offences_list")["total"] == 1
