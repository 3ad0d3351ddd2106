"""Platform wallets over the network on loopback: a 3-of-5 committee of real node processes.
Prints the wallet creation latency (from the owner's `wallets.request` until its committee
registered the wallet: inclusion, finality, DKG and registration) and wallets per minute, and
one signing round (`wallet_transfer`: commit, share, aggregate, submit) median and p95, with
the ratio to a single-key Ed25519 signing of the same transaction measured in the same run.

    .venv/bin/python -m bench.wallet_network [--wallets 5] [--transfers 20] [--smoke]

--smoke: one wallet and two transfers, on a 2-of-3 committee (three node processes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import rlp

from chain.blocks import UnsignedTransaction
from chain.keys import Keypair, dev_keypair, sign_transaction
from chain.primitives import Hash32
from node.chain_spec import development_spec
from node.commands.wallet import login_signature
from testkit.nodes import NodeProcess, cli
from wallet.committee import REQUEST
from wallet.member import TRANSFER

OPERATORS = ("ferdie", "bob", "charlie", "dave", "eve")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def request_wallet(node: NodeProcess, login: Keypair, genesis: Hash32) -> str:
    """The login key's `wallets.request`, then its wallet's address once registered: the
    request's block, its finality, the DKG and the registration's block."""
    nonce = int(node.call("system_accountNextIndex", login.address))
    tx = sign_transaction(login, genesis_hash=genesis, nonce=nonce, call=REQUEST.call(), tip=0)
    tx_hash = node.call("author_submitExtrinsic", "0x" + rlp.encode(tx).hex())
    receipt = node.wait_for(
        lambda: node.call("chain_getExtrinsic", tx_hash), timeout=30, what="the request"
    )
    (event,) = [e for e in receipt["events"] if e["name"] == "WalletRequested"]
    request_id = int(event["data"]["request"])
    answer = node.wait_for(
        lambda: (r := node.call("wallet_request", request_id))["status"] == "registered" and r,
        timeout=60,
        what="the registration",
    )
    return str(answer["wallet"]["address"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wallets", type=int, default=5)
    parser.add_argument("--transfers", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="one wallet, two transfers, 2-of-3")
    args = parser.parse_args()
    size, threshold = (3, 2) if args.smoke else (5, 3)
    if args.smoke:
        args.wallets, args.transfers = 1, 2
    spec = development_spec().to_json()
    spec["runtime"].update(walletCommitteeSize=size, walletThreshold=threshold)
    login = dev_keypair("alice")
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        first = NodeProcess(
            Path(tmp) / "ferdie",
            args=[
                "--chain",
                str(spec_path),
                "--validator",
                "--key",
                "dev-alice",
                "--operator",
                "dev-ferdie",
            ],
        ).start()
        address = first.call("system_localListenAddresses")[0]
        nodes = [first] + [
            NodeProcess(
                Path(tmp) / name,
                args=[
                    "--chain",
                    str(spec_path),
                    "--bootnodes",
                    address,
                    "--operator",
                    f"dev-{name}",
                ],
            )
            for name in OPERATORS[1:size]
        ]
        try:
            for node in nodes[1:]:
                node.start()
            first.wait_for(
                lambda: first.call("towers_active")["total"] == size,
                timeout=180,
                what=f"{size} active nodes",
            )
            genesis = Hash32(bytes.fromhex(first.call("chain_getBlockHash", 0)[2:]))
            created, wallets = [], []
            for _ in range(args.wallets):
                started = time.monotonic()
                wallets.append(request_wallet(first, login, genesis))
                created.append(time.monotonic() - started)
            wallet = wallets[0]
            cli(
                "tx",
                "transfer",
                "--from",
                "dev-alice",
                "--to",
                wallet,
                "--amount",
                "10000000000",
                "--rpc",
                first.url,
            )
            dest = dev_keypair("dave").public
            rounds, single = [], []
            nonce = int(first.call("system_accountNextIndex", wallet))
            for n in range(args.transfers):
                wallet_key = bytes.fromhex(first.call("wallet_show", wallet)["groupKey"][2:])
                signature = login_signature(login, genesis, wallet_key, nonce + n, dest, 1_000)
                started = time.monotonic()
                first.call(
                    "wallet_transfer",
                    wallet,
                    dev_keypair("dave").address,
                    "1000",
                    "0x" + signature.hex(),
                    nonce + n,
                )
                rounds.append(time.monotonic() - started)
                call = TRANSFER.call(dest=dest, amount=1_000)
                payload = UnsignedTransaction(
                    genesis, wallet_key, nonce + n, 0, call
                ).signing_payload()
                started = time.perf_counter()
                login.sign(payload)
                single.append(time.perf_counter() - started)
        finally:
            for node in nodes:
                node.stop()

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:.1f} ms, p95 {p95(values) * 1000:.1f} ms"

    print(
        f"wallet creation (request, {size}-member DKG, registration): {ms(created)}; "
        f"{60 / statistics.median(created):.0f} wallets/minute"
    )
    print(f"{threshold}-of-{size} signing round over the network: {ms(rounds)}")
    print(
        f"single-key Ed25519 signing: median {statistics.median(single) * 1e6:.1f} µs; "
        f"ratio {statistics.median(rounds) / statistics.median(single):,.0f}x"
    )


if __name__ == "__main__":
    main()
