"""Multi-node benchmarks on loopback (real node processes):

finality   block authored -> finalized on all 4 validators: median and p95, in slots
throughput transfers/s finalized on all of 4 validators, and the ratio to 1 validator, same run
sync       blocks/s imported by a fresh node catching up 2,000 blocks of transfers, and the
           ratio to importing the same blocks alone in one process, same run

  .venv/bin/python -m bench.network [finality|throughput|sync|all] [--smoke]

--smoke: 2 validators instead of 4, 6 s of finality, 40 transfers, a 30-block sync.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import rlp
import trio
import trio_websocket

from bench.block_import import new_chain
from chain.address import encode_address
from chain.blocks import tx_hash
from chain.db import Database
from chain.genesis import ChainSpec, load_spec
from chain.importer import BlockImporter
from chain.keys import Keypair, sign_transaction
from chain.primitives import BlockNumber, Hash32, Slot, TimestampMs
from chain.runtime.balances import Balances
from chain.runtime.executive import Runtime
from chain.runtime.framework import BlockEnv
from chain.signature import verify
from chain.store import ChainStore
from chain.wire import decode_block
from consensus.proposer import propose
from node.commands.testnet import create, load, validator_arguments
from testkit.nodes import NodeProcess, free_port
from wallet.keystore import Keystore

SLOT_MS = 1000
SLOT_PHASE = 0.05
"""Seconds after a slot boundary at which the throughput runs start submitting."""


def start_network(folder: Path, count: int, accounts: list[Keypair]) -> list[NodeProcess]:
    ports = [(free_port(), free_port()) for _ in range(count)]
    create(folder, count, 0, 0, SLOT_MS, ports=ports)
    spec = json.loads((folder / "genesis.json").read_text())
    spec["balances"] += [[encode_address(k.public), str(10**20)] for k in accounts]
    (folder / "genesis.json").write_text(json.dumps(spec))
    layout = load(folder)
    nodes = []
    for n in layout:
        boot = layout[1 if n.index == 0 and count > 1 else 0]
        extra = ["--bootnodes", boot.multiaddr] if count > 1 else []
        nodes.append(
            NodeProcess(
                n.base_path,
                args=[*validator_arguments(folder, n), *extra],
                port=n.rpc_port,
                p2p_port=n.p2p_port,
            )
        )
    for node in nodes:
        node.start()
    return nodes


def watch_finalized(urls: list[str], seen: list[dict[int, float]], stop: threading.Event) -> None:
    """Record, per node, when each block number was first known final."""

    async def one(url: str, record: dict[int, float]) -> None:
        async with trio_websocket.open_websocket_url(url) as ws:
            await ws.send_message(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "chain_subscribeFinalizedHeads",
                        "params": [],
                    }
                )
            )
            await ws.get_message()
            last = 0
            while not stop.is_set():
                with trio.move_on_after(0.5):
                    head = json.loads(await ws.get_message())["params"]["result"]
                    now = time.time()
                    number = int(head["number"], 16)
                    for n in range(last + 1, number + 1):
                        record.setdefault(n, now)
                    last = max(last, number)

    async def all_nodes() -> None:
        async with trio.open_nursery() as nursery:
            for url, record in zip(urls, seen, strict=True):
                nursery.start_soon(one, url, record)

    trio.run(all_nodes)


def finality(seconds: float = 30.0, validators: int = 4) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nodes = start_network(Path(tmp) / "net", validators, [])
        seen: list[dict[int, float]] = [{} for _ in nodes]
        stop = threading.Event()
        watcher = threading.Thread(
            target=watch_finalized, args=([n.url.replace("http", "ws") for n in nodes], seen, stop)
        )
        watcher.start()
        try:
            time.sleep(seconds)
            top = min(max(r) for r in seen if r)
            latencies = []
            for number in range(2, top + 1):
                header = nodes[0].call(
                    "chain_getHeader", nodes[0].call("chain_getBlockHash", number)
                )
                authored = header["timestamp"] / 1000
                latencies.append((max(r[number] for r in seen) - authored) / (SLOT_MS / 1000))
        finally:
            stop.set()
            watcher.join()
            for node in nodes:
                node.stop()
    latencies.sort()
    print(
        f"finality latency over {len(latencies)} blocks on {validators} validators "
        f"({SLOT_MS} ms slots):"
    )
    median, p95 = statistics.median(latencies), latencies[int(len(latencies) * 0.95)]
    print(f"  median {median:.2f} slots, p95 {p95:.2f} slots (target median <= 2)")


def push(node: NodeProcess, txs: list[str], batch: int = 200) -> float:
    start = time.monotonic()
    with httpx.Client(timeout=60) as client:
        for offset in range(0, len(txs), batch):
            body = [
                {"jsonrpc": "2.0", "id": i, "method": "author_submitExtrinsic", "params": [x]}
                for i, x in enumerate(txs[offset : offset + batch])
            ]
            errors = [r for r in client.post(node.url, json=body).json() if "error" in r]
            if errors:
                raise RuntimeError(f"refused: {errors[0]}")
    return start


def finalized_rate(
    count: int, accounts: list[Keypair], txs_for: Callable[[Hash32], list[str]]
) -> tuple[float, float]:
    """Transfers per second from the first submission until every node has finalized the last
    block holding any of them, by the time each node announced its finalized heads
    (`chain_subscribeFinalizedHeads`); and the same until polling the nodes saw it, as this
    benchmark measured before (the polling's own round trips to four busy nodes added up to
    0.8 s to a 4 s run)."""
    with tempfile.TemporaryDirectory() as tmp:
        nodes = start_network(Path(tmp) / "net", count, accounts)
        seen: list[dict[int, float]] = [{} for _ in nodes]
        stop = threading.Event()
        watcher = threading.Thread(
            target=watch_finalized, args=([n.url.replace("http", "ws") for n in nodes], seen, stop)
        )
        watcher.start()
        try:
            nodes[0].wait_for(lambda: all(seen), timeout=60, what="finalized heads from all")
            genesis = Hash32(bytes.fromhex(nodes[0].call("chain_getBlockHash", 0)[2:]))
            txs = txs_for(genesis)
            # Blocks come at slot boundaries, so where the submission ends within a slot moves
            # a 4 s figure by up to a quarter: every run starts just after a boundary.
            slot = SLOT_MS / 1000
            time.sleep(slot - time.time() % slot + SLOT_PHASE)
            started = time.time()
            push(nodes[0], txs)
            last = tx_hash(bytes.fromhex(txs[-1][2:])).hex()

            def everywhere() -> bool:
                for node in nodes:
                    receipt = node.call("chain_getExtrinsic", "0x" + last)
                    if not receipt or receipt["blockNumber"] > node.finalized_number():
                        return False
                return True

            nodes[0].wait_for(everywhere, timeout=300, what="all transfers final on every node")
            polled = time.time()
            top = nodes[0].finalized_number()
            holding = [n for n in range(1, top + 1) if _extrinsic_count(nodes[0], n)]
            final = max(holding)
            nodes[0].wait_for(
                lambda: all(final in record for record in seen), timeout=30, what="announcements"
            )
            announced = max(record[final] for record in seen)
            return len(txs) / (announced - started), len(txs) / (polled - started)
        finally:
            stop.set()
            watcher.join()
            for node in nodes:
                node.stop()


def _extrinsic_count(node: NodeProcess, number: int) -> int:
    block = node.call("chain_getBlock", node.call("chain_getBlockHash", number))
    return len(block["block"]["extrinsics"])


def throughput(accounts_count: int = 1000, per_account: int = 4, validators: int = 4) -> None:
    rng = random.Random(5)
    accounts = [Keypair.from_seed(rng.randbytes(32)) for _ in range(accounts_count)]
    (transfer,) = Balances().calls()

    def txs_for(genesis: Hash32) -> list[str]:
        return [
            "0x"
            + rlp.encode(
                sign_transaction(
                    k,
                    genesis_hash=genesis,
                    nonce=nonce,
                    call=transfer.call(
                        dest=accounts[(i + 1) % len(accounts)].public, amount=1_000_000
                    ),
                )
            ).hex()
            for nonce in range(per_account)
            for i, k in enumerate(accounts)
        ]

    single, single_polled = finalized_rate(1, accounts, txs_for)
    several, several_polled = finalized_rate(validators, accounts, txs_for)
    print(
        f"throughput: 1 validator {single:,.0f} transfers/s finalized; "
        f"{validators} validators {several:,.0f}/s finalized on all; "
        f"ratio {several / single:.2f} (seen by polling: {single_polled:,.0f} and "
        f"{several_polled:,.0f}/s, ratio {several_polled / single_polled:.2f})"
    )


def build_chain(folder: Path, blocks: int, per_block: int) -> tuple[Path, Path]:
    """A single-authority chain of `blocks` blocks of transfers, ending now, on disk."""
    ports = [(free_port(), free_port())]
    first_slot = time.time_ns() // 1_000_000 // SLOT_MS - blocks - 5
    create(folder, 1, 0, 0, SLOT_MS, ports=ports, genesis_timestamp_ms=(first_slot - 1) * SLOT_MS)
    rng = random.Random(9)
    accounts = [Keypair.from_seed(rng.randbytes(32)) for _ in range(200)]
    raw = json.loads((folder / "genesis.json").read_text())
    raw["balances"] += [[encode_address(k.public), str(10**20)] for k in accounts]
    (folder / "genesis.json").write_text(json.dumps(raw))
    spec: ChainSpec = load_spec(folder / "genesis.json")

    password = (folder / "password").read_text().strip()
    author = Keystore(folder / "keystore").unlock("validator-0", password)
    base = load(folder)[0].base_path
    db, store, genesis_hash = new_chain(base / "chains" / spec.id / "db", spec)
    runtime = Runtime(spec.runtime, genesis_hash)
    (transfer,) = Balances().calls()
    nonces = [0] * len(accounts)
    for n in range(blocks):
        parent = store.best_header
        slot = first_slot + n
        env = BlockEnv(
            BlockNumber(parent.number + 1), parent.hash, TimestampMs(slot * SLOT_MS), author.public
        )
        state = store.state_at(parent.hash)
        candidates = []
        for _ in range(per_block):
            i = rng.randrange(len(accounts))
            tx = sign_transaction(
                accounts[i],
                genesis_hash=genesis_hash,
                nonce=nonces[i],
                call=transfer.call(dest=accounts[(i + 7) % 200].public, amount=10),
            )
            nonces[i] += 1
            candidates.append(runtime.validate_transaction(state, rlp.encode(tx), env))
        block, execution = propose(
            store,
            runtime,
            parent,
            candidates,
            slot=Slot(slot),
            timestamp=TimestampMs(slot * SLOT_MS),
            signer=author,
            on_invalid=lambda tx, exc: None,
        )
        store.commit_block(block, execution, finalize=True)
    db.close()
    return folder / "genesis.json", base


def import_alone(spec_path: Path, base: Path, folder: Path) -> float:
    """Blocks per second of importing the chain at `base` into a fresh database in this
    process, one block after another, as sync imports them but with nothing else to do: decoded
    from its wire bytes, seal and transaction signatures checked, executed, stored and final,
    one fsync per 128 blocks. Sync's baseline, measured in the same run."""
    spec = load_spec(spec_path)
    source = Database(base / "chains" / spec.id / "db")
    try:
        store = ChainStore(source)
        count = store.best_header.number
        wire = [
            rlp.encode(store.block(store.canonical_hash(n) or b"")) for n in range(1, count + 1)
        ]
    finally:
        source.close()
    db, store, genesis_hash = new_chain(folder, spec)
    try:
        importer = BlockImporter(store, Runtime(spec.runtime, genesis_hash))
        started = time.perf_counter()
        for first in range(0, count, 128):
            with db.deferred_sync():
                for data in wire[first : first + 128]:
                    block = decode_block(data)
                    header = block.header
                    if not verify(header.author, header.pre_seal_hash(), header.seal):
                        raise RuntimeError(f"block #{header.number} has a bad seal")
                    importer.import_block(block, finalize=True)
        elapsed = time.perf_counter() - started
    finally:
        db.close()
    return count / elapsed


