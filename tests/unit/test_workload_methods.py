"""The JSON-RPC methods about this node's workloads, called through the registry: over a real
chain, a real controller and the in-memory engine under trio's mock clock; the errors of a node
that offers no compute or does not run the replica asked for; and logs and container events
served to the application's owner only, on its signed request for this node."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import rlp
import trio
import trio.testing

from chain.address import encode_address
from chain.clock import ManualClock
from chain.keys import Keypair, sign_transaction
from chain.primitives import AccountId, Hash32
from chain.runtime import apps
from chain.runtime.apps import ReplicaEntry
from chain.signature import verify
from consensus.chain_service import ChainService
from node.rpc.errors import INVALID_PARAMS, RpcError
from node.rpc.registry import Method, Registry, Subscription
from node.rpc.workload_methods import (
    NO_COMPUTE,
    UNKNOWN_APP,
    not_here,
    register_workload_methods,
    with_revisions,
)
from node.workload_access import (
    ACCESS_DENIED,
    IdentityProof,
    IdentityUnproven,
    check_identity,
    identity_message,
    sign_access,
)
from orchestrator.controller import Controller, ControllerConfig
from orchestrator.errors import EngineUnavailable
from orchestrator.events import EventKind, EventLog
from orchestrator.ingress_metrics import AppTraffic
from orchestrator.logs import WorkloadLogs
from orchestrator.workloads import WorkloadService
from testkit.trio_clock import TrioClock
from tests.factories import ALICE, BOB
from tests.unit.orchestrator.builders import NODE, InMemoryDesired, container, replica
from tests.unit.orchestrator.fake_engine import FakeEngine, FakeFirewall, no_rootfs
from tests.unit.test_app_retention import db
from tests.unit.test_apps import CREATE, DELETE
from tests.unit.test_chain_service import block_at, open_chain

ME = ALICE.public
"""This node's id (any key will do: it is the owner's key only by chance)."""
OTHER = BOB.public
NOW = 1_800_000_000
"""The node's wall clock, by which requests expire."""
WEB = replace(
    replica(
        "web", 0, revision=3, containers=(container(args=("sh", "-c", "echo hi; sleep 1000")),)
    ),
    owner=ALICE.address,
    instance=1,  # the first application the test chain creates
)


async def call(registry: Registry, method: str, *params: Any) -> Any:
    entry = registry.get(method)
    assert isinstance(entry, Method | Subscription), method
    result = entry.handler(entry.params.bind(method, list(params)))
    return await result if inspect.isawaitable(result) else result


def refused(registry: Registry, method: str, *params: Any) -> RpcError:
    async def main() -> RpcError:
        with pytest.raises(RpcError) as raised:
            await call(registry, method, *params)
        return raised.value

    return trio.run(main)


def registry_for(
    chain: ChainService | None,
    workloads: WorkloadService | None,
    *,
    clock: ManualClock | None = None,
    traffic: Callable[[str], AppTraffic] | None = None,
) -> Registry:
    """Without a chain, for errors that come before any look at it."""
    registry = Registry()
    register_workload_methods(
        registry,
        chain or SimpleNamespace(store=None),  # type: ignore[arg-type]
        workloads,
        node_key=ALICE,
        clock=clock or ManualClock(now_ms=NOW * 1000),
        traffic=traffic,
    )
    return registry


GENESIS: list[bytes] = []
"""The genesis hash of the chain `compute_node` runs (the same for every run)."""


def auth(
    app: str = "web",
    *,
    signer: Keypair = ALICE,
    node: AccountId = ME,
    expires: int = NOW + 60,
    genesis: bytes | None = None,
) -> dict[str, Any]:
    """The `auth` param of `signer`'s request for `app` on `node`, on the test chain."""
    chain = genesis if genesis is not None else GENESIS[0]
    return sign_access(signer, genesis=chain, app=app, node=node, expires=expires).to_json()


