"""Finding a replica's containers and its pod's address on a real engine, as a test sees them."""

from __future__ import annotations

import docker
import docker.models.containers

from orchestrator import labels

LIST_ATTEMPTS = 5


def app_containers(
    client: docker.DockerClient, app: str, *, all: bool = False
) -> list[docker.models.containers.Container]:
    """The containers of an application's replicas (not their pods' sandboxes). The client
    lists, then inspects each container: one the node removes in between is listed again."""
    attempts = LIST_ATTEMPTS
    while True:
        try:
            found = client.containers.list(all=all, filters={"label": f"{labels.APP}={app}"})
            break
        except docker.errors.NotFound:
            attempts -= 1
            if not attempts:
                raise
    return [c for c in found if labels.ROLE not in c.labels]


def app_container(client: docker.DockerClient, app: str) -> docker.models.containers.Container:
    """The one running container of an application's one replica."""
    found = app_containers(client, app)
    assert len(found) == 1, found
    return found[0]


def pod_addresses(client: docker.DockerClient, app: str) -> list[str]:
    """The addresses of an application's running pods on this engine."""
    sandboxes = client.containers.list(
        filters={"label": [f"{labels.APP}={app}", f"{labels.ROLE}={labels.SANDBOX_ROLE}"]}
    )
    return sorted(
        str(network["IPAddress"])
        for sandbox in sandboxes
        for network in sandbox.attrs["NetworkSettings"]["Networks"].values()
        if network.get("IPAddress")
    )


def pod_address(client: docker.DockerClient, app: str) -> str:
    (address,) = pod_addresses(client, app)
    return address


def connects(container: docker.models.containers.Container, address: str, port: int) -> bool:
    """Whether a TCP connection from inside the container to address:port opens (and a request
    gets an answer): busybox nc, 2 s to connect."""
    result = container.exec_run(
        ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address} {port}"]
    )
    return result.exit_code == 0 and bool(result.output)