def sync(blocks: int = 2000, per_block: int = 10) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, base = build_chain(Path(tmp) / "net", blocks, per_block)
        alone = import_alone(spec_path, base, Path(tmp) / "alone")
        layout = load(Path(tmp) / "net")[0]
        source = NodeProcess(
            base, args=["--chain", str(spec_path)], port=layout.rpc_port, p2p_port=layout.p2p_port
        )
        source.start()
        fresh = NodeProcess(
            Path(tmp) / "fresh", args=["--chain", str(spec_path), "--bootnodes", layout.multiaddr]
        )
        try:
            start = time.monotonic()
            fresh.start()
            serving = time.monotonic()
            fresh.wait_for(lambda: fresh.best_number() >= blocks, timeout=600, what="sync")
            done = time.monotonic()
        finally:
            fresh.stop()
            source.stop()
    rate = blocks / (done - start)
    syncing = blocks / (done - serving)
    print(
        f"sync: {blocks} blocks of {per_block} transfers in {done - start:.1f} s = {rate:,.0f} "
        f"blocks/s ({rate * per_block:,.0f} transfers/s), node start included; "
        f"{syncing:,.0f} blocks/s from the node serving RPC ({serving - start:.1f} s start); "
        f"the same blocks imported alone in one process {alone:,.0f} blocks/s: ratio "
        f"{syncing / alone:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "which", nargs="?", default="all", choices=["finality", "throughput", "sync", "all"]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a minute in all")
    args = parser.parse_args()
    if args.which in ("finality", "all"):
        finality(*((6.0, 2) if args.smoke else (30.0, 4)))
    if args.which in ("throughput", "all"):
        throughput(*((20, 2, 2) if args.smoke else (1000, 4, 4)))
    if args.which in ("sync", "all"):
        sync(*((30, 2) if args.smoke else (2000, 10)))


if __name__ == "__main__":
    main()