# -- a node without compute ---------------------------------------------------------------------

METHODS = [("app_logs", "web"), ("app_subscribeLogs", "web"),
           ("app_events", "web", auth(genesis=b"")), ("node_workloads",),
           ("app_metrics", "web")]  # fmt: skip
"""Without `auth`, `app_events` serves the chain's events, which need no compute."""


@pytest.mark.parametrize("call_args", METHODS, ids=[m[0] for m in METHODS])
def test_a_node_that_runs_no_workloads_says_so(call_args: tuple[str, ...]) -> None:
    error = refused(registry_for(None, None), *call_args)
    assert (error.code, error.message) == (
        NO_COMPUTE,
        "this node offers no compute: it runs no workloads "
        "(it has no --operator key, or was started with --no-compute)",
    )


@pytest.mark.parametrize("call_args", METHODS, ids=[m[0] for m in METHODS])
def test_a_node_without_an_engine_says_where_it_looked(call_args: tuple[str, ...]) -> None:
    workloads = WorkloadService(None, ME, "dev", "unix:///nowhere.sock")  # type: ignore[arg-type]
    workloads.engine_error = EngineUnavailable("unix:///nowhere.sock", "the socket does not exist")
    error = refused(registry_for(None, workloads), *call_args)
    assert (error.code, error.message) == (
        NO_COMPUTE,
        "this node offers no compute: no container engine answers at unix:///nowhere.sock: "
        "the socket does not exist",
    )
    workloads.engine_error = None  # still connecting
    error = refused(registry_for(None, workloads), *call_args)
    assert error.message == "this node offers no compute: its container engine is not connected yet"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["web", -1], "invalid param 'replica': expected a replica index (an integer >= 0)"),
        (["web", None, "some"], "invalid param 'tail': expected a number of lines "
                                '(an integer >= 0) or "all"'),
        (["web", True], "invalid param 'replica': expected a replica index (an integer >= 0)"),
    ],
)  # fmt: skip
def test_bad_params_are_refused(params: list[Any], message: str) -> None:
    error = refused(registry_for(None, None), "app_logs", *params)
    assert (error.code, error.message) == (INVALID_PARAMS, message)


# -- where a replica runs -----------------------------------------------------------------------


def entry(index: int, node: bytes, reason: str = "") -> ReplicaEntry:
    return ReplicaEntry(index=index, revision=1, node=node, since=5, reason=reason)


@pytest.mark.parametrize(
    ("replica", "placement", "message"),
    [
        (1, [entry(0, ME), entry(1, OTHER)],
         f"replica 1 of 'web' runs on node {encode_address(OTHER)}, not on this node"),
        (4, [entry(0, ME)], "application 'web' has no replica 4"),
        (0, [entry(0, ME)], "replica 0 of 'web' is assigned to this node but does not run yet"),
        (0, [entry(0, b"", "no active cpu node has room")],
         "replica 0 of 'web' is pending: no active cpu node has room"),
        (None, [entry(0, OTHER), entry(1, b"", "full")],
         f"no replica of 'web' runs on this node: replica 0 runs on node {encode_address(OTHER)}"),
        (None, [], "no replica of 'web' runs on any node"),
        (None, [entry(0, ME)],
         "the replicas of 'web' are assigned to this node but do not run yet"),
    ],
)  # fmt: skip
def test_not_here_names_the_node_that_runs_the_replica(
    replica: int | None, placement: list[ReplicaEntry], message: str
) -> None:
    assert not_here("web", replica, placement, ME) == message


