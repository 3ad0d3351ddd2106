"""Image registries: which registry an image reference names and whether a tenant may make this
node pull from it; and a registry on loopback, Debian's `docker-registry` (the CNCF distribution
registry) serving a folder at 127.0.0.1, for a dev node's private engine (as its pull-through
mirror of Docker Hub names) and for the tests, where no public registry is reachable."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import docker
import docker.errors
import docker.utils
import requests

from chain.clock import Clock, SystemClock
from orchestrator.errors import OrchestratorError

log = logging.getLogger("statemesh.registry")
_SYSTEM_CLOCK = SystemClock()

REGISTRY_PACKAGE = "docker-registry"
"""The Debian package that installs the registry (`/usr/bin/docker-registry`)."""
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
_POLL_SECONDS = 0.05
_PR_SET_PDEATHSIG = 1


class RegistryError(OrchestratorError):
    """The registry could not be started, or an image could not be pushed to it."""


DOCKER_HUB = frozenset({"docker.io", "index.docker.io"})
"""The names of Docker Hub, which the engine pulls from itself or from its configured mirror."""


def registry_host(image: str) -> str | None:
    """The host of the registry `image` names, without its port, per Docker's reference rules:
    the first path component is a registry when it has a '.' or ':', is 'localhost' or has an
    upper-case letter; otherwise the name is Docker Hub's. None for Docker Hub (which the engine
    reaches through its own configuration, a mirror included)."""
    first, slash, _ = image.partition("/")
    if not slash:
        return None
    if not ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return None
    host = first
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]  # [IPv6]:PORT
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host.lower() in DOCKER_HUB:
        return None
    return host


def resolve_host(host: str) -> list[str]:
    """Every address `host` (a name or an IP) resolves to here; blocks, so call it in a thread.
    `OSError` if it does not resolve."""
    found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(sockaddr[0]) for *_, sockaddr in found})


SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
"""Where Debian installs daemons (dockerd, haproxy); root's PATH may lack them (e.g. under `su`
without `-`)."""


def find_program(name: str) -> str | None:
    """The executable `name` on the PATH or in SBIN, or None."""
    path = os.environ.get("PATH", os.defpath)
    return shutil.which(name, path=os.pathsep.join((path, *SBIN)))


def find_registry() -> str:
    """The registry's executable, or a `RegistryError` naming the package that installs it."""
    found = find_program("docker-registry")
    if found is None:
        raise RegistryError(f"docker-registry is not installed (Debian package {REGISTRY_PACKAGE})")
    return found


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it if its parent dies without stopping it. The signal
    follows the thread that started the child, so start it from a long-lived one."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalRegistry:
    """A registry process serving `root/data` at 127.0.0.1 on a free port, configured in
    `root/config.yml` and logging to `root/registry.log`. With `htpasswd` (a file of bcrypt
    `user:hash` lines) every request needs basic auth, as a private registry does.

    Docker talks plain HTTP to registries on 127.0.0.0/8, so an engine on this host pulls from it
    as `ADDRESS/NAME:TAG`, or as a Docker Hub name when started with `--registry-mirror URL`."""

    def __init__(
        self, root: Path, *, htpasswd: Path | None = None, clock: Clock = _SYSTEM_CLOCK
    ) -> None:
        self.clock = clock
        """Times the start's deadline."""
        self.root = root.absolute()
        self.htpasswd = htpasswd
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "registry.log"

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, the host part of the references of its images."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def config(self) -> str:
        auth = ""
        if self.htpasswd is not None:
            auth = f"auth:\n  htpasswd:\n    realm: statemesh\n    path: {self.htpasswd}\n"
        return (
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n"
            # One instance behind no load balancer: a fixed secret silences its warning.
            f"  secret: {os.urandom(16).hex()}\n"
            f"{auth}"
        )

    def start(self, timeout_seconds: float = START_TIMEOUT_SECONDS) -> None:
        """Starts the registry and waits until it answers. The folder keeps its images across
        restarts; the port is a new free one each time."""
        if self.running:
            return
        executable = find_registry()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port = free_loopback_port()
        config = self.root / "config.yml"
        config.write_text(self.config())
        config.chmod(0o600)
        started = self.clock.monotonic()
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [executable, "serve", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        try:
            while not self.answers():
                if self.clock.monotonic() - started > timeout_seconds:
                    raise RegistryError(
                        f"the registry did not answer at {self.url} within {timeout_seconds} s"
                    )
                time.sleep(_POLL_SECONDS)
        except BaseException:
            self.stop()
            raise
        log.info("image registry at %s (%s)", self.url, self.root)

    def answers(self) -> bool:
        """True once `/v2/` answers (401 counts: a registry with auth answers so)."""
        process = self.process
        if process is None or process.poll() is not None:
            code = None if process is None else process.returncode
            raise RegistryError(f"the registry exited with {code}: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/v2/", timeout=1.0):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def push(
        self,
        client: docker.DockerClient,
        image: str,
        name: str,
        *,
        auth: dict[str, str] | None = None,
    ) -> str:
        """Pushes the engine's `image` to this registry as `name` (e.g. `library/busybox:latest`,
        which a mirror serves as `busybox`) and returns its digest (`sha256:...`). The tag it
        makes for the push (`ADDRESS/name`) is removed again, so the engine keeps no copy under
        the registry's name. `auth` is the registry's user and password, if it has auth."""
        repository, tag = docker.utils.parse_repository_tag(name)
        target = f"{self.address}/{repository}"
        tag = tag or "latest"
        failures = (docker.errors.DockerException, requests.exceptions.RequestException)
        try:
            client.images.get(image).tag(target, tag)
        except failures as exc:
            raise RegistryError(f"cannot tag {image} for {self.address}: {exc}") from None
        digest = ""
        try:
            # Empty credentials unless some are given: never the client's stored logins.
            for line in client.api.push(
                target, tag=tag, stream=True, decode=True, auth_config=auth or {}
            ):
                if "error" in line:
                    raise RegistryError(f"cannot push {image} as {target}:{tag}: {line['error']}")
                digest = str((line.get("aux") or {}).get("Digest") or digest)
        except failures as exc:
            raise RegistryError(f"cannot push {image} as {target}:{tag}: {exc}") from None
        finally:
            with contextlib.suppress(*failures):
                client.api.remove_image(f"{target}:{tag}")
        if not digest:
            raise RegistryError(f"the push of {image} as {target}:{tag} reported no digest")
        return digest
