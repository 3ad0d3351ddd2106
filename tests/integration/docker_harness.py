"""A real Docker engine for integration tests, and a tiny busybox image to run on it.

The engine is the one already reachable (DOCKER_HOST, else the default socket) or, failing that,
a private `dockerd` started as root with its own socket, data root and exec root, no bridge and
no iptables; only an engine started here is stopped here. The image is made with `docker import`
from a root filesystem of the static busybox (Debian's `busybox-static`): `httpd` serves /www.

In a conftest.py, `docker_engine = docker_harness.docker_engine` (likewise `docker_client`,
`busybox_image`) makes the session fixtures available; outside pytest use `open_engine()`.
STATEMESH_DOCKER_STORAGE_DRIVER forces a storage driver (e.g. vfs where overlay cannot mount)."""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest
import requests

from tests.integration.harness import free_port as free_port

log = logging.getLogger("statemesh.tests.docker")

BUSYBOX_IMAGE = "statemesh-test/busybox:1"
BUSYBOX_BINARY = Path("/bin/busybox")
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
START_TIMEOUT_SECONDS = 60.0


class EngineSetupError(RuntimeError):
    """No engine is reachable and a private one could not be started."""


@dataclass
class DockerEngine:
    host: str
    """The engine's address, e.g. unix:///tmp/smd-x/docker.sock."""
    client: docker.DockerClient
    started_here: bool
    start_seconds: float
    """How long the private dockerd took to answer (0 for an engine that was already running)."""
    storage_driver: str
    process: subprocess.Popen[bytes] | None = None
    root: Path | None = None

    def log_tail(self, lines: int = 40) -> str:
        if self.root is None:
            return ""
        path = self.root / "dockerd.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _ping(host: str, timeout: float = 3.0) -> docker.DockerClient | None:
    if host.startswith("unix://") and not os.path.exists(host.removeprefix("unix://")):
        return None
    try:
        client = docker.DockerClient(base_url=host, version="auto", timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return None
    client.api.timeout = 60
    return client


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM the engine if the test process dies without teardown."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start_private(dockerd: str, root: Path | None = None) -> DockerEngine:
    """A private dockerd in a new folder, or again in `root` (same socket, same data)."""
    if os.geteuid() != 0:
        raise EngineSetupError("no Docker engine is reachable and starting dockerd needs root")
    # Short: the engine's sockets live under it and unix socket paths are limited to 108 bytes.
    root = root or Path(tempfile.mkdtemp(prefix="smd-", dir="/tmp"))
    host = f"unix://{root}/docker.sock"
    command = [
        dockerd,
        f"--host={host}",
        f"--data-root={root}/data",
        f"--exec-root={root}/exec",
        f"--pidfile={root}/docker.pid",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
    ]
    driver = os.environ.get("STATEMESH_DOCKER_STORAGE_DRIVER")
    if driver:
        command.append(f"--storage-driver={driver}")
    started = time.monotonic()
    with (root / "dockerd.log").open("wb") as out:
        # Its own session, so ^C reaches pytest (which tears down in order) and not dockerd.
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    deadline = started + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (root / "dockerd.log").read_text(errors="replace")[-3000:]
            _unmount_under(root)
            shutil.rmtree(root, ignore_errors=True)
            raise EngineSetupError(f"dockerd exited with {process.returncode}:\n{tail}")
        client = _ping(host, timeout=2.0)
        if client is not None:
            elapsed = time.monotonic() - started
            driver_name = str(client.info().get("Driver", ""))
            log.info("private dockerd at %s answered in %.2f s (%s)", host, elapsed, driver_name)
            return DockerEngine(host, client, True, elapsed, driver_name, process, root)
        time.sleep(0.05)
    _stop_process(process)
    raise EngineSetupError(f"dockerd did not answer within {START_TIMEOUT_SECONDS} s")


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def start_private_engine() -> DockerEngine:
    """A private dockerd of its own (not the session's), for tests that stop and restart it."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineSetupError("dockerd is not installed (Debian package docker.io)")
    return _start_private(dockerd)


def restart_engine(engine: DockerEngine, down_seconds: float = 0.0) -> DockerEngine:
    """Stop a private engine's process, leave it down for `down_seconds`, and start it again on
    the same socket and data."""
    if not engine.started_here or engine.process is None or engine.root is None:
        raise EngineSetupError("only an engine started here can be restarted")
    engine.client.close()
    _stop_process(engine.process)
    _unmount_under(engine.root / "exec")
    time.sleep(down_seconds)
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineSetupError("dockerd is not installed (Debian package docker.io)")
    return _start_private(dockerd, engine.root)


def stop_engine(engine: DockerEngine) -> None:
    """Stops the engine only if it was started here, and deletes its directories."""
    engine.client.close()
    if not engine.started_here or engine.process is None:
        return
    _stop_process(engine.process)
    if engine.root is not None:
        _unmount_under(engine.root)
        shutil.rmtree(engine.root, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """dockerd unmounts container layers on shutdown but leaves its network namespace bind
    mount (exec-root/netns/default) behind; detach whatever is left, deepest first."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(f"{root}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def connect_or_start() -> DockerEngine:
    for host in (os.environ.get("DOCKER_HOST"), DEFAULT_SOCKET):
        if not host:
            continue
        client = _ping(host)
        if client is not None:
            driver = str(client.info().get("Driver", ""))
            return DockerEngine(host, client, False, 0.0, driver)
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineSetupError(
            "no Docker engine is reachable and dockerd is not installed "
            "(scripts/setup.sh installs the Debian package docker.io)"
        )
    return _start_private(dockerd)


def _rootfs_tar() -> bytes:
    """/bin/busybox with a link per applet, an httpd document root and a writable /tmp."""
    if not BUSYBOX_BINARY.exists():
        raise EngineSetupError(
            f"{BUSYBOX_BINARY} is missing: install the Debian package busybox-static"
        )
    applets = subprocess.run(
        [str(BUSYBOX_BINARY), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(
            name: str,
            *,
            kind: bytes = tarfile.DIRTYPE,
            mode: int = 0o755,
            data: bytes = b"",
            link: str = "",
        ) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname = kind, mode, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        for directory in ("bin", "etc", "www", "root"):
            add(directory)
        add("tmp", mode=0o1777)
        add("bin/busybox", kind=tarfile.REGTYPE, data=BUSYBOX_BINARY.read_bytes())
        for applet in applets:
            if applet != "busybox":
                add(f"bin/{applet}", kind=tarfile.SYMTYPE, mode=0o777, link="busybox")
        add("etc/passwd", kind=tarfile.REGTYPE, mode=0o644, data=b"root:x:0:0:root:/root:/bin/sh\n")
        add("etc/group", kind=tarfile.REGTYPE, mode=0o644, data=b"root:x:0:\n")
        add("www/index.html", kind=tarfile.REGTYPE, mode=0o644, data=b"statemesh\n")
    return buffer.getvalue()


def ensure_busybox_image(client: docker.DockerClient, tag: str = BUSYBOX_IMAGE) -> str:
    """`docker import` of the busybox root filesystem, unless the image is there already."""
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    repository, _, version = tag.rpartition(":")
    client.api.import_image_from_data(_rootfs_tar(), repository=repository, tag=version)
    return tag


def remove_labelled(client: docker.DockerClient, labels: Mapping[str, str]) -> int:
    """Removes every container and volume carrying all the labels; returns how many."""
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


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    try:
        engine = connect_or_start()
    except EngineSetupError as e:
        if "not installed" in str(e) or "needs root" in str(e):
            pytest.skip(str(e))
        raise
    try:
        yield engine
    finally:
        stop_engine(engine)


@pytest.fixture(scope="session")
def docker_client(docker_engine: DockerEngine) -> docker.DockerClient:
    return docker_engine.client


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient) -> str:
    return ensure_busybox_image(docker_client)