def test_events_carry_the_revision_their_replica_ran() -> None:
    log = EventLog()
    log.record(1.0, WEB.key, EventKind.STARTED, instance=1)  # before the first Scheduled: unknown
    log.record(2.0, WEB.key, EventKind.SCHEDULED, instance=1, message="revision 2")
    log.record(3.0, WEB.key, EventKind.STARTED, instance=1)
    log.record(4.0, WEB.key, EventKind.SCHEDULED, instance=1, message="revision 3")
    log.record(5.0, WEB.key, EventKind.READY, instance=1)
    other = replica("web", 1).key
    log.record(6.0, other, EventKind.READY, instance=1)  # no Scheduled kept: the one it runs now
    found = with_revisions(log.recent(), {WEB.key: 3, other: 7})
    assert [(e.at, r) for e, r in found] == [
        (1.0, None), (2.0, 2), (3.0, 2), (4.0, 3), (5.0, 3), (6.0, 7)
    ]  # fmt: skip


# -- a compute node -----------------------------------------------------------------------------

Scenario = Callable[[Registry, FakeEngine, Controller], Awaitable[None]]


def alices_chain(path: Path) -> ChainService:
    """A chain whose block 1 has ALICE create "web" (instance 1) and "api" (instance 2)."""
    chain: ChainService = open_chain(path)
    creates = [
        sign_transaction(
            ALICE, genesis_hash=chain.runtime.genesis_hash, nonce=n, call=CREATE.call(manifest=m)
        )
        for n, m in enumerate((db("web"), db("api")))
    ]
    block = block_at(chain, chain.store.best_hash, 1, [rlp.encode(tx) for tx in creates])
    assert len(block.extrinsics) == 2
    assert trio.run(chain.import_block, block)
    genesis = chain.store.genesis_hash
    assert genesis is not None
    GENESIS[:] = [genesis]
    return chain


def compute_node(
    tmp_path: Path,
    test: Scenario,
    *,
    chain: ChainService | None = None,
    desired: InMemoryDesired | None = None,
    clock: ManualClock | None = None,
    traffic: Callable[[str], AppTraffic] | None = None,
) -> None:
    """Runs `test` on a node that runs replica 0 of "web" (unless told other `desired`
    replicas) on `chain`, by default `alices_chain`: "web" is an application of ALICE's, who
    also owns "api", which this node does not run."""
    if chain is None:
        chain = alices_chain(tmp_path / "db")

    async def main() -> None:
        assert chain is not None
        engine = FakeEngine()
        config = ControllerConfig(node=NODE, resync_seconds=5.0, metering_seconds=5.0)
        controller = Controller(
            engine,
            desired or InMemoryDesired(WEB),
            config,
            firewall=FakeFirewall(),
            sandbox_rootfs=no_rootfs,
            clock=TrioClock(),
        )
        workloads = WorkloadService(chain, ME, "dev", None)
        async with trio.open_nursery() as nursery:
            await nursery.start(controller.run)
            workloads.controller = controller
            workloads.logs = WorkloadLogs(engine, controller, clock=TrioClock())
            await nursery.start(workloads.logs.run)
            while not ((s := controller.status().get(WEB.key)) and s.ready):
                await controller.changed()
            with trio.fail_after(3600):
                registry = registry_for(chain, workloads, clock=clock, traffic=traffic)
                await test(registry, engine, controller)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        chain.store.db.close()


def test_logs_of_the_local_replica(tmp_path: Path) -> None:
    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        (cid,) = [c.id for c in engine.with_labels({})]
        engine.write_log(cid, "second", "third")
        (answer,) = await call(registry, "app_logs", "web", None, None, auth())
        assert answer == {
            "replica": 0,
            "revision": 3,
            "container": "main",
            "containerId": cid,
            "state": "Running",
            "text": "hi\nsecond\nthird\n",
            "truncated": False,
        }
        (last,) = await call(registry, "app_logs", "web", 0, 1, auth())
        assert last["text"] == "third\n"
        with pytest.raises(RpcError) as raised:
            await call(registry, "app_logs", "shop", None, None, auth("shop"))
        assert (raised.value.code, raised.value.message) == (
            UNKNOWN_APP,
            "no application 'shop' in finalized state",
        )
        with pytest.raises(RpcError) as raised:
            await call(registry, "app_logs", "web", 1, None, auth())
        assert raised.value.code == UNKNOWN_APP  # not local, and not in finalized state

    compute_node(tmp_path, test)


