"""A private Docker engine: a `dockerd` of our own, started as root with its own socket, data root,
exec root and pidfile under one folder, for a dev node that has no engine and for the tests.

Its flags are Docker's defaults (iptables and IP masquerading on) except that it makes no default
`docker0` bridge: the node creates the user-defined bridge networks it needs; and, where no public
registry is reachable, a registry mirror on loopback (its own, or one given)."""

from __future__ import annotations

import contextlib
import enum
import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import docker
import docker.errors
import requests
import trio

from chain.clock import Clock, SystemClock
from orchestrator.errors import OrchestratorError
from orchestrator.registry import (
    SBIN,
    LocalRegistry,
    RegistryError,
    die_with_parent,
    find_program,
)

log = logging.getLogger("statemesh.dockerd")
_SYSTEM_CLOCK = SystemClock()

DOCKERD_PACKAGE = "docker.io"
"""The Debian package that installs dockerd (and containerd, runc and iptables with it)."""
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
"""How long dockerd may take to exit after SIGTERM before it is killed: it first stops its
running containers, each within its stop timeout (Docker's default: 10 s)."""
STORAGE_DRIVER_ENV = "STATEMESH_DOCKER_STORAGE_DRIVER"
"""Forces a storage driver (e.g. vfs where overlay cannot mount)."""
MAX_SOCKET_PATH_BYTES = 107
"""A unix socket path must fit sun_path (108 bytes with its terminating NUL)."""
_LONGEST_SOCKET = Path("exec/containerd/containerd.sock.ttrpc")
"""The longest socket path the engine makes under its runtime folder (containerd's)."""
_POLL_SECONDS = 0.05
_PING_TIMEOUT_SECONDS = 2.0
_BUILT_IN_NETWORKS = ("bridge", "host", "none")


START_LOCK_FOLDERS = (Path("/run/lock"), Path("/tmp"))
"""Where the host-wide lock that orders engine starts lives (the first that exists)."""


_ROUTINE = re.compile(r"\blevel=(?:debug|info|warning)\b")


def why_it_exited(tail: str) -> str:
    """The line of the end of dockerd's output that says why it stopped: the last one not
    logged at debug, info or warning level (a gRPC notice may follow the fatal error), else the
    last one."""
    lines = tail.splitlines()
    if not lines:
        return "no output"
    return next((line for line in reversed(lines) if not _ROUTINE.search(line)), lines[-1])


class _StartTurn:
    """One engine start at a time on this host. As it starts, dockerd removes and creates again
    the iptables chains that every engine of the host shares (DOCKER, DOCKER-ISOLATION-STAGE-1
    and -2): two engines starting at once race, and one of them exits with "Chain already
    exists". The turn is an advisory lock on a file, held from the spawn until the engine
    answers; a crashed holder releases it with its process."""

    def __init__(self) -> None:
        folder = next((f for f in START_LOCK_FOLDERS if f.is_dir()), Path("/tmp"))
        self._path = folder / "statemesh-dockerd-start.lock"
        self._fd = -1

    def __enter__(self) -> _StartTurn:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self

    def taken(self) -> bool:
        """Takes the turn if it is free: polled, so that waiting stays cancellable."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)  # releases the lock with the descriptor


class EngineStartReason(enum.Enum):
    NOT_INSTALLED = "not-installed"
    NOT_ROOT = "not-root"
    UNSAFE_FOLDER = "unsafe-folder"
    IN_USE = "in-use"
    EXITED = "exited"
    NO_ANSWER = "no-answer"


class EngineStartError(OrchestratorError):
    """A private engine could not be started. `message` is one line; `log_tail` holds the end of
    dockerd's log when it ran and failed."""

    def __init__(self, reason: EngineStartReason, message: str, log_tail: str = "") -> None:
        super().__init__(f"{message}\n{log_tail}" if log_tail else message)
        self.reason = reason
        self.message = message
        self.log_tail = log_tail


def find_dockerd() -> str:
    """The dockerd executable, or an `EngineStartError` naming the package that installs it."""
    found = find_program("dockerd")
    if found is None:
        raise EngineStartError(
            EngineStartReason.NOT_INSTALLED,
            f"dockerd is not installed (Debian package {DOCKERD_PACKAGE})",
        )
    return found


def ping(host: str, timeout_seconds: float = _PING_TIMEOUT_SECONDS) -> docker.DockerClient | None:
    """A client of the engine at `host` if it answers within `timeout_seconds`, else None."""
    if host.startswith("unix://") and not os.path.exists(host.removeprefix("unix://")):
        return None
    try:
        client = docker.DockerClient(base_url=host, version="auto", timeout=timeout_seconds)
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return None
    try:
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        client.close()
        return None
    client.api.timeout = 60
    return client


