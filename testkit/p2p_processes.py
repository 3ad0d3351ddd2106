"""Processes running `p2p_node.py` on loopback, driven over their stdin/stdout JSON lines."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testkit.nodes import free_port

NODE_SCRIPT = Path(__file__).with_name("p2p_node.py")

Event = dict[str, Any]


class P2PNode:
    def __init__(
        self,
        base: Path,
        *,
        netid: str = "testnet",
        bootnodes: tuple[str, ...] = (),
        port: int | None = None,
        status: str = "",
        extra: tuple[str, ...] = (),
    ) -> None:
        self.base = base
        self.netid = netid
        self.bootnodes = bootnodes
        self.port = port if port is not None else free_port()
        self.status = status
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.events: list[Event] = []
        self.address = ""
        self.peer_id = ""
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._log = base.with_suffix(".log")

    def launch(self) -> P2PNode:
        """Start the process without waiting for it (start several, then `ready()` each)."""
        self.base.mkdir(parents=True, exist_ok=True)
        self.events = []
        args = [
            sys.executable,
            str(NODE_SCRIPT),
            "--base",
            str(self.base),
            "--port",
            str(self.port),
            "--netid",
            self.netid,
            "--status",
            self.status,
            *self.extra,
        ]
        for bootnode in self.bootnodes:
            args += ["--bootnode", bootnode]
        log = self._log.open("ab")
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        return self

    def ready(self, timeout: float = 20.0) -> P2PNode:
        event = self.wait_event(lambda e: e.get("event") == "ready", timeout, "ready")
        self.address = event["addr"]
        self.peer_id = event["peer_id"]
        return self

    def start(self) -> P2PNode:
        return self.launch().ready()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def log(self) -> str:
        return self._log.read_text(errors="replace")[-4000:] if self._log.exists() else ""

    def wait_event(
        self, predicate: Callable[[Event], bool], timeout: float = 10.0, what: str = "event"
    ) -> Event:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.alive():
                    raise AssertionError(
                        f"{self.base.name}: no {what} within {timeout} s "
                        f"(alive={self.alive()})\n{self.log()}"
                    )
                self._changed.wait(min(remaining, 0.2))

    def gossip(self) -> list[Event]:
        with self._changed:
            return [event for event in self.events if event.get("event") == "gossip"]

    def call(self, cmd: str, wait: float = 15.0, **fields: Any) -> Event:
        assert self.process is not None and self.process.stdin is not None
        request_id = next(self._ids)
        line = json.dumps({"id": request_id, "cmd": cmd, **fields}) + "\n"
        self.process.stdin.write(line.encode())
        self.process.stdin.flush()
        return self.wait_event(lambda e: e.get("reply") == request_id, wait, f"reply to {cmd}")

    def ok(self, cmd: str, wait: float = 15.0, **fields: Any) -> Event:
        reply = self.call(cmd, wait, **fields)
        assert reply["ok"], reply
        return reply

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.ok("stats")["stats"]
        return stats

    def peer_ids(self) -> set[str]:
        return {peer["peer_id"] for peer in self.ok("peers")["peers"]}

    def mesh_peers(self, topic: str = "blocks") -> set[str]:
        """The peers our gossip on `topic` goes to: a message published before a peer joins
        the mesh (a heartbeat after it connects) never reaches it."""
        return set(self.ok("mesh", topic=topic)["peers"])

    def wait_mesh(self, other: P2PNode, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while other.peer_id not in self.mesh_peers():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{other.base.name} not in {self.base.name}'s mesh within {timeout} s\n"
                    f"{self.base.name}:\n{self.log()}\n{other.base.name}:\n{other.log()}"
                )
            time.sleep(0.1)

    def wait_peers(self, expected: set[str], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            peers = self.ok("peers")["peers"]
            ready = {peer["peer_id"] for peer in peers if peer["status"] is not None}
            if expected <= ready:
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.base.name}: peers {self.peer_ids()} lack {expected}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """Close stdin (the node cancels its service and exits) and return its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.base.name} did not stop\n{self.log()}") from None

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