def test_following_the_logs_of_the_local_replica(tmp_path: Path) -> None:
    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        (cid,) = [c.id for c in engine.with_labels({})]
        follow = await call(registry, "app_subscribeLogs", "web", None, "all", auth())
        async with aclosing(follow) as items:
            assert await items.__anext__() == [{"replica": 0, "container": "main", "text": "hi"}]
            engine.write_log(cid, "more")
            assert await items.__anext__() == [{"replica": 0, "container": "main", "text": "more"}]

    compute_node(tmp_path, test)


def test_workloads_and_events_of_the_node(tmp_path: Path) -> None:
    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        (cid,) = [c.id for c in engine.with_labels({})]
        engine.containers[cid].cpu_ns = 2_500_000_000
        engine.containers[cid].memory_bytes = 8 * 2**20
        await trio.sleep(6)  # one metering sample
        found = await call(registry, "node_workloads")
        assert found["node"] == encode_address(ME)
        (web,) = found["replicas"]
        assert {k: v for k, v in web.items() if k not in ("containers", "usage")} == {
            "app": "web",
            "replica": 0,
            "revision": 3,
            "state": "Running",
            "ready": True,
            "restartCount": 0,
            "reason": None,
            "message": None,
            "containerId": cid,
        }
        assert web["usage"]["cpuSeconds"] == 2.5
        assert web["usage"]["memoryBytes"] == 8 * 2**20
        assert web["usage"]["uptimeSeconds"] > 0
        events = await call(registry, "app_events", "web", auth())
        assert [
            (e["kind"], e["replica"], e["revision"]) for e in events if e["source"] == "node"
        ] == [("Scheduled", 0, 3), ("Created", 0, 3), ("Started", 0, 3), ("Ready", 0, 3)]
        chain_events = [(e["kind"], e["block"]) for e in events if e["source"] == "chain"]
        assert chain_events == [("AppCreated", 1), ("ReplicaPending", 1)]
        # Without the owner's request, only the chain's.
        public = await call(registry, "app_events", "web")
        assert [(e["kind"], e["block"]) for e in public] == chain_events
        assert await call(registry, "app_events", "shop") == []

    compute_node(tmp_path, test)


def node_events(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["kind"], e["message"]) for e in events if e["source"] == "node"]


def test_the_events_of_a_deleted_application_are_not_shown_to_the_next_of_its_name(
    tmp_path: Path,
) -> None:
    """ALICE deletes "web" and BOB creates it again: another instance of the name, in the same
    replica slots of this node. BOB's request shows the events of his instance's containers
    only, never those of ALICE's (her exit codes, OOM kills, failures)."""
    chain = alices_chain(tmp_path / "db")
    desired = InMemoryDesired(WEB)

    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        (alices,) = [c.id for c in engine.with_labels({})]
        engine.exit(alices, 137, oom=True)
        while not any(e.kind is EventKind.OOM_KILLED for e in controller.events.recent()):
            await controller.changed()
        assert ("OOMKilled", "exit code 137") in node_events(
            await call(registry, "app_events", "web", auth())
        )
        genesis = chain.runtime.genesis_hash
        recreate = [
            (2, sign_transaction(ALICE, genesis_hash=genesis, nonce=2,
                                 call=DELETE.call(app="web"))),
            (3, sign_transaction(BOB, genesis_hash=genesis, nonce=0,
                                 call=CREATE.call(manifest=db("web")))),
        ]  # fmt: skip
        for slot, tx in recreate:
            block = block_at(chain, chain.store.best_hash, slot, [rlp.encode(tx)])
            assert len(block.extrinsics) == 1
            assert await chain.import_block(block)
        record = apps.get_app(chain.store.best_state(), "web")
        assert record is not None and record.owner == BOB.public
        assert record.instance not in (WEB.instance, 2)

        # ALICE's containers still run here, under the name that is now BOB's.
        assert node_events(await call(registry, "app_events", "web", auth(signer=BOB))) == []
        # Then BOB's instance replaces them.
        bobs = replace(WEB, owner=BOB.address, instance=record.instance)
        desired.specs[:] = [bobs]
        controller.trigger()
        while not (
            (s := controller.status().get(WEB.key))
            and s.ready
            and s.containers[0].container_id not in ("", alices)
        ):
            await controller.changed()
        shown = node_events(await call(registry, "app_events", "web", auth(signer=BOB)))
        assert [kind for kind, _ in shown] == ["Scheduled", "Created", "Started", "Ready"]
        # ALICE's events are still kept (her containers' removal among them), for no one now.
        kinds = [e.kind for e in controller.events.recent() if e.instance == WEB.instance]
        assert EventKind.OOM_KILLED in kinds and EventKind.REMOVED in kinds
        with pytest.raises(RpcError) as raised:
            await call(registry, "app_events", "web", auth())
        assert refusal_of(raised.value) == (ACCESS_DENIED, "notOwner")

    compute_node(tmp_path, test, chain=chain, desired=desired)


