"""Ed25519 verifications per second on a worker thread, alone and beside a thread running Python
(as a node's event loop does while it imports blocks): libsodium lets go of the GIL while it
verifies, but the worker needs the GIL back between two verifications, and a busy thread hands
it over only every switch interval (5 ms by default). Baseline: the same verifications on the
main thread alone, in the same run.

    .venv/bin/python -m bench.signature_threads [--seconds 2] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from chain.keys import Keypair
from chain.signature import verify


def verifications(seconds: float, *, busy: bool, switch: float | None = None) -> float:
    """Verifications per second on a worker thread for `seconds`, beside a busy Python thread
    if `busy` (with `switch` as the interpreter's switch interval, if given)."""
    key = Keypair.from_seed(bytes(32))
    message = b"x" * 120
    signature = key.sign(message)
    count = [0]
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            verify(key.public, message, signature)
            count[0] += 1

    previous = sys.getswitchinterval()
    if switch is not None:
        sys.setswitchinterval(switch)
    try:
        thread = threading.Thread(target=worker)
        started = time.perf_counter()
        thread.start()
        if busy:
            total = 0
            while time.perf_counter() - started < seconds:
                for i in range(1000):
                    total += i * i
        else:
            time.sleep(seconds)
        stop.set()
        thread.join()
        return count[0] / (time.perf_counter() - started)
    finally:
        sys.setswitchinterval(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--smoke", action="store_true", help="0.2 s each")
    args = parser.parse_args()
    seconds = 0.2 if args.smoke else args.seconds
    key = Keypair.from_seed(bytes(32))
    message = b"x" * 120
    signature = key.sign(message)
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        verify(key.public, message, signature)
        done += 1
    alone = done / (time.perf_counter() - started)
    rows = [
        ("main thread, alone (baseline)", alone),
        ("worker thread, main thread idle", verifications(seconds, busy=False)),
        ("worker thread beside busy Python", verifications(seconds, busy=True)),
        (
            "  the same, switch interval 0.5 ms",
            verifications(seconds, busy=True, switch=0.0005),
        ),
    ]
    for name, rate in rows:
        print(f"{name:<38} {rate:>9,.0f} verifications/s  {rate / alone:6.3f}")


if __name__ == "__main__":
    main()
