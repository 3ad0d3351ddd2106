"""`app_metrics`, an application's metrics for its owner: its replicas' state, restarts, CPU and
memory on this node, and its traffic through this node's ingress, over a real chain, a real
controller and the in-memory engine; refused to anyone but the owner's fresh signed request;
and `statemesh app metrics`' table of the answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from chain.address import encode_address
from chain.clock import ManualClock
from node.cli import build_parser
from node.commands.app import metrics_lines
from node.rpc.errors import RpcError
from node.rpc.registry import Registry
from node.rpc.workload_methods import UNKNOWN_APP
from node.workload_access import ACCESS_DENIED
from orchestrator.controller import Controller
from orchestrator.ingress_metrics import IngressMetrics
from tests.factories import BOB
from tests.unit.orchestrator.fake_engine import FakeEngine
from tests.unit.test_workload_methods import (
    ME,
    NOW,
    OTHER,
    WEB,
    auth,
    call,
    compute_node,
    refusal_of,
)


def test_the_owner_reads_the_replicas_and_the_ingress_traffic(tmp_path: Path) -> None:
    traffic = IngressMetrics()
    for status, seconds in [(200, 0.02)] * 18 + [(503, 0.2), (502, 3.0)]:
        traffic.observe("web", status, seconds)
    traffic.observe("api", 500, 1.0)  # another application's: never in web's answer
    traffic.observe("", 404, 0.001)  # unknown hosts'

    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        (cid,) = [c.id for c in engine.with_labels({})]
        engine.containers[cid].cpu_ns = 2_500_000_000
        engine.containers[cid].memory_bytes = 8 * 2**20
        await trio.sleep(6)  # one metering sample
        found = await call(registry, "app_metrics", "web", auth())
        assert found["app"] == "web" and found["node"] == encode_address(ME)
        (replica,) = found["replicas"]
        assert {k: v for k, v in replica.items() if k != "uptimeSeconds"} == {
            "replica": 0,
            "revision": 3,
            "state": "Running",
            "ready": True,
            "restarts": 0,
            "cpuSeconds": 2.5,
            "memoryBytes": 8 * 2**20,
            "peakMemoryBytes": 8 * 2**20,
        }
        assert replica["uptimeSeconds"] > 0
        ingress = found["ingress"]
        assert ingress == {
            "requests": 20,
            "errors": 2,
            "byCode": {"200": 18, "502": 1, "503": 1},
            # 18 of 20 in (0.01, 0.025]: the median at 10/18 of the bucket.
            "latencyP50Seconds": pytest.approx(0.01 + 0.015 * 10 / 18, abs=1e-6),
            # The 19th of 20 (rank 19) lies in (0.1, 0.25]: the whole of that bucket.
            "latencyP95Seconds": pytest.approx(0.25, abs=1e-6),
        }

        # The container fails and is restarted: one restart, its CPU time kept.
        engine.exit(cid, 1)
        while not ((s := controller.status()[WEB.key]).ready and s.restart_count):
            await controller.changed()
        (again,) = (await call(registry, "app_metrics", "web", auth()))["replicas"]
        assert (again["restarts"], again["cpuSeconds"]) == (1, 2.5)

    compute_node(tmp_path, test, traffic=traffic.traffic)


def test_a_node_without_ingress_says_so(tmp_path: Path) -> None:
    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        found = await call(registry, "app_metrics", "web", auth())
        assert found["ingress"] is None and len(found["replicas"]) == 1

    compute_node(tmp_path, test)


def test_the_metrics_are_refused_to_all_but_the_owner(tmp_path: Path) -> None:
    traffic = IngressMetrics()
    traffic.observe("web", 200, 0.123456)

    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        cases = [
            (None, "missing", "the metrics of 'web' are served to its owner only: sign the "
                              "request with the owner's key (param auth)"),
            (auth(signer=BOB), "notOwner", f"{encode_address(BOB.public)} does not own 'web' "
                                           f"(its owner is {encode_address(ME)})"),
            (auth(node=OTHER), "wrongNode", f"the request is signed for node "
                                            f"{encode_address(OTHER)}, not this node "
                                            f"({encode_address(ME)})"),
            (auth(expires=NOW + 900), "tooFarAhead", "the request expires 900 s from now: "
                                                     "at most 300 s ahead are accepted"),
            (auth("api"), "badSignature", "the signature is not the owner's signature of a "
                                          "request for 'web' on this node's chain, node and "
                                          "expiry"),
            ({**auth(), "expires": NOW + 61}, "badSignature", "the signature is not the owner's "
             "signature of a request for 'web' on this node's chain, node and expiry"),
        ]  # fmt: skip
        for grant, reason, message in cases:
            with pytest.raises(RpcError) as raised:
                await call(registry, "app_metrics", "web", grant)
            assert refusal_of(raised.value) == (ACCESS_DENIED, reason)
            assert raised.value.message == message
            assert "0.123" not in str(raised.value.to_json())  # no figure leaks in a refusal

    compute_node(tmp_path, test, traffic=traffic.traffic)


def test_a_request_replayed_past_its_expiry_is_refused(tmp_path: Path) -> None:
    clock = ManualClock(now_ms=NOW * 1000)
    grant = auth(expires=NOW + 60)

    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        assert (await call(registry, "app_metrics", "web", grant))["app"] == "web"
        clock.advance(59)
        assert (await call(registry, "app_metrics", "web", grant))["app"] == "web"
        clock.advance(1)
        with pytest.raises(RpcError) as raised:
            await call(registry, "app_metrics", "web", grant)
        assert refusal_of(raised.value) == (ACCESS_DENIED, "expired")
        assert raised.value.message == f"the request expired 0 s ago (at {NOW + 60})"

    compute_node(tmp_path, test, clock=clock)


def test_an_unknown_app_is_unknown_to_anyone(tmp_path: Path) -> None:
    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        for grant in (auth("shop"), None):  # unknown whoever asks, signed or not
            with pytest.raises(RpcError) as raised:
                await call(registry, "app_metrics", "shop", grant)
            assert (raised.value.code, raised.value.message) == (
                UNKNOWN_APP,
                "no application 'shop' in finalized state",
            )

    compute_node(tmp_path, test)


ANSWER = {
    "app": "web",
    "node": "5Node",
    "replicas": [
        {"replica": 0, "revision": 3, "state": "Running", "ready": True, "restarts": 2,
         "cpuSeconds": 2.5, "memoryBytes": 8 * 2**20, "peakMemoryBytes": 12 * 2**20,
         "uptimeSeconds": 61.2},
        {"replica": 1, "revision": 3, "state": "Waiting", "ready": False, "restarts": 0,
         "cpuSeconds": 0.0, "memoryBytes": 0, "peakMemoryBytes": 0, "uptimeSeconds": 0.0},
    ],
    "ingress": {"requests": 20, "errors": 2, "byCode": {"200": 18, "503": 2},
                "latencyP50Seconds": 0.0183, "latencyP95Seconds": 1.5},
}  # fmt: skip


def test_the_cli_prints_a_table_per_replica_then_the_traffic() -> None:
    assert metrics_lines(ANSWER) == [
        "application web on node 5Node",
        "  REPLICA  STATE    READY  RESTARTS  CPU     MEMORY   PEAK      UPTIME",
        "  0        Running  yes    2         2.50 s  8.0 MiB  12.0 MiB  61 s",
        "  1        Waiting  no     0         0.00 s  0 B      0 B       0 s",
        "ingress (this node): 20 requests, 2 errors (5xx), latency p50 18.3 ms, p95 1.50 s",
        "  by status: 200 18, 503 2",
    ]
    quiet = {**ANSWER, "replicas": [], "ingress": None}
    assert metrics_lines(quiet)[-1] == "ingress: this node serves none"
    nothing = {"requests": 0, "errors": 0, "byCode": {},
               "latencyP50Seconds": None, "latencyP95Seconds": None}  # fmt: skip
    idle = {**ANSWER, "ingress": nothing}
    assert metrics_lines(idle)[-1] == (
        "ingress (this node): 0 requests, 0 errors (5xx), latency p50 -, p95 -"
    )


def test_the_cli_command_takes_the_owner_and_json_options() -> None:
    args = build_parser().parse_args(["app", "metrics", "web", "--json"])
    assert (args.name, args.json) == ("web", True)
    assert args.handler.__name__ == "_metrics"