# -- owner only ---------------------------------------------------------------------------------


def refusal_of(error: RpcError) -> tuple[int, str]:
    assert isinstance(error.data, dict)
    return error.code, error.data["reason"]


def test_logs_and_container_events_are_refused_to_all_but_the_owner(tmp_path: Path) -> None:
    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        another_chain = b"\x07" * 32
        refused = [
            (None, "missing"),
            (auth(signer=BOB), "notOwner"),
            (auth(node=OTHER), "wrongNode"),  # signed for another node, replayed to this one
            (auth(expires=NOW), "expired"),
            (auth(expires=NOW - 3600), "expired"),
            (auth(expires=NOW + 301), "tooFarAhead"),
            (auth("api"), "badSignature"),  # ALICE's request for her other app, replayed
            (auth(genesis=another_chain), "badSignature"),  # the same request on another chain
            ({**auth(), "expires": NOW + 61}, "badSignature"),  # its expiry moved
        ]
        for grant, reason in refused:
            calls: list[tuple[Any, ...]] = [("app_logs", "web", None, None, grant),
                     ("app_subscribeLogs", "web", None, None, grant)]  # fmt: skip
            if grant is not None:  # without a request, app_events serves the chain's only
                calls.append(("app_events", "web", grant))
            for method, *params in calls:
                with pytest.raises(RpcError) as raised:
                    await call(registry, method, *params)
                assert refusal_of(raised.value) == (ACCESS_DENIED, reason), (method, grant)
        # The owner's request, up to MAX_AHEAD_SECONDS ahead, opens them.
        for expires in (NOW + 1, NOW + 300):
            (logs,) = await call(registry, "app_logs", "web", None, None, auth(expires=expires))
            assert logs["text"] == "hi\n"

    compute_node(tmp_path, test)


def test_a_refusal_says_what_is_wrong_and_shows_no_log(tmp_path: Path) -> None:
    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        (cid,) = [c.id for c in engine.with_labels({})]
        engine.write_log(cid, "a-secret-line")
        cases = [
            (None, "the logs and container events of 'web' are served to its owner only: "
                   "sign the request with the owner's key (param auth)"),
            (auth(signer=BOB), f"{encode_address(BOB.public)} does not own 'web' "
                               f"(its owner is {encode_address(ALICE.public)})"),
            (auth(node=OTHER), f"the request is signed for node {encode_address(OTHER)}, "
                               f"not this node ({encode_address(ME)})"),
            (auth(expires=NOW - 10), f"the request expired 10 s ago (at {NOW - 10})"),
            (auth(expires=NOW + 900), "the request expires 900 s from now: at most 300 s "
                                      "ahead are accepted"),
            (auth("api"), "the signature is not the owner's signature of a request for 'web' "
                          "on this node's chain, node and expiry"),
        ]  # fmt: skip
        for grant, message in cases:
            with pytest.raises(RpcError) as raised:
                await call(registry, "app_logs", "web", None, None, grant)
            assert (raised.value.code, raised.value.message) == (ACCESS_DENIED, message)
            assert "a-secret-line" not in str(raised.value.to_json())

    compute_node(tmp_path, test)


