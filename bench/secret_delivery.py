"""Assignment finalized -> secret delivered on the node, against assignment finalized ->
container running, for the same replica in the same run, on a real dev node (its vault
committee is itself, 1 of 1) with a real Docker engine.

dev-alice asks for her vault key (`wallets.request_vault`), seals a secret to it
(`wallet.vault.seal`) and stores it (`secrets.create`); then, run by run, deploys an application
that mounts the secret as a file and serves it. The clock starts as in `bench.compute_start`
(the send time of the last RPC poll that did not see the assignment); "delivered" is the
time of the node's log line for that replica's delivery (JSON logs, milliseconds), "running"
the engine's own timestamp of the container's `start` event. The delivery happens while the
container is being created, so it is part of the start time: the ratio says how much of it.
With `--nodes 3` the same runs go over the network: a dev node and two nodes joined to it
(`testkit.compute_network`, as `tests/integration/test_secrets.py` sets
them up) on one engine, with a 2-of-3 vault committee, so whichever node runs the replica needs
a partial decryption from at least one other process; each run says which node ran it.

    .venv/bin/python -m bench.secret_delivery [--runs 5] [--smoke] [--nodes 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.compute_start import Rpc, StartEvents, assignment_final, p95, submit, until, warm_up
from chain.keys import dev_keypair
from chain.runtime.apps import Apps
from chain.runtime.secrets import Secrets, encode_key_sizes
from node.commands.manifest_file import parse_manifest
from orchestrator import labels
from testkit.compute_network import compute_network, three_node_chain
from testkit.engines import BUSYBOX_IMAGE, DockerEngine, free_port, open_engine
from testkit.nodes import NodeProcess
from wallet.committee import REQUEST_VAULT
from wallet.vault import seal

(CREATE, _UPDATE, _SCALE, DELETE, *_) = Apps().calls()
(SECRET_CREATE, *_) = Secrets().calls()
SECRET = "bench-secret"
VALUES = {"token": os.urandom(24).hex().encode()}
"""A fresh value each run of the benchmark: it appears in no log, which the run checks."""

MANIFEST = """\
apiVersion: statemesh/v1
kind: Application
metadata: {{name: {name}}}
spec:
  replicas: 1
  nodeClass: cpu
  containers:
    - name: httpd
      image: {image}
      command: ["sh", "-c"]
      args: ["exec httpd -f -p {port} -h /run/secret"]
      ports: [{{containerPort: {port}}}]
      volumeMounts: [{{name: token, mountPath: /run/secret}}]
  volumes:
    - name: token
      secret: {{secretName: {secret}, items: [{{key: token, path: token}}]}}
"""


def delivered_at(log: Path | None, app: str, replica: int = 0) -> tuple[float, float, str] | None:
    """The wall time of the node's log line for the delivery of `replica` of `app`, the
    delivery's own duration (asking the members to opening the envelope) that it states, and
    the members it names (id prefixes)."""
    marker = f"for replica {replica} of '{app}' delivered in "
    if log is None or not log.exists():
        return None
    for line in log.read_text(errors="replace").splitlines():
        if marker not in line:
            continue
        record = json.loads(line)
        took, members = record["message"].split(marker)[1].split(" s by members ", 1)
        return datetime.fromisoformat(record["time"]).timestamp(), float(took), members
    return None


def prepare(rpc: Rpc, genesis: bytes) -> None:
    """dev-alice's vault key, and her secret sealed to it (the request made again if its
    committee did not form: on a loaded host a node may miss a proof and sit out)."""
    alice = dev_keypair("alice")
    for attempt in range(3):
        submit(rpc, genesis, REQUEST_VAULT.call())
        try:
            until(lambda: rpc.call("wallet_vault", alice.address) is not None, timeout=120)
            break
        except TimeoutError:
            if attempt == 2:
                raise
    vault = rpc.call("wallet_vault", alice.address)
    envelope = seal(
        bytes.fromhex(vault["vaultKey"][2:]), alice.public, SECRET, 1, VALUES, os.urandom
    )
    keys = encode_key_sizes(tuple((k, len(v)) for k, v in VALUES.items()))
    submit(rpc, genesis, SECRET_CREATE.call(name=SECRET.encode(), keys=keys, envelope=envelope))
    until(lambda: bool(rpc.call("secrets_list", alice.address)), timeout=30)


@dataclass(frozen=True)
class Sample:
    delivered: float
    """assignment final -> secret delivered, s"""
    fetching: float
    """the delivery itself (members asked, proofs checked, envelope opened), s"""
    running: float
    """assignment final -> container running, s"""
    node: str
    remote: bool
    """whether a member other than the node itself sent a partial decryption"""


def replica_container(app: str, replica: int) -> Callable[[str, Mapping[str, str]], bool]:
    """Matches the start event of the app container (not the sandbox) of `replica` of `app`."""

    def match(_: str, attributes: Mapping[str, str]) -> bool:
        return (
            attributes.get(labels.APP) == app
            and attributes.get(labels.REPLICA) == str(replica)
            and labels.ROLE not in attributes
        )

    return match


def delivery(
    nodes: list[NodeProcess], app: str, replica: int
) -> tuple[NodeProcess, tuple[float, float, str]]:
    """The node whose log has the delivery for `replica` of `app` (waited for), and that
    line's figures."""

    def find() -> tuple[NodeProcess, tuple[float, float, str]] | None:
        for node in nodes:
            found = delivered_at(node.log_path, app, replica)
            if found is not None:
                return node, found
        return None

    until(lambda: find() is not None, timeout=30)
    result = find()
    assert result is not None
    return result


