"""End to end: pre-signed transfers pushed through `author_submitExtrinsic` (HTTP keep-alive,
JSON-RPC batches) into a real node process until finalized. Prints transfers/s finalized and
the median (and p95) submit-to-finalized latency in slots. Targets: >= 2,000/s, median <= 2 slots.

    .venv/bin/python -m bench.end_to_end [--accounts 2000] [--per-account 4] [--batch 200]
        [--smoke]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import rlp
import trio
import trio_websocket

from chain.address import encode_address
from chain.blocks import tx_hash
from chain.genesis import build_genesis, parse_spec
from chain.keys import Keypair, sign_transaction
from chain.runtime.balances import Balances
from chain.state import TrieState
from chain.trie import BLANK_ROOT
from node.chain_spec import development_spec
from testkit.nodes import NodeProcess


def finalized_listener(
    url: str, seen: dict[str, float], stop: threading.Event, ready: threading.Event
) -> None:
    async def listen() -> None:
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
            ready.set()
            while not stop.is_set():
                with trio.move_on_after(0.5):
                    message = json.loads(await ws.get_message())
                    seen[message["params"]["result"]["hash"]] = time.monotonic()

    trio.run(listen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--per-account", type=int, default=4)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help="20 accounts, 2 transfers each")
    args = parser.parse_args()
    if args.smoke:
        args.accounts, args.per_account, args.batch = 20, 2, 20

    rng = random.Random(11)
    keys = [Keypair.from_seed(rng.randbytes(32)) for _ in range(args.accounts)]
    spec_json = development_spec().to_json()
    spec_json.update(id="bench_e2e", name="bench e2e", chainType="Local")
    spec_json["balances"] = [[encode_address(k.public), str(10**20)] for k in keys]
    spec = parse_spec(spec_json)
    genesis_hash = build_genesis(spec, TrieState({}, BLANK_ROOT)).hash
    (transfer,) = Balances().calls()
    print(f"signing {args.accounts * args.per_account} transfers…")
    rounds = []
    for nonce in range(args.per_account):
        rounds.append(
            [
                "0x"
                + rlp.encode(
                    sign_transaction(
                        k,
                        genesis_hash=genesis_hash,
                        nonce=nonce,
                        call=transfer.call(dest=keys[(i + 1) % len(keys)].public, amount=1_000_000),
                    )
                ).hex()
                for i, k in enumerate(keys)
            ]
        )
    txs = [tx for r in rounds for tx in r]
    slot_s = spec.slot_duration_ms / 1000

    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec_json))
        node = NodeProcess(
            Path(tmp) / "node",
            args=["--chain", str(spec_path), "--validator", "--key", "dev-alice"],
        ).start()
        seen: dict[str, float] = {}
        stop, ready = threading.Event(), threading.Event()
        listener = threading.Thread(
            target=finalized_listener, args=(node.url.replace("http", "ws"), seen, stop, ready)
        )
        listener.start()
        ready.wait(10)
        submitted_at: dict[str, float] = {}
        try:
            start = time.monotonic()
            with httpx.Client(timeout=60) as client:
                for offset in range(0, len(txs), args.batch):
                    chunk = txs[offset : offset + args.batch]
                    body = [
                        {
                            "jsonrpc": "2.0",
                            "id": i,
                            "method": "author_submitExtrinsic",
                            "params": [x],
                        }
                        for i, x in enumerate(chunk)
                    ]
                    replies = client.post(node.url, json=body).json()
                    now = time.monotonic()
                    errors = [r["error"] for r in replies if "error" in r]
                    if errors:
                        raise RuntimeError(f"{len(errors)} refused, e.g. {errors[0]}")
                    for x in chunk:
                        submitted_at["0x" + tx_hash(bytes.fromhex(x[2:])).hex()] = now
            submit_done = time.monotonic()
            node.wait_for(
                lambda: not node.call("author_pendingExtrinsics"), timeout=120, what="an empty pool"
            )
            target = node.call("chain_getHeader")["hash"]
            node.wait_for(lambda: target in seen, timeout=30, what="finalization")
            finalized_tx: dict[str, float] = {}
            # A copy: the listener thread keeps adding blocks finalized meanwhile.
            for block_hash, at in list(seen.items()):
                block = node.call("chain_getBlock", block_hash)
                for x in block["block"]["extrinsics"]:
                    finalized_tx["0x" + tx_hash(bytes.fromhex(x[2:])).hex()] = at
        finally:
            stop.set()
            listener.join()
            node.stop()

    missing = set(submitted_at) - set(finalized_tx)
    if missing:
        raise SystemExit(f"{len(missing)} transfers were not finalized")
    last = max(finalized_tx[h] for h in submitted_at)
    rate = len(txs) / (last - start)
    latencies = sorted((finalized_tx[h] - t) / slot_s for h, t in submitted_at.items())
    accepted = len(txs) / (submit_done - start)
    print(f"submitted {len(txs)} in {submit_done - start:.2f} s ({accepted:,.0f}/s accepted)")
    print(f"end to end: {rate:,.0f} transfers/s finalized (target >= 2,000)")
    print(
        f"latency submit -> finalized: median {statistics.median(latencies):.2f} slots, "
        f"p95 {latencies[int(len(latencies) * 0.95)]:.2f} slots (target median <= 2)"
    )


if __name__ == "__main__":
    main()
