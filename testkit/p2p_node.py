"""A test-only process running one P2PService, driven by JSON lines on stdin and reporting
JSON lines on stdout. It exits cleanly when stdin closes.

Topic `blocks` is validated by prefix: `bad` is REJECTed, `meh` IGNOREd, `boom` makes the
validator raise, anything else is ACCEPTed. Payloads starting with `F` are benchmark messages
(`u64 sent_ns | u32 seq | padding`): counted and timed, not printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

import trio

from p2p.config import DialConfig, P2PConfig, ScoringConfig
from p2p.errors import BadRequest, P2PError
from p2p.gossip import GossipMessage, Verdict
from p2p.host import P2PService
from p2p.identity import PeerId, resolve_node_key

FLOOD = struct.Struct(">QI")


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def judge(peer: PeerId, data: bytes) -> Verdict:
    if data.startswith(b"boom"):
        raise RuntimeError("validator blew up on purpose")
    if data.startswith(b"bad"):
        return Verdict.REJECT
    if data.startswith(b"meh"):
        return Verdict.IGNORE
    return Verdict.ACCEPT


class Node:
    def __init__(self, service: P2PService) -> None:
        self.service = service
        self.latencies_ns: list[int] = []
        self.flood_received = 0

    async def receive(self, channel: trio.MemoryReceiveChannel[GossipMessage]) -> None:
        async for message in channel:
            if message.data.startswith(b"F"):
                sent_ns, _ = FLOOD.unpack_from(message.data, 1)
                self.latencies_ns.append(time.time_ns() - sent_ns)
                self.flood_received += 1
            else:
                emit(
                    event="gossip",
                    topic=message.topic,
                    origin=message.origin,
                    data=message.data.decode(errors="replace"),
                )

    async def watch_peers(self) -> None:
        async for event in self.service.events():
            emit(
                event="peer",
                kind=event.kind.value,
                peer=event.peer_id,
                status=None if event.status is None else event.status.decode(errors="replace"),
            )

    async def command(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["cmd"]
        if name == "publish":
            await self.service.publish(request.get("topic", "blocks"), request["data"].encode())
            return {}
        if name == "publish_size":
            await self.service.publish("blocks", b"x" * int(request["size"]))
            return {}
        if name == "flood":
            return await self.flood(
                int(request["count"]), int(request["size"]), float(request.get("rate", 0))
            )
        if name == "request":
            response = await self.service.request(
                PeerId(request["peer"]),
                request["proto"],
                request["data"].encode(),
                timeout=request.get("timeout"),
            )
            return {"response": response.decode(errors="replace")}
        if name == "rtt":
            return await self.rtt(PeerId(request["peer"]), int(request["count"]))
        if name == "connect":
            return {"peer": await self.service.connect(request["addr"])}
        if name == "peers":
            return {
                "peers": [
                    {
                        "peer_id": peer.peer_id,
                        "address": peer.address,
                        "score": peer.score,
                        "status": None if peer.status is None else peer.status.decode(),
                    }
                    for peer in self.service.peers()
                ]
            }
        if name == "mesh":
            return {"peers": sorted(self.service.mesh_peers(request.get("topic", "blocks")))}
        if name == "stats":
            return {"stats": dataclasses.asdict(self.service.statistics())}
        if name == "report":
            latencies = sorted(self.latencies_ns)
            return {
                "received": self.flood_received,
                "p50_ms": statistics.median(latencies) / 1e6 if latencies else None,
                "p99_ms": latencies[int(len(latencies) * 0.99)] / 1e6 if latencies else None,
            }
        if name == "reset_report":
            self.latencies_ns.clear()
            self.flood_received = 0
            return {}
        raise ValueError(f"unknown command {name!r}")

    async def flood(self, count: int, size: int, rate: float) -> dict[str, Any]:
        """Publish `count` timed messages, at `rate` per second or as fast as allowed (0)."""
        padding = b"\0" * max(0, size - 1 - FLOOD.size)
        started = trio.current_time()
        for seq in range(count):
            if rate > 0:
                await trio.sleep_until(started + seq / rate)
            await self.service.publish("blocks", b"F" + FLOOD.pack(time.time_ns(), seq) + padding)
        return {"seconds": trio.current_time() - started}

    async def rtt(self, peer: PeerId, count: int) -> dict[str, Any]:
        samples = []
        started = time.monotonic()
        for _ in range(count):
            before = time.perf_counter_ns()
            await self.service.request(peer, "echo", b"ping")
            samples.append(time.perf_counter_ns() - before)
        return {
            "seconds": time.monotonic() - started,
            "p50_ms": statistics.median(samples) / 1e6,
        }


async def echo(peer: PeerId, request: bytes) -> bytes:
    return request


async def slow(peer: PeerId, request: bytes) -> bytes:
    await trio.sleep(5)
    return request


async def refuse(peer: PeerId, request: bytes) -> bytes:
    raise BadRequest("this protocol refuses everything")


async def crash(peer: PeerId, request: bytes) -> bytes:
    raise RuntimeError("handler blew up on purpose")


async def serve_commands(node: Node, nursery: trio.Nursery) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stdin:
        async for chunk in stdin:
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    nursery.start_soon(answer, node, json.loads(line))
    nursery.cancel_scope.cancel()


async def answer(node: Node, request: dict[str, Any]) -> None:
    try:
        result = await node.command(request)
    except P2PError as error:
        emit(reply=request["id"], ok=False, error=type(error).__name__, message=str(error))
        return
    emit(reply=request["id"], ok=True, **result)


async def main(args: argparse.Namespace) -> None:
    key = resolve_node_key(Path(args.base), node_key_hex=args.node_key)
    config = P2PConfig(
        network_id=args.netid,
        listen_port=args.port,
        bootnodes=tuple(args.bootnode),
        scoring=ScoringConfig(ban_seconds=args.ban_seconds),
        dial=DialConfig(initial_backoff=0.25, max_backoff=2.0),
        status_interval=args.status_interval,
        status_timeout=args.status_timeout,
    )
    service = P2PService(config, key, status=lambda: args.status.encode())
    node = Node(service)
    blocks = service.subscribe("blocks", judge)
    service.register_protocol(
        "echo", echo, max_request_bytes=65536, max_response_bytes=65536, timeout=5
    )
    service.register_protocol("slow", slow, max_request_bytes=64, max_response_bytes=64, timeout=10)
    service.register_protocol(
        "refuse", refuse, max_request_bytes=64, max_response_bytes=64, timeout=5
    )
    service.register_protocol(
        "crash", crash, max_request_bytes=64, max_response_bytes=64, timeout=5
    )
    async with trio.open_nursery() as nursery:
        address = await nursery.start(service.run)
        nursery.start_soon(node.receive, blocks)
        nursery.start_soon(node.watch_peers)
        emit(event="ready", addr=address, peer_id=service.peer_id)
        await serve_commands(node, nursery)
    emit(event="stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--netid", default="testnet")
    parser.add_argument("--bootnode", action="append", default=[])
    parser.add_argument("--node-key")
    parser.add_argument("--status", default="")
    parser.add_argument("--ban-seconds", type=float, default=60.0)
    parser.add_argument("--status-interval", type=float, default=10.0)
    parser.add_argument("--status-timeout", type=float, default=5.0)
    parser.add_argument("--log-level", default="INFO")
    arguments = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("p2p").setLevel(arguments.log_level)
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    trio.run(main, arguments)
