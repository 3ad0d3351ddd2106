"""Sync from genesis beside a lying peer: a fresh node catches up a finalized chain of 2,000
blocks from an honest node, once with honest peers only and once beside a peer that claims
best #10^9 and answers every sync request with no blocks (or never answers it), in one run.
Prints both times and the ratio honest / beside the liar. Target: ratio >= 0.5.

How the chain is built (fast, and what a real network would have produced): four validators'
keys from `statemesh testnet` in one process seal empty blocks in their own slots, one slot
after another, ending a few slots ago (the spec's genesis time is set that far back), each
block executed by the node's own proposer on the node's database; every 100th block and the
last carry a justification of precommits by three of the four validators, stored as the
finality gadget stores them. A real `statemesh node` (a full node, so the chain stays as built)
is then started on that database and serves it; the syncing node is a real process too, and
the liar is `tests/integration/rogue_peer.py`. A run's time is from launching the fresh node
to its finalized block reaching the last one (node start included); the syncs of each kind
are interleaved and the fastest of each counts.

    .venv/bin/python bench/sync_lying_peer.py [--blocks 2000] [--liar lying-empty|lying-stall|both]
        [--runs 2] [--timeout 180]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chain.db import Database  # noqa: E402
from chain.genesis import build_genesis, load_spec  # noqa: E402
from chain.primitives import Slot, TimestampMs  # noqa: E402
from chain.runtime.executive import Runtime  # noqa: E402
from chain.state import TrieState  # noqa: E402
from chain.store import ChainStore  # noqa: E402
from chain.trie import BLANK_ROOT  # noqa: E402
from consensus.aura import slot_author  # noqa: E402
from consensus.finality import Phase, quorum, sign_vote  # noqa: E402
from consensus.proposer import propose  # noqa: E402
from node.commands.testnet import create, load  # noqa: E402
from tests.integration.harness import NodeProcess, free_port  # noqa: E402
from tests.integration.rogue_peer import unlock_validator  # noqa: E402

SLOT_MS = 500
VALIDATORS = 4
JUSTIFY_EVERY = 100


def build_chain(folder: Path, blocks: int) -> Path:
    """A finalized chain of `blocks` empty blocks, ending a few slots ago, in node-0's database
    of a new 4-validator testnet in `folder`. Returns the spec's path."""
    first_slot = time.time_ns() // 1_000_000 // SLOT_MS - blocks - 5
    ports = [(free_port(), free_port()) for _ in range(VALIDATORS)]
    create(
        folder, VALIDATORS, 0, 0, SLOT_MS, ports=ports, genesis_timestamp_ms=first_slot * SLOT_MS
    )
    spec = load_spec(folder / "genesis.json")
    keys = {k.public: k for k in (unlock_validator(folder, i) for i in range(VALIDATORS))}
    db = Database(load(folder)[0].base_path / "chains" / spec.id / "db")
    store = ChainStore(db)
    genesis = build_genesis(spec, TrieState(db.trie_nodes, BLANK_ROOT, store.node_cache))
    store.initialize(genesis)
    runtime = Runtime(spec.runtime, genesis.hash)
    voters = list(keys.values())[: quorum(VALIDATORS)]
    for n in range(1, blocks + 1):
        slot = first_slot + n
        block, execution = propose(
            store,
            runtime,
            store.best_header,
            [],
            slot=Slot(slot),
            timestamp=TimestampMs(slot * SLOT_MS),
            signer=keys[slot_author(slot, spec.authorities)],
            on_invalid=lambda tx, exc: None,
        )
        store.commit_block(block, execution, best=True)
        if n % JUSTIFY_EVERY == 0 or n == blocks:
            votes = [
                sign_vote(v, genesis.hash, slot, Phase.PRECOMMIT, block.header) for v in voters
            ]
            store.finalize(block.hash, b"".join(v.encode() for v in votes))
    db.close()
    return folder / "genesis.json"


def catch_up(fresh: NodeProcess, blocks: int, timeout: float) -> float | None:
    """Seconds from launching `fresh` to its finalized block reaching #`blocks`, or None."""
    began = time.monotonic()
    fresh.start()
    try:
        fresh.wait_for(lambda: fresh.finalized_number() >= blocks, timeout=timeout, what="sync")
    except AssertionError:
        return None
    finally:
        fresh.stop()
    return time.monotonic() - began


def best_of(times: list[float | None]) -> float | None:
    """The fastest sync of a kind (the machine is shared: slower runs measure other work);
    None if any of them did not finish."""
    if not times or any(t is None for t in times):
        return None
    return min(t for t in times if t is not None)


def start_liar(kind: str, network_id: str, spec: Path) -> tuple[subprocess.Popen[str], str]:
    liar = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.rogue_peer", network_id, "-", kind, str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert liar.stdout is not None
    address: str = json.loads(liar.stdout.readline())["listening"]
    return liar, address


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2000)
    parser.add_argument("--liar", choices=["lying-empty", "lying-stall", "both"], default="both")
    parser.add_argument("--timeout", type=float, default=180.0, help="per sync, in seconds")
    parser.add_argument("--runs", type=int, default=2, help="syncs of each kind, interleaved")
    args = parser.parse_args()
    kinds = ["lying-empty", "lying-stall"] if args.liar == "both" else [args.liar]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "net"
        began = time.monotonic()
        spec = build_chain(folder, args.blocks)
        print(f"built {args.blocks} blocks in {time.monotonic() - began:.1f} s")
        layout = load(folder)[0]
        server = NodeProcess(
            layout.base_path,
            args=["--chain", str(spec)],
            port=layout.rpc_port,
            p2p_port=layout.p2p_port,
        ).start()
        try:
            network_id = server.call("chain_getBlockHash", 0)[2:18]

            def fresh(name: str, *bootnodes: str) -> NodeProcess:
                return NodeProcess(
                    Path(tmp) / name,
                    args=["--chain", str(spec), "--bootnodes", *bootnodes, layout.multiaddr],
                )

            times: dict[str, list[float | None]] = {kind: [] for kind in ["honest", *kinds]}
            for run in range(args.runs):
                times["honest"].append(catch_up(fresh(f"honest-{run}"), args.blocks, args.timeout))
                for kind in kinds:
                    liar, address = start_liar(kind, network_id, spec)
                    try:
                        times[kind].append(
                            catch_up(fresh(f"{kind}-{run}", address), args.blocks, args.timeout)
                        )
                    finally:
                        liar.terminate()
                        liar.communicate(timeout=30)
            honest = best_of(times["honest"])
            if honest is None:
                raise SystemExit(f"honest sync did not finish in {args.timeout:.0f} s")
            print(
                f"honest peers only: {args.blocks} blocks in {honest:.1f} s (best of {args.runs})"
            )
            for kind in kinds:
                beside = best_of(times[kind])
                if beside is None:
                    print(f"beside one {kind} peer: not synced in {args.timeout:.0f} s; ratio 0")
                    continue
                print(
                    f"beside one {kind} peer: {args.blocks} blocks in {beside:.1f} s "
                    f"(best of {args.runs}); ratio {honest / beside:.2f} (target >= 0.5)"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
