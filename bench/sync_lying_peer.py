"""Sync from genesis beside a lying peer: a fresh node catches up a finalized chain of 2,000
blocks from an honest node, once with honest peers only and once beside a peer that claims
best #10^9 and answers every sync request with no blocks (or never answers it), in one run.
Prints both times and the ratio honest / beside the liar. Target: ratio >= 0.5.

How the chain is built (fast, and what a real network would have produced), by
`testkit/built_chain.py`: four validators' keys from `statemesh testnet` in one
process seal empty blocks in their own slots, one slot after another, ending a few slots ago
(the spec's genesis time is set that far back), each block executed by the node's own proposer
on the node's database; every 100th block and the last carry a justification of precommits by
three of the four validators, stored as the finality gadget stores them. A real `statemesh
node` (a full node, so the chain stays as built) is then started on that database and serves
it; the syncing node is a real process too, and
the liar is `testkit/rogue_peer.py`. A run's time is from launching the fresh node
to its finalized block reaching the last one (node start included); the syncs of each kind
are interleaved and the fastest of each counts.

    .venv/bin/python -m bench.sync_lying_peer [--blocks 2000]
        [--liar lying-empty|lying-stall|both] [--runs 2] [--timeout 180] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testkit.built_chain import build_finalized_chain, chain_server
from testkit.nodes import ROOT, NodeProcess


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
        [sys.executable, "-m", "testkit.rogue_peer", network_id, "-", kind, str(spec)],
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
    parser.add_argument(
        "--smoke", action="store_true", help="30 blocks, one run; a sync that fails is an error"
    )
    args = parser.parse_args()
    if args.smoke:
        args.blocks, args.runs = 30, 1
    kinds = ["lying-empty", "lying-stall"] if args.liar == "both" else [args.liar]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "net"
        began = time.monotonic()
        spec = build_finalized_chain(folder, args.blocks)
        print(f"built {args.blocks} blocks in {time.monotonic() - began:.1f} s")
        server = chain_server(folder).start()
        served_at = server.call("system_localListenAddresses")[0]
        try:
            network_id = server.call("chain_getBlockHash", 0)[2:18]

            def fresh(name: str, *bootnodes: str) -> NodeProcess:
                return NodeProcess(
                    Path(tmp) / name,
                    args=["--chain", str(spec), "--bootnodes", *bootnodes, served_at],
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
                if beside is None and args.smoke:
                    raise SystemExit(f"no sync beside one {kind} peer in {args.timeout:.0f} s")
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
