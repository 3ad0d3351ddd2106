"""The Docker engine stopped and restarted under a running node: the node stays up, keeps
producing blocks, and once the engine is back runs the replica again (one container, no
duplicate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.docker_harness import (
    ensure_busybox_image,
    free_port,
    restart_engine,
    start_private_engine,
    stop_engine,
)
from tests.integration.harness import NodeProcess, cli
from tests.integration.workloads.test_dev_compute import MANIFEST, containers, serves

pytestmark = pytest.mark.integration


def test_the_engine_restarts_under_a_running_node(tmp_path: Path) -> None:
    engine = start_private_engine()
    node = None
    try:
        image = ensure_busybox_image(engine.client)
        port = free_port()
        manifest = tmp_path / "hello.yaml"
        manifest.write_text(MANIFEST.format(image=image, port=port))
        node = NodeProcess(tmp_path / "dev", args=["--dev", "--docker-host", engine.host]).start()
        node.wait_for(lambda: node.call("towers_active")["total"] == 1, timeout=40, what="active")
        deployed = cli("app", "deploy", str(manifest), "--from", "dev-alice", "--rpc", node.url)
        assert deployed.returncode == 0, deployed.stderr
        node.wait_for(lambda: serves(engine.client, port), timeout=60, what="the replica serving")
        engine.client.close()
        engine = restart_engine(engine, down_seconds=3.0)
        height = node.best_number()
        node.wait_for(lambda: node.best_number() > height + 1, timeout=20, what="blocks")
        node.wait_for(
            lambda: serves(engine.client, port), timeout=60, what="the replica serving again"
        )
        assert len(containers(engine.client)) == 1
        assert "Traceback" not in node.log()
    finally:
        if node is not None:
            node.stop()
        stop_engine(engine)