def one_run(
    rpc: Rpc, events: StartEvents, nodes: list[NodeProcess], genesis: bytes, name: str
) -> list[Sample]:
    """One app with a replica per node (the scheduler spreads them); a sample per replica."""
    port = free_port()
    text = MANIFEST.format(name=name, image=BUSYBOX_IMAGE, port=port, secret=SECRET)
    if len(nodes) > 1:  # any of the nodes may run it, and each runs one
        text = text.replace("  nodeClass: cpu\n", "").replace(
            "replicas: 1", f"replicas: {len(nodes)}"
        )
    manifest = parse_manifest(text)
    time.sleep((1.5 - time.time() % 1.0) % 1.0)  # mid-slot: the first poll precedes the block
    submit(rpc, genesis, CREATE.call(manifest=manifest.canonical_json()))
    try:
        t0 = assignment_final(rpc, name)
    except RuntimeError:  # assigned before the first poll (a loaded host): no bound, no sample
        submit(rpc, genesis, DELETE.call(app=name))
        return []
    samples = []
    for replica in range(len(nodes)):
        running = events.started(replica_container(name, replica), timeout=120)
        node, (at, took, members) = delivery(nodes, name, replica)
        own = (node.node_id() or b"").hex()[:12]
        named = members.split(";")[0].split(",")
        remote = any(m.strip().removeprefix("0x") != own for m in named)
        samples.append(Sample(at - t0, took, running - t0, node.base_path.name, remote))
    submit(rpc, genesis, DELETE.call(app=name))
    return samples


def start_nodes(
    stack: ExitStack, folder: Path, engine: DockerEngine, count: int
) -> list[NodeProcess]:
    """One dev node (its vault committee is itself), or the three nodes of the integration
    tests with a 2-of-3 committee; stopped (and their replicas removed) when `stack` closes."""
    json_logs = ["--log-format", "json"]
    if count == 1:
        node = NodeProcess(folder / "dev", args=["--dev", "--docker-host", engine.host, *json_logs])
        node.start()
        stack.callback(node.stop)
        return [node]
    # Imported here: the one-node mode (the unit suite's smoke) needs none of the test harness.

    chain = three_node_chain(folder)
    dev, others = stack.enter_context(compute_network(folder, engine, chain, json_logs))
    return [dev, *others]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one run")
    parser.add_argument(
        "--nodes", type=int, choices=(1, 3), default=1, help="3: a 2-of-3 vault committee"
    )
    args = parser.parse_args()
    if args.smoke:
        args.runs = 1
    samples: list[Sample] = []
    discarded = 0
    with open_engine() as engine, tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        events = StartEvents(engine.client)
        stack.callback(events.close)
        nodes = start_nodes(stack, Path(tmp), engine, args.nodes)
        rpc = Rpc(nodes[0].url)
        stack.callback(rpc.close)
        until(lambda: rpc.call("towers_active")["total"] == args.nodes, timeout=180)
        genesis = bytes.fromhex(rpc.call("chain_getBlockHash", 0)[2:])
        prepare(rpc, genesis)
        warm_up(engine.client, events)
        for run in range(args.runs + 3):
            if run - discarded == args.runs:
                break
            taken = one_run(rpc, events, nodes, genesis, f"secret{run}")
            discarded += not taken
            samples += taken
        stack.close()
        text = "\n".join(n.log() for n in nodes)
        leaked = VALUES["token"].decode() in text
        failed = sum(
            1
            for line in text.splitlines()
            if "SecretUnavailable" in line or "valid partial decryption of" in line
        )

    delivered = [s.delivered for s in samples]
    fetching = [s.fetching for s in samples]
    running = [s.running for s in samples]

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:.0f} ms, p95 {p95(values) * 1000:.0f} ms"

    print(f"assignment finalized -> secret delivered:  {ms(delivered)}")
    print(f"the delivery itself (members to plaintext): {ms(fetching)}")
    print(f"assignment finalized -> container running: {ms(running)}")
    print(
        "delivery / start (medians): "
        f"{statistics.median(delivered) / statistics.median(running):.2f}"
    )
    print(f"replicas: {len(samples)}, on {', '.join(s.node for s in samples)}")
    if len({s.node for s in samples}) > 1:
        for node in dict.fromkeys(s.node for s in samples):
            on = [s for s in samples if s.node == node]
            print(
                f"  on {node}: delivered {ms([s.delivered for s in on])}; "
                f"itself {ms([s.fetching for s in on])}; running {ms([s.running for s in on])}"
            )
    print(f"runs discarded (assigned before the first poll): {discarded}")
    print(f"with a partial decryption from another node: {sum(s.remote for s in samples)}")
    print(f"log lines of a delivery that failed first: {failed}")
    print(f"secret value in the nodes' logs: {'FOUND' if leaked else 'no'}")
    if leaked:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
