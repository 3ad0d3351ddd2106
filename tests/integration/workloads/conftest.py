from __future__ import annotations

from tests.integration import docker_harness

# The session's engine and busybox image (a private dockerd when none is reachable).
docker_engine = docker_harness.docker_engine
docker_client = docker_harness.docker_client
busybox_image = docker_harness.busybox_image