def test_a_transaction_signature_does_not_open_the_logs(tmp_path: Path) -> None:
    """The request's message has a domain tag of its own: no signature of the owner made for
    something else (here a transaction) is one of it."""

    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        tx = sign_transaction(
            ALICE, genesis_hash=Hash32(GENESIS[0]), nonce=0, call=CREATE.call(manifest=db("web"))
        )
        forged = {**auth(), "signature": "0x" + tx.signature.hex()}
        with pytest.raises(RpcError) as raised:
            await call(registry, "app_logs", "web", None, None, forged)
        assert refusal_of(raised.value) == (ACCESS_DENIED, "badSignature")

    compute_node(tmp_path, test)


CHALLENGE = bytes(range(32))


def test_the_node_proves_the_id_and_chain_requests_are_signed_for(tmp_path: Path) -> None:
    async def test(registry: Registry, engine: FakeEngine, controller: Controller) -> None:
        answer = await call(registry, "node_identity", "0x" + CHALLENGE.hex())
        proof = IdentityProof.from_json(answer)
        assert (proof.node, proof.genesis) == (ME, GENESIS[0])
        assert answer["node"] == encode_address(ME)
        check_identity(proof, challenge=CHALLENGE)
        # The signature is of this challenge only: an answer kept from earlier proves nothing.
        with pytest.raises(IdentityUnproven):
            check_identity(proof, challenge=bytes(32))
        assert verify(ALICE.public, identity_message(GENESIS[0], CHALLENGE, ME), proof.signature)
        for bad, message in [
            ("0xabcd", "challenge: expected 32 bytes, got 2"),
            (CHALLENGE.hex(), "challenge: expected 0x-prefixed hex"),
            (None, "challenge: expected 0x-prefixed hex"),
        ]:
            with pytest.raises(RpcError) as raised:
                await call(registry, "node_identity", bad)
            assert raised.value.code == INVALID_PARAMS
            assert message in raised.value.message

    compute_node(tmp_path, test)
    error = refused(registry_for(None, None), "node_identity", "0x" + CHALLENGE.hex())
    assert error.code == NO_COMPUTE


@pytest.mark.parametrize(
    ("grant", "message"),
    [
        ("0xabcd", "expected an object {owner, node, expires, signature}"),
        ({"owner": encode_address(ME)},
         "expected an object {owner, node, expires, signature}: missing expires, node, signature"),
        ({**auth(genesis=b""), "extra": 1},
         "expected an object {owner, node, expires, signature}: unknown extra"),
        ({**auth(genesis=b""), "expires": "soon"},
         "expires: expected a unix time in seconds (an integer >= 0)"),
        ({**auth(genesis=b""), "owner": "alice"}, "owner: "),
        ({**auth(genesis=b""), "signature": "0x00"}, "signature: expected 64 bytes, got 1"),
        ({**auth(genesis=b""), "signature": "zz"}, "signature: expected 0x-prefixed hex"),
    ],
)  # fmt: skip
def test_a_malformed_request_is_an_invalid_param(grant: Any, message: str) -> None:
    for method, params in (("app_logs", ["web", None, None, grant]),
                           ("app_subscribeLogs", ["web", None, None, grant]),
                           ("app_events", ["web", grant])):  # fmt: skip
        error = refused(registry_for(None, None), method, *params)
        assert error.code == INVALID_PARAMS
        assert error.message.startswith(f"invalid param 'auth': {message}")
