"""Secrets and configurations on three real nodes with Docker (a 2-of-3 vault committee): dev-alice
gets her vault key, stores a config and a secret through the CLI, deploys an app that serves a
digest of the mounted secret and the config's value (as env and as a file); every node's
ingress serves the right digest; a new version of the secret rolls the replicas to the new
digest. Then no plaintext anywhere it must not be: each node's database and log, every RPC
and CLI answer of the test, `docker inspect` of every container; and the files of the replaced
containers are gone from the nodes' tmpfs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import docker
import pytest

from chain.keys import dev_keypair
from tests.integration.harness import NodeProcess, cli, ingress_page

pytestmark = pytest.mark.integration

HOST = "vaulted.statemesh.internal"
MANIFEST = """\
apiVersion: statemesh/v1
kind: Application
metadata: {name: vaulted}
spec:
  replicas: 3
  containers:
    - name: httpd
      image: busybox
      command: ["sh", "-c"]
      args:
        - |
          mkdir -p /www
          digest=$(sha256sum /run/secret/password | cut -d' ' -f1)
          echo "$digest $GREETING $(cat /etc/site/greeting)" > /www/index.html
          exec httpd -f -p 8080 -h /www
      ports: [{name: http, containerPort: 8080}]
      env:
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: site, key: GREETING}}
      volumeMounts:
        - {name: creds, mountPath: /run/secret}
        - {name: site, mountPath: /etc/site}
      readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
  volumes:
    - name: creds
      secret: {secretName: db, items: [{key: password, path: password}]}
    - name: site
      configMap: {name: site, items: [{key: GREETING, path: greeting}]}
  service: {ports: [{name: http, port: 80, targetPort: http}]}
  ingress: {host: vaulted.statemesh.internal, rules: [{path: /, servicePort: http}]}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
"""


class Answers:
    """Every answer the test read from the nodes (RPC and CLI), to grep afterwards."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def call(self, node: NodeProcess, method: str, *params: Any) -> Any:
        result = node.call(method, *params)
        self.seen.append(json.dumps(result))
        return result

    def cli(self, *args: str) -> None:
        done = cli(*args, timeout=180)
        self.seen += [done.stdout, done.stderr]
        assert done.returncode == 0, done.stderr + done.stdout

    def page(self, node: NodeProcess) -> str:
        page = ingress_page(node, HOST)
        self.seen.append(page)
        return page


def active_nodes(node: NodeProcess) -> int:
    return sum(n["status"] == "active" for n in node.call("nodes_list")["nodes"])


def expected_page(secret: str) -> str:
    return f"{hashlib.sha256(secret.encode()).hexdigest()} hello hello\n"


def serves_only(answers: Answers, nodes: list[NodeProcess], page: str) -> bool:
    """Whether every node's ingress gives `page` on several reads in a row (so every replica
    it balances over does)."""
    return all(answers.page(n) == page for n in nodes for _ in range(6))


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def contents(folder: Path) -> list[tuple[Path, bytes]]:
    """Every file under `folder` with its bytes (a file may go as it is read: a database
    compacting, a container's files removed)."""
    found = []
    for p in files_under(folder):
        try:
            found.append((p, p.read_bytes()))
        except OSError:
            continue
    return found


def test_a_secret_and_a_config_reach_the_replicas_and_nothing_else(
    compute_nodes: tuple[NodeProcess, list[NodeProcess]],
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    dev, others = compute_nodes
    nodes = [dev, *others]
    rpc = ["--rpc", dev.url]
    alice = dev_keypair("alice").address
    first, second = os.urandom(16).hex(), os.urandom(16).hex()
    answers = Answers()

    # A committee is drawn from the active nodes: on a loaded host a node may miss a proof and
    # sit out an epoch, so the request waits for three and is made again if one dropped out.
    for attempt in range(3):
        dev.wait_for(lambda: active_nodes(dev) == 3, timeout=120, what="three active nodes")
        done = cli("wallet", "vault", "--login", "dev-alice", *rpc, timeout=180)
        answers.seen += [done.stdout, done.stderr]
        if done.returncode == 0:
            break
        assert "CommitteeUnavailable" in done.stderr and attempt < 2, done.stderr + done.stdout
    answers.cli(
        "config", "create", "site", "--from-literal", "GREETING=hello", "--from", "dev-alice", *rpc
    )
    answers.cli(
        "secret", "create", "db", "--from-literal", f"password={first}", "--from", "dev-alice", *rpc
    )
    manifest = tmp_path / "vaulted.yaml"
    manifest.write_text(MANIFEST)
    answers.cli("app", "deploy", str(manifest), "--from", "dev-alice", *rpc)
    dev.wait_for(
        lambda: serves_only(answers, nodes, expected_page(first)),
        timeout=180,
        what="every node's ingress serving the first digest",
    )
    (listed,) = answers.call(dev, "secrets_list", alice)
    assert (listed["version"], listed["keys"], listed["usedBy"]) == (
        1, [{"key": "password", "size": 32}], ["vaulted"],
    )  # fmt: skip

    answers.cli(
        "secret", "update", "db", "--from-literal", f"password={second}", "--from", "dev-alice",
        *rpc,
    )  # fmt: skip
    dev.wait_for(
        lambda: serves_only(answers, nodes, expected_page(second)),
        timeout=180,
        what="the replicas rolled to the second digest",
    )
    (listed,) = answers.call(dev, "secrets_list", alice)
    assert listed["version"] == 2
    # A secret an app reads cannot be deleted.
    refused = cli("secret", "delete", "db", "--from", "dev-alice", *rpc, timeout=60)
    answers.seen += [refused.stdout, refused.stderr]
    assert refused.returncode == 1 and "secret 'db' is used by application 'vaulted'" in (
        refused.stdout + refused.stderr
    )

    containers = docker_client.containers.list(all=True, filters={"label": "statemesh.app=vaulted"})
    assert len(containers) >= 3
    inspected = [json.dumps(docker_client.api.inspect_container(c.id)) for c in containers]
    # The replaced containers' files go from the nodes' tmpfs with them.
    dev.wait_for(
        lambda: not any(first.encode() in data for _, data in contents(Path("/dev/shm/statemesh"))),
        timeout=30,
        what="the first version's files removed",
    )
    for secret in (first, second):
        where = [f"answer {i}" for i, text in enumerate(answers.seen) if secret in text]
        where += [f"container {i}" for i, text in enumerate(inspected) if secret in text]
        for node in nodes:
            assert node.log_path is not None
            if secret.encode() in node.log_path.read_bytes():
                where.append(f"log of {node.base_path.name}")
            where += [str(p) for p, data in contents(node.base_path) if secret.encode() in data]
        assert where == [], f"the plaintext of a secret was found in {where}"
