"""Block authoring under RPC floods: the intervals between a dev node's blocks (median, p95, from
the timestamps the chain records) and the time it took to author each (from its log), with the
node idle, under 20 WebSockets x 1,000 head subscriptions that are never read, and under 100
HTTP requests that announce a 100 kB body and never send it (kept at 100: each one cut off is
opened again), all in one run against one node, with the ratios to the idle figures. Target:
p95 interval <= 1.2 slots under both floods. Legitimate calls are made throughout the
slow-body flood, from the same address (127.0.0.1), and counted.

    .venv/bin/python -m bench.rpc_floods [--seconds 20] [--smoke]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from node.rpc.client import RpcCallError, RpcClient, RpcClientError
from testkit import floods
from testkit.nodes import NodeProcess

SLOT_MS = 1000
AUTHORED = re.compile(r"authored #(\d+) .* in (\d+) ms")


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    intervals: floods.Intervals
    authoring_ms: tuple[int, ...]
    note: str = ""


def authoring_times(node: NodeProcess, first: int, last: int) -> tuple[int, ...]:
    """How long the node took to author blocks first..last, as it logged them."""
    found = []
    for match in AUTHORED.finditer(node.log()):
        if first <= int(match.group(1)) <= last:
            found.append(int(match.group(2)))
    return tuple(found)


def measure(node: NodeProcess, name: str, seconds: float) -> Phase:
    intervals = floods.authoring_intervals(node, seconds)
    last = intervals.first + len(intervals.gaps_ms)
    return Phase(name, intervals, authoring_times(node, intervals.first + 1, last))


@contextmanager
def sustained_slow_bodies(port: int, count: int, source: str) -> Iterator[None]:
    """`count` stalled requests from `source` at all times: each one the server cuts off or
    refuses is replaced by a new one."""
    stop = threading.Event()

    def keep() -> None:
        while not stop.is_set():
            try:
                with floods.slow_bodies(port, count=1, source=source) as (sock,):
                    sock.settimeout(0.5)
                    while not stop.is_set():
                        try:
                            if not sock.recv(65536):
                                break
                        except TimeoutError:
                            continue
            except OSError:
                time.sleep(0.1)

    threads = [threading.Thread(target=keep, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


def legitimate_calls(
    url: str, stop: threading.Event, counts: dict[str, int], failures: set[str]
) -> None:
    client = RpcClient(url, timeout=5)
    while not stop.is_set():
        try:
            client.call("system_name")
            counts["answered"] += 1
        except (RpcClientError, RpcCallError) as exc:
            counts["failed"] += 1
            failures.add(str(exc))
        time.sleep(0.1)


def describe(phase: Phase, idle: Phase) -> str:
    gaps = phase.intervals
    authoring = phase.authoring_ms or (0,)
    median_authoring = statistics.median(authoring)
    p95_authoring = sorted(authoring)[min(len(authoring) - 1, round(0.95 * (len(authoring) - 1)))]
    ratio_median = gaps.median / idle.intervals.median
    ratio_p95 = gaps.p95 / idle.intervals.p95
    verdict = "ok" if gaps.p95 <= 1.2 * SLOT_MS else "OVER 1.2 slots"
    line = (
        f"{phase.name:<22} blocks {len(gaps.gaps_ms) + 1:>3}  interval median {gaps.median:>6.0f} "
        f"ms  p95 {gaps.p95:>6.0f} ms ({gaps.p95 / SLOT_MS:.2f} slots, {verdict})  "
        f"ratio to idle {ratio_median:.2f} / {ratio_p95:.2f}  authoring median "
        f"{median_authoring:.0f} ms p95 {p95_authoring} ms"
    )
    return line + (f"\n{'':<22} {phase.note}" if phase.note else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument(
        "--smoke", action="store_true", help="2.5 s phases, floods of 2 x 100 subs, 10 bodies"
    )
    args = parser.parse_args()
    sockets, slow_bodies, settle = (2, 10, 0.5) if args.smoke else (20, 100, 3.0)
    if args.smoke:
        args.seconds = 2.5
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess(Path(tmp) / "node", args=["--dev"]).start()
        try:
            time.sleep(settle)  # past the first blocks' start-up work
            idle = measure(node, "idle", args.seconds)
            with floods.unread_subscriptions(
                node.port, sockets=sockets, per_socket=50 * sockets, source="127.0.0.4"
            ):
                subscribed = measure(
                    node, f"{sockets} x {50 * sockets:,} unread subs", args.seconds
                )
            counts = {"answered": 0, "failed": 0}
            failures: set[str] = set()
            stop = threading.Event()
            caller = threading.Thread(
                target=legitimate_calls, args=(node.url, stop, counts, failures)
            )
            with sustained_slow_bodies(node.port, slow_bodies, "127.0.0.1"):
                time.sleep(1)
                caller.start()
                slow = measure(node, f"{slow_bodies} slow bodies", args.seconds)
                stop.set()
                caller.join()
            slow = Phase(
                slow.name,
                slow.intervals,
                slow.authoring_ms,
                f"legitimate calls meanwhile: {counts['answered']} answered, "
                f"{counts['failed']} failed" + "".join(f"\n  {f}" for f in sorted(failures)),
            )
        finally:
            node.stop()
    print(f"slot {SLOT_MS} ms, {args.seconds:g} s per phase, one dev node")
    for phase in (idle, subscribed, slow):
        print(describe(phase, idle))


if __name__ == "__main__":
    main()
