"""Gossip across node processes on loopback: delivery, messages/s, latency and CPU per
message, against a baseline of request/response round trips between the same processes,
measured in the same run.

One bootnode and N-1 leaves (a star: every message is relayed once by the bootnode). A leaf
publishes timed messages: first paced at --rate (latency under a steady load), then as fast
as backpressure allows (throughput). Every other node reports what it received.

    .venv/bin/python -m bench.p2p_gossip [--nodes 4] [--count 1000] [--rate 50] [--size 256]
        [--round-trips 1000] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from testkit.p2p_processes import P2PNode


def cpu_seconds(node: P2PNode) -> float:
    """User + system CPU time of the node's process (Linux /proc)."""
    assert node.process is not None
    fields = Path(f"/proc/{node.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_flood(
    sender: P2PNode, receivers: list[P2PNode], count: int, size: int, rate: float
) -> dict[str, Any]:
    for node in receivers:
        node.ok("reset_report")
    nodes = [sender, *receivers]
    cpu_before = [cpu_seconds(node) for node in nodes]
    started = time.monotonic()
    seconds = sender.ok("flood", wait=600, count=count, size=size, rate=rate)["seconds"]

    # Wait for the backlog to drain: until everyone has everything, or 3 s without progress.
    # `changed` is when the final tally was first seen: the end of delivery, to a poll.
    last, changed = -1, time.monotonic()
    while True:
        received = sum(node.ok("report")["received"] for node in receivers)
        now = time.monotonic()
        if received != last:
            last, changed = received, now
        if received == count * len(receivers) or now - changed >= 3:
            break
        time.sleep(0.1)
    reports = [node.ok("report") for node in receivers]
    cpu_ms = [1000 * (cpu_seconds(n) - b) / count for n, b in zip(nodes, cpu_before, strict=True)]
    dropped = sum(node.stats()["gossip"]["delivery_dropped"] for node in receivers)
    return {
        "dropped_at_delivery": dropped,
        "cpu_ms": {"publisher": cpu_ms[0], "relay": cpu_ms[1], "leaf": max(cpu_ms[2:] or [0])},
        "published_per_s": count / seconds,
        "delivered_per_s": count / max(changed - started, seconds),
        "delivered": min(report["received"] for report in reports) / count,
        "p50_ms": max(report["p50_ms"] or 0.0 for report in reports),
        "p99_ms": max(report["p99_ms"] or 0.0 for report in reports),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--round-trips", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true", help="3 processes, 20 messages")
    args = parser.parse_args()
    if args.smoke:
        args.nodes, args.count, args.round_trips = 3, 20, 20

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        quiet = ("--log-level", "WARNING")
        boot = P2PNode(base / "boot", extra=quiet).start()
        leaves = [
            P2PNode(base / f"leaf{n}", bootnodes=(boot.address,), extra=quiet).launch()
            for n in range(args.nodes - 1)
        ]
        nodes = [boot, *[leaf.ready() for leaf in leaves]]
        try:
            boot.wait_peers({leaf.peer_id for leaf in leaves})
            sender, receivers = leaves[0], [boot, *leaves[1:]]

            baseline = sender.ok("rtt", wait=600, peer=boot.peer_id, count=args.round_trips)
            round_trips_per_s = args.round_trips / baseline["seconds"]
            paced = run_flood(sender, receivers, args.count, args.size, args.rate)
            flood = run_flood(sender, receivers, args.count, args.size, 0)
        finally:
            for node in nodes:
                node.stop()

    print(f"{args.nodes} processes (star), {args.count} messages of {args.size} bytes per run")
    print(
        f"baseline request/response: {round_trips_per_s:,.0f} round trips/s, "
        f"p50 {baseline['p50_ms']:.2f} ms"
    )
    for name, result in (("paced", paced), ("flood", flood)):
        print(
            f"gossip {name:5}: {result['published_per_s']:,.0f} msg/s published, "
            f"{result['delivered_per_s']:,.0f} msg/s delivered, "
            f"{result['delivered']:.1%} delivered to every node "
            f"({result['dropped_at_delivery']} dropped at delivery), "
            f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms"
        )
        cpu = result["cpu_ms"]
        print(
            f"   CPU per message: publisher {cpu['publisher']:.2f} ms, relay {cpu['relay']:.2f} ms,"
            f" other leaves {cpu['leaf']:.2f} ms"
        )
    print(
        "ratio flood delivered msg/s / round trips/s: "
        f"{flood['delivered_per_s'] / round_trips_per_s:.2f}"
    )
    print(f"ratio paced p50 / round-trip p50: {paced['p50_ms'] / baseline['p50_ms']:.2f}")


if __name__ == "__main__":
    main()
