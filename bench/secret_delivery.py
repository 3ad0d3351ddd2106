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
Over the network, each member adds a request/response round trip and its proof check (see
`bench.wallet_network` for those round trips between processes).

    .venv/bin/python -m bench.secret_delivery [--runs 5] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.compute_start import Rpc, StartEvents, assignment_final, p95, submit, until, warm_up
from chain.keys import dev_keypair
from chain.runtime.apps import Apps
from chain.runtime.secrets import Secrets, encode_key_sizes
from node.commands.manifest_file import parse_manifest
from orchestrator import labels
from testkit.engines import BUSYBOX_IMAGE, free_port, open_engine
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


def delivered_at(log: Path, app: str) -> tuple[float, float] | None:
    """The wall time of the node's log line for the delivery of replica 0 of `app`, and the
    delivery's own duration (asking the members to opening the envelope) that it states."""
    marker = f"for replica 0 of '{app}' delivered in "
    for line in log.read_text(errors="replace").splitlines():
        if marker not in line:
            continue
        record = json.loads(line)
        took = float(record["message"].split(marker)[1].split(" s ")[0])
        return datetime.fromisoformat(record["time"]).timestamp(), took
    return None


def prepare(rpc: Rpc, genesis: bytes) -> None:
    """dev-alice's vault key, and her secret sealed to it."""
    alice = dev_keypair("alice")
    submit(rpc, genesis, REQUEST_VAULT.call())
    until(lambda: rpc.call("wallet_vault", alice.address) is not None, timeout=120)
    vault = rpc.call("wallet_vault", alice.address)
    envelope = seal(
        bytes.fromhex(vault["vaultKey"][2:]), alice.public, SECRET, 1, VALUES, os.urandom
    )
    keys = encode_key_sizes(tuple((k, len(v)) for k, v in VALUES.items()))
    submit(rpc, genesis, SECRET_CREATE.call(name=SECRET.encode(), keys=keys, envelope=envelope))
    until(lambda: bool(rpc.call("secrets_list", alice.address)), timeout=30)


def one_run(
    rpc: Rpc, events: StartEvents, node: NodeProcess, genesis: bytes, name: str
) -> tuple[float, float, float]:
    """(assignment final -> secret delivered, the delivery itself, assignment final ->
    container running), in seconds."""
    port = free_port()
    manifest = parse_manifest(
        MANIFEST.format(name=name, image=BUSYBOX_IMAGE, port=port, secret=SECRET)
    )
    time.sleep((1.5 - time.time() % 1.0) % 1.0)  # mid-slot: the first poll precedes the block
    submit(rpc, genesis, CREATE.call(manifest=manifest.canonical_json()))
    t0 = assignment_final(rpc, name)
    running = events.started(
        lambda _, attributes: attributes.get(labels.APP) == name and labels.ROLE not in attributes,
        timeout=120,
    )
    assert node.log_path is not None
    log = node.log_path
    until(lambda: delivered_at(log, name) is not None, timeout=30)
    delivered = delivered_at(log, name)
    assert delivered is not None
    submit(rpc, genesis, DELETE.call(app=name))
    return delivered[0] - t0, delivered[1], running - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one run")
    args = parser.parse_args()
    if args.smoke:
        args.runs = 1
    delivered: list[float] = []
    fetching: list[float] = []
    running: list[float] = []
    with open_engine() as engine, tempfile.TemporaryDirectory() as tmp:
        events = StartEvents(engine.client)
        node = NodeProcess(
            Path(tmp) / "dev",
            args=["--dev", "--docker-host", engine.host, "--log-format", "json"],
        )
        node.start()
        rpc = Rpc(node.url)
        try:
            until(lambda: rpc.call("towers_active")["total"] == 1, timeout=60)
            genesis = bytes.fromhex(rpc.call("chain_getBlockHash", 0)[2:])
            prepare(rpc, genesis)
            warm_up(engine.client, events)
            for run in range(args.runs):
                d, f, r = one_run(rpc, events, node, genesis, f"secret{run}")
                delivered.append(d)
                fetching.append(f)
                running.append(r)
        finally:
            rpc.close()
            node.stop()
            events.close()
        text = node.log()
        leaked = VALUES["token"].decode() in text
        failed = sum(
            1
            for line in text.splitlines()
            if "SecretUnavailable" in line or "valid partial decryption of" in line
        )

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:.0f} ms, p95 {p95(values) * 1000:.0f} ms"

    print(f"assignment finalized -> secret delivered:  {ms(delivered)}")
    print(f"the delivery itself (members to plaintext): {ms(fetching)}")
    print(f"assignment finalized -> container running: {ms(running)}")
    print(
        "delivery / start (medians): "
        f"{statistics.median(delivered) / statistics.median(running):.2f}"
    )
    print(f"log lines of a delivery that failed first: {failed}")
    print(f"secret value in the node's log: {'FOUND' if leaked else 'no'}")
    if leaked:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
