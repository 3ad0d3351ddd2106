"""A real Docker engine and a real image registry for integration tests, and a tiny busybox image
to run on them.

The registry is Debian's `docker-registry` on a loopback port, one for the session
(`session_registry`). The engine is a private `dockerd` started as root in a folder of its own,
the same way a dev node starts its own (`orchestrator.dockerd`: bridge networking and iptables
on, no default bridge), with the registry as its mirror of Docker Hub names: a node pulls every
image of a replica before creating it, so what a manifest names must be in the registry
(`publish`). The image is the busybox root filesystem of `orchestrator.images` (Debian's
`busybox-static`), imported as `statemesh-test/busybox:1` and published under that name and as
`busybox` (`library/busybox:latest`); `httpd` serves /www.

The tests' session fixtures are in `tests/integration/docker_harness.py`; outside pytest use
`open_engine()`.
STATEMESH_DOCKER_STORAGE_DRIVER forces a storage driver (e.g. vfs where overlay cannot mount)."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.utils

from orchestrator.dockerd import PrivateEngine, unmount_under
from orchestrator.images import import_busybox
from orchestrator.registry import LocalRegistry
from testkit.nodes import free_port as free_port

BUSYBOX_IMAGE = "statemesh-test/busybox:1"
EXAMPLE_IMAGE = "busybox"
"""The name the README's example runs: published as `library/busybox:latest`."""
_registry: LocalRegistry | None = None


class EngineSetupError(RuntimeError):
    """No engine is reachable and a private one could not be started, or an engine that was not
    started here was asked to restart."""


class XfsUnavailable(EngineSetupError):
    """An xfs data root cannot be made on this machine: no mkfs.xfs (Debian package xfsprogs),
    no loop device, or no XFS quotas in the kernel."""


@dataclass
class DockerEngine:
    host: str
    """The engine's address, e.g. unix:///tmp/smd-x/docker.sock."""
    client: docker.DockerClient
    started_here: bool
    start_seconds: float
    """How long the private dockerd took to answer (0 for an engine that was already running)."""
    storage_driver: str
    private: PrivateEngine | None = None
    """The dockerd started here, if it was."""

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.private.process if self.private is not None else None

    @property
    def root(self) -> Path | None:
        return self.private.root if self.private is not None else None

    def log_tail(self, lines: int = 40) -> str:
        return self.private.log_tail(lines) if self.private is not None else ""


def _start_private(private: PrivateEngine) -> DockerEngine:
    """Starts `private` and connects to it."""
    private.start()
    try:
        client = private.client()
        driver = str(client.info().get("Driver", ""))
    except BaseException:
        private.stop()
        raise
    return DockerEngine(private.host, client, True, private.start_seconds, driver, private)


def session_registry() -> LocalRegistry:
    """The session's registry, started on first use and stopped when the process exits."""
    global _registry
    if _registry is None:
        root = Path(tempfile.mkdtemp(prefix="smr-", dir="/tmp"))
        registry = LocalRegistry(root)
        try:
            registry.start()
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        atexit.register(_stop_registry, registry)
        _registry = registry
    return _registry


def _stop_registry(registry: LocalRegistry) -> None:
    registry.stop()
    shutil.rmtree(registry.root, ignore_errors=True)


def publish(client: docker.DockerClient, image: str, name: str | None = None) -> str:
    """Pushes the engine's `image` to the session registry as `name` (default: the same name),
    a Docker Hub name the engines' mirror serves, and returns `name`: what a manifest or a
    `CreateRequest` names so that the node's pull finds it. `library/X:TAG` is pulled as
    `X:TAG`."""
    name = name or image
    session_registry().push(client, image, name)
    repository, tag = docker.utils.parse_repository_tag(name)
    short = repository.removeprefix("library/")
    return f"{short}:{tag}" if tag else short


NETWORK_ATTEMPTS = 5


def bridge_network(client: docker.DockerClient, name: str, **create: Any) -> Any:
    """Creates bridge network `name` (`create` as for `client.networks.create`), again after a
    pause when the engine reports a failed iptables edit: the tests' private engines share the
    host's FORWARD chain, and two of them editing its jump to DOCKER-ISOLATION-STAGE-1 at once
    make one fail ("Bad rule")."""
    for attempt in range(NETWORK_ATTEMPTS):
        try:
            return client.networks.create(name, driver="bridge", **create)
        except docker.errors.APIError as e:
            if "iptables" not in str(e) or attempt == NETWORK_ATTEMPTS - 1:
                raise
            # A failed create can leave the network behind; the name filter matches parts.
            for network in client.networks.list(names=[name]):
                if network.name == name:
                    network.remove()
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def image_with(client: docker.DockerClient, base: str, reference: str, content: str) -> str:
    """An image of `base` plus a file /content holding `content`, as `reference`; its id."""
    container = client.containers.create(
        base, ["sh", "-c", f"echo {content} > /content"], network_mode="none"
    )
    try:
        container.start()
        container.wait(timeout=30)
        repository, tag = reference.rsplit(":", 1)
        return str(container.commit(repository=repository, tag=tag).id)
    finally:
        container.remove(force=True)