def unmount_under(folder: Path) -> None:
    """Detaches every mount at or below `folder`, deepest first: dockerd unmounts container
    layers on shutdown but leaves its network namespace bind mount (exec-root/netns/default)
    behind; one that fails to start leaves its data root bind-mounted on itself; a killed one
    leaves everything."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    inside = [p for p in points if p == str(folder) or p.startswith(f"{folder}/")]
    for point in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


class PrivateEngine:
    """A dockerd in `root`: data root, pidfile, configuration and log there; its socket and exec
    root (which holds containerd's sockets) there too unless the paths would be too long for a
    unix socket, in which case they live in a folder of their own under /tmp.

    `start` and `stop` block; `start_async` and `stop_async` are the same for trio code. The
    engine can be stopped and started again: same socket, same data."""

    def __init__(
        self,
        root: Path,
        *,
        storage_driver: str | None = None,
        registry_mirror: str | None = None,
        serve_registry: bool = False,
        clock: Clock = _SYSTEM_CLOCK,
    ) -> None:
        self.clock = clock
        """Times the start (`start_seconds`) and its deadline."""
        self.root = root.absolute()
        self.storage_driver = storage_driver or os.environ.get(STORAGE_DRIVER_ENV) or None
        """None lets dockerd choose (overlay2 where it can)."""
        self.registry_mirror = registry_mirror
        """Where the engine pulls Docker Hub names from (`http://127.0.0.1:PORT`), if set."""
        self.registry = (
            LocalRegistry(self.root / "registry", clock=clock) if serve_registry else None
        )
        """A registry of its own in `root/registry`, started before the engine and stopped after
        it, that the engine uses as its mirror (no public registry is reachable from a dev
        machine): images pushed there as `library/NAME` are pulled as `NAME`."""
        runtime = self.root
        if len(os.fsencode(runtime / _LONGEST_SOCKET)) > MAX_SOCKET_PATH_BYTES:
            digest = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:12]
            runtime = Path("/tmp") / f"statemesh-docker-{digest}"
        self.runtime_dir = runtime
        """Where the socket and exec root live: `root`, or a short folder under /tmp."""
        self.socket = runtime / "docker.sock"
        self.exec_root = runtime / "exec"
        self.data_root = self.root / "data"
        self.pidfile = self.root / "docker.pid"
        self.config_file = self.root / "daemon.json"
        self.log_path = self.root / "dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0
        """How long the last start took until the engine answered."""

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self, dockerd: str) -> list[str]:
        """dockerd's command line. Its own configuration file keeps the machine's
        /etc/docker/daemon.json, meant for the system's engine, out of it."""
        command = [
            dockerd,
            f"--config-file={self.config_file}",
            f"--host={self.host}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            "--bridge=none",
        ]
        if self.storage_driver:
            command.append(f"--storage-driver={self.storage_driver}")
        mirror = self.registry.url if self.registry is not None else self.registry_mirror
        if mirror:
            command.append(f"--registry-mirror={mirror}")
        return command

    def spawn(self) -> None:
        """Starts dockerd and returns at once. Call it from a thread that lives as long as the
        engine should (the engine gets SIGTERM when that thread ends)."""
        if self.running:
            return
        dockerd = find_dockerd()
        if os.geteuid() != 0:
            raise EngineStartError(EngineStartReason.NOT_ROOT, "starting dockerd needs root")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._check_unused()
        if self.runtime_dir != self.root:
            _private_folder(self.runtime_dir)
            log.info(
                "%s is too long a path for unix sockets: the engine's socket and exec root are "
                "in %s",
                self.root,
                self.runtime_dir,
            )
        if not self.config_file.exists():
            self.config_file.write_text("{}\n")
        if self.registry is not None and not self.registry.running:
            try:
                self.registry.start()
            except RegistryError as exc:
                log.warning("the engine runs without its registry mirror: %s", exc)
                self.registry = None
        # The tools dockerd runs (iptables, containerd) live in SBIN too.
        path = os.environ.get("PATH", os.defpath)
        env = {**os.environ, "PATH": os.pathsep.join((path, *SBIN))}
        with self.log_path.open("ab") as out:
            # Its own session: ^C in a terminal reaches the node (which stops the engine in
            # order), not dockerd.
            self.process = subprocess.Popen(
                self.command(dockerd),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def _check_unused(self) -> None:
        """Refuses to start over an engine that still runs in these folders (another process's,
        or one left by a node that was killed): its socket and mounts are not ours to remove."""
        pid = _read_pid(self.pidfile)
        alive = pid is not None and _is_dockerd(pid)
        if pid is not None and not alive:
            # Left by an engine that was killed; dockerd would refuse to start while it exists
            # and names a live process (pids are reused).
            self.pidfile.unlink(missing_ok=True)
        if alive or ping(self.host) is not None:
            raise EngineStartError(
                EngineStartReason.IN_USE,
                f"a dockerd already runs in {self.root}"
                + (f" (pid {pid} in {self.pidfile})" if alive else f" (it answers at {self.host})"),
            )

    def answers(self) -> bool:
        """One look at a starting engine: True once it answers; an `EngineStartError` (with the
        end of its log) if dockerd has exited."""
        process = self.process
        if process is None:
            raise EngineStartError(EngineStartReason.EXITED, "dockerd was not started")
        if process.poll() is not None:
            tail = self.log_tail()
            raise EngineStartError(
                EngineStartReason.EXITED,
                f"dockerd exited with {process.returncode}: {why_it_exited(tail)}",
                tail,
            )
        client = ping(self.host)
        if client is None:
            return False
        client.close()
        return True

    def start(self, timeout_seconds: float = START_TIMEOUT_SECONDS) -> None:
        """Starts dockerd and waits until it answers."""
        started = self.clock.monotonic()
        with _StartTurn() as turn:
            while not turn.taken():
                time.sleep(_POLL_SECONDS)
            self.spawn()
            try:
                while not self.answers():
                    if self.clock.monotonic() - started > timeout_seconds:
                        raise self._no_answer(timeout_seconds)
                    time.sleep(_POLL_SECONDS)
            except BaseException:
                self.stop()
                raise
        self._started(started)

    async def start_async(self, timeout_seconds: float = START_TIMEOUT_SECONDS) -> None:
        """`start` for trio code: dockerd is started from the calling (trio) thread, so that it
        outlives no worker thread, and the engine is asked in worker threads until it answers."""
        started = self.clock.monotonic()
        with _StartTurn() as turn:
            # A file lock offers nothing to await: poll it, cancellable between looks.
            while not turn.taken():  # noqa: ASYNC110
                await trio.sleep(_POLL_SECONDS)
            self.spawn()
            try:
                while not await trio.to_thread.run_sync(self.answers):
                    if self.clock.monotonic() - started > timeout_seconds:
                        raise self._no_answer(timeout_seconds)
                    await trio.sleep(_POLL_SECONDS)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self.stop_async()
                raise
        self._started(started)

    def stop(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS, *, purge: bool = False) -> None:
        """SIGTERM, wait up to `timeout_seconds`, then kill; then detach what it left mounted and
        remove its socket. The data root stays.

        With `purge`, every container and network goes first (volumes stay): Docker leaves the
        bridges of its networks on the host when it stops, with their routes, which hold on to
        address ranges every other engine then avoids, and their iptables rules."""
        process = self.process
        if process is not None and process.poll() is None:
            if purge:
                self._purge()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                log.warning(
                    "dockerd did not exit within %s s of SIGTERM: killing it", timeout_seconds
                )
                process.kill()
                process.wait()
        if self.registry is not None:
            self.registry.stop()
        self._clean_up()

    async def stop_async(
        self, timeout_seconds: float = STOP_TIMEOUT_SECONDS, *, purge: bool = False
    ) -> None:
        await trio.to_thread.run_sync(functools.partial(self.stop, timeout_seconds, purge=purge))

    def _purge(self) -> None:
        client = ping(self.host)
        if client is None:
            return
        failures = (docker.errors.DockerException, requests.exceptions.RequestException)
        try:
            for row in client.api.containers(all=True):
                with contextlib.suppress(*failures):
                    client.api.remove_container(row["Id"], force=True)
            for network in client.api.networks():
                if network["Name"] not in _BUILT_IN_NETWORKS:
                    with contextlib.suppress(*failures):
                        client.api.remove_network(network["Id"])
        except failures as exc:
            log.warning("could not remove every container and network of %s: %s", self.host, exc)
        finally:
            client.close()

    def client(self) -> docker.DockerClient:
        """A new client of this engine (close it when done); an `EngineStartError` if the engine
        does not answer."""
        try:
            return docker.DockerClient(base_url=self.host, version="auto", timeout=60)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineStartError(
                EngineStartReason.NO_ANSWER, f"dockerd does not answer at {self.host}: {exc}"
            ) from None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _started(self, started: float) -> None:
        self.start_seconds = self.clock.monotonic() - started
        log.info("private dockerd at %s answered in %.2f s", self.host, self.start_seconds)

    def _no_answer(self, timeout_seconds: float) -> EngineStartError:
        return EngineStartError(
            EngineStartReason.NO_ANSWER,
            f"dockerd did not answer at {self.host} within {timeout_seconds} s",
            self.log_tail(),
        )

    def _clean_up(self) -> None:
        unmount_under(self.exec_root)
        unmount_under(self.data_root)
        self.socket.unlink(missing_ok=True)
        if self.runtime_dir != self.root:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)


def _read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def _is_dockerd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
    except OSError:
        return False


def _private_folder(folder: Path) -> None:
    """Makes `folder` (in a world-writable parent) or accepts it only if it is a real folder that
    we own and no one else may write to: the engine's socket must not be someone else's."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    status = folder.lstat()
    if not (
        stat.S_ISDIR(status.st_mode)
        and status.st_uid == os.geteuid()
        and status.st_mode & 0o022 == 0
    ):
        raise EngineStartError(
            EngineStartReason.UNSAFE_FOLDER,
            f"{folder} exists and is not a private folder of this user: not starting dockerd",
        )