def start_private_engine(
    data_size: str | None = None, *, xfs_size: str | None = None, xfs_quota: bool = True
) -> DockerEngine:
    """A private dockerd of its own, whose mirror is the session registry. With `data_size`
    (e.g. `96m`) its data root is a tmpfs of that size: a filesystem of its own whose use only
    it changes (stopping the engine unmounts it). With `xfs_size` (e.g. `512m`) its data root is
    an xfs of that size in a sparse file of the engine's folder, loop-mounted with project
    quotas (`pquota`, which overlay2 needs for `--storage-opt size`) unless not `xfs_quota`;
    `stop_engine` unmounts it and detaches its loop device. `XfsUnavailable` if this machine
    cannot make one."""
    # A short folder: the paths of the engine's sockets stay well inside the unix limit.
    root = Path(tempfile.mkdtemp(prefix="smd-", dir="/tmp"))
    try:
        private = PrivateEngine(root, registry_mirror=session_registry().url)
        if data_size is not None:
            private.data_root.mkdir(mode=0o710)
            options = f"size={data_size},mode=0710"
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(private.data_root)],
                check=True,
                capture_output=True,
            )
        elif xfs_size is not None:
            _mount_xfs(root / _XFS_IMAGE, private.data_root, xfs_size, quota=xfs_quota)
        return _start_private(private)
    except BaseException:
        unmount_under(root)
        _detach_loops(root / _XFS_IMAGE)
        shutil.rmtree(root, ignore_errors=True)
        raise


_XFS_IMAGE = "data.xfs"
"""The file holding an engine's xfs data root, in its folder."""


def _mount_xfs(image: Path, point: Path, size: str, *, quota: bool) -> None:
    """Makes an xfs of `size` in the sparse file `image` and loop-mounts it on `point`."""
    if shutil.which("mkfs.xfs", path="/usr/sbin:/sbin:/usr/bin:/bin") is None:
        raise XfsUnavailable("mkfs.xfs is not installed (Debian package xfsprogs)")
    subprocess.run(
        ["mkfs.xfs", "-q", "-d", f"file,name={image},size={size}"], check=True, capture_output=True
    )
    point.mkdir(mode=0o710)
    options = "loop,pquota" if quota else "loop"
    mounted = subprocess.run(
        ["mount", "-t", "xfs", "-o", options, str(image), str(point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        why = mounted.stderr.strip().splitlines()[0] if mounted.stderr.strip() else "no output"
        if quota and Path("/proc/fs/xfs").exists() and not Path("/proc/fs/xfs/xqmstat").exists():
            why = "this kernel has no XFS quota support (CONFIG_XFS_QUOTA)"
        elif not Path("/dev/loop-control").exists():
            why = f"no loop devices here ({why})"
        raise XfsUnavailable(f"cannot mount an xfs with {options} on {point}: {why}")
    point.chmod(0o710)


def _detach_loops(image: Path) -> None:
    """Detaches the loop devices still backed by `image` (a mount's own goes with its lazy
    unmount once the engine's last file is closed: waits a little for that first)."""
    if not image.exists():
        return
    deadline = time.monotonic() + 5.0
    while True:
        listed = subprocess.run(
            ["losetup", "-j", str(image)], capture_output=True, text=True
        ).stdout
        devices = [line.split(":", 1)[0] for line in listed.splitlines() if line]
        if not devices or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for device in devices:
        subprocess.run(["losetup", "-d", device], capture_output=True)


def restart_engine(engine: DockerEngine, down_seconds: float = 0.0) -> DockerEngine:
    """Stop a private engine's process, leave it down for `down_seconds`, and start it again on
    the same socket and data."""
    if not engine.started_here or engine.private is None:
        raise EngineSetupError("only an engine started here can be restarted")
    engine.client.close()
    engine.private.stop()
    time.sleep(down_seconds)
    return _start_private(engine.private)


def stop_engine(engine: DockerEngine) -> None:
    """Stops the engine only if it was started here, and deletes its folders."""
    engine.client.close()
    if not engine.started_here or engine.private is None:
        return
    # Its folder goes: nothing of it may stay on the host (bridges, routes, iptables rules).
    try:
        engine.private.stop(purge=True)
    finally:
        _detach_loops(engine.private.root / _XFS_IMAGE)
    shutil.rmtree(engine.private.root, ignore_errors=True)


def connect_or_start() -> DockerEngine:
    """Always a private engine: an engine found running would not pull from the session's
    registry."""
    return start_private_engine()


def ensure_busybox_image(client: docker.DockerClient, tag: str = BUSYBOX_IMAGE) -> str:
    """`docker import` of the busybox root filesystem, unless the image is there already, and
    published as `tag` and as `busybox`; no local `busybox` is left, so its pulls are real."""
    import_busybox(client, tag)
    publish(client, tag)
    publish(client, tag, f"library/{EXAMPLE_IMAGE}:latest")
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(f"{EXAMPLE_IMAGE}:latest")
    return tag


def remove_labelled(client: docker.DockerClient, labels: Mapping[str, str]) -> int:
    """Removes every container, volume and network carrying all the labels; returns how many."""
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    removed = 0
    for row in client.api.containers(all=True, filters=filters):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(row["Id"], v=True, force=True)
            removed += 1
    for volume in client.api.volumes(filters=filters).get("Volumes") or []:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_volume(volume["Name"], force=True)
            removed += 1
    for network in client.api.networks(filters=filters):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_network(network["Id"])
            removed += 1
    return removed


@contextlib.contextmanager
def open_engine() -> Iterator[DockerEngine]:
    """An engine with the busybox image, for benchmarks and scripts outside pytest."""
    engine = connect_or_start()
    try:
        ensure_busybox_image(engine.client)
        yield engine
    finally:
        stop_engine(engine)
