"""What a replica is: the desired containers of one replica of one application revision, as the
engine is to run them.

Field names follow Kubernetes (`containers`, `livenessProbe`, `restartPolicy`, ...) in snake_case,
with Kubernetes defaults. Every value is checked on construction and raises `SpecError`.

The enums a manifest and a replica share are the manifest's (`RestartPolicy`, `PortProtocol`,
re-exported here). The records below are the engine's view, which differs from the tenant's:
values resolved (a secret's value, the merged security context, one mount path per volume),
limits the node chose, probe periods in fractional seconds, and `VolumeKind`, whose values are
written on the engine's volumes and in container digests. `orchestrator.replica_specs` is the
one place where a manifest's types become these."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from chain.runtime.manifest.quantities import MIN_MEMORY_LIMIT_BYTES
from chain.runtime.manifest.types import ADDABLE_CAPABILITIES
from chain.runtime.manifest.types import PortProtocol as PortProtocol
from chain.runtime.manifest.types import RestartPolicy as RestartPolicy
from orchestrator.errors import SpecError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CHAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def valid_env_name(name: str) -> bool:
    return bool(_ENV_NAME.match(name))


def _check_dns_label(field_name: str, value: str) -> None:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise SpecError(
            field_name,
            f"{value!r} is not a DNS label (lower-case letters, digits and '-', at most 63)",
        )


def _check_port(field_name: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise SpecError(field_name, f"port {port} is outside 1..65535")


class ImagePullPolicy(enum.Enum):
    """Whether the engine may pull an image that is not present (Kubernetes `imagePullPolicy`)."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class VolumeKind(enum.Enum):
    """How long a volume's data lives. The manifest's `emptyDir` is `EPHEMERAL`; the values are
    the engine's, kept on its volumes (labels) and in container digests, so they never change."""

    EPHEMERAL = "ephemeral"
    """Lives as long as the replica's revision (like `emptyDir`): a new revision starts empty."""
    PERSISTENT = "persistent"
    """Outlives replacements and scale-down of its replica (like a StatefulSet volume claim)."""


class SourceKind(enum.Enum):
    """Where a value or a file comes from: the owner's configurations or secrets on chain."""

    CONFIG = "config"
    SECRET = "secret"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """One version of one of the owner's configurations or secrets. Container digests cover
    this, never the values: a new version replaces the containers that read it."""

    kind: SourceKind
    name: str
    version: int

    def digest_parts(self) -> list[object]:
        return [self.kind.value, self.name, self.version]


@dataclass(frozen=True, slots=True, repr=False)
class EnvVar:
    """One environment variable. A secret value never appears in repr, logs or errors."""

    name: str
    value: str
    secret: bool = False
    """Set for values that only the node running the container may see."""
    source: SourceRef | None = None
    """Where the value comes from (its `key` there); a secret's value is filled in only when
    the container is created (`value` is empty until then)."""
    key: str = ""

    def __post_init__(self) -> None:
        if not _ENV_NAME.match(self.name):
            raise SpecError("env", f"{self.name!r} is not a valid environment variable name")

    def __repr__(self) -> str:
        shown = "<secret>" if self.secret else repr(self.value)
        return f"EnvVar(name={self.name!r}, value={shown}, secret={self.secret})"

    def digest_parts(self) -> list[object]:
        """What a container's digest covers: the value itself only when it is given in the
        manifest, else where it comes from (its version)."""
        if self.source is None:
            return [self.name, self.value, self.secret]
        return [self.name, self.secret, *self.source.digest_parts(), self.key]


@dataclass(frozen=True, slots=True)
class ContainerPort:
    """A port the container listens on, on its pod's own address."""

    container_port: int
    name: str = ""
    protocol: PortProtocol = PortProtocol.TCP

    def __post_init__(self) -> None:
        _check_port("ports.container_port", self.container_port)


CAPABILITIES_KEPT = tuple(sorted(ADDABLE_CAPABILITIES))
"""What a container keeps of Docker's default capabilities unless it drops more, in name order:
the ones a manifest may add, what common images need to start (change the owner of their
files, switch to an unprivileged user, bind a low port). Gone are NET_RAW (raw and packet
sockets: spoofing and sniffing), MKNOD, AUDIT_WRITE, SETFCAP and SYS_CHROOT, as Kubernetes'
"restricted" level would have it."""

DEFAULT_PIDS_LIMIT = 1024
"""Processes and threads of one container when its manifest sets no limit: enough for a
threaded server, not enough for a fork bomb to starve the node."""


@dataclass(frozen=True, slots=True)
class EnforcedResources:
    """What the engine enforces (Kubernetes `resources`); None means unlimited."""

    cpu_millicores: int | None = None
    """The CPU limit, 1000 is one CPU; enforced as a CFS quota."""
    cpu_request_millicores: int | None = None
    """The CPU request: the container's weight when CPUs are contended (CFS shares, 1024 per
    CPU, as the kubelet sets them). Not a cap: an idle CPU is anyone's."""
    memory_bytes: int | None = None
    """A hard limit with no swap: a container that goes past it is OOM-killed."""
    pids_limit: int | None = DEFAULT_PIDS_LIMIT
    """At most this many processes and threads in the container."""
    disk_bytes: int | None = None
    """The container's `ephemeral-storage` limit: what it may write to its own filesystem (its
    writable layer). Measured periodically; a container past it is evicted."""

    def __post_init__(self) -> None:
        if self.cpu_millicores is not None and self.cpu_millicores < 1:
            raise SpecError("resources.cpu_millicores", f"{self.cpu_millicores} is below 1")
        if self.cpu_request_millicores is not None and self.cpu_request_millicores < 1:
            raise SpecError(
                "resources.cpu_request_millicores", f"{self.cpu_request_millicores} is below 1"
            )
        # The engine refuses memory limits under 6 MiB; say so here rather than at create.
        if self.memory_bytes is not None and self.memory_bytes < MIN_MEMORY_LIMIT_BYTES:
            raise SpecError("resources.memory_bytes", f"{self.memory_bytes} is below 6 MiB")
        if self.pids_limit is not None and self.pids_limit < 1:
            raise SpecError("resources.pids_limit", f"{self.pids_limit} is below 1")
        if self.disk_bytes is not None and self.disk_bytes < 1:
            raise SpecError("resources.disk_bytes", f"{self.disk_bytes} is below 1")


@dataclass(frozen=True, slots=True)
class SecurityContext:
    """How a container's processes run (Kubernetes `securityContext`). Whatever it says, every
    container runs without new privileges, under the engine's default seccomp profile, and with
    at most `CAPABILITIES_KEPT`."""

    run_as_user: int | None = None
    """The uid of the container's processes; None keeps the image's."""
    run_as_group: int | None = None
    run_as_non_root: bool = False
    """Refuse to start a container whose processes would run as uid 0."""
    read_only_root_filesystem: bool = False
    """The image's filesystem is read-only; /tmp is then a small writable tmpfs."""
    capabilities_drop: tuple[str, ...] = ()
    """Capabilities dropped from `CAPABILITIES_KEPT` ("ALL" drops every one)."""
    capabilities_add: tuple[str, ...] = ()
    """Given back after the drops (Kubernetes' `drop: [ALL]`, `add: [NET_BIND_SERVICE]`); only
    ones of `CAPABILITIES_KEPT`."""

    def __post_init__(self) -> None:
        for name, uid in (("run_as_user", self.run_as_user), ("run_as_group", self.run_as_group)):
            if uid is not None and not 0 <= uid <= 2**31 - 1:
                raise SpecError(f"security.{name}", f"{uid} is outside 0..2147483647")
        if self.run_as_non_root and self.run_as_user == 0:
            raise SpecError("security.run_as_user", "0 is root, and run_as_non_root is set")
        extra = sorted(set(self.capabilities_add) - set(CAPABILITIES_KEPT))
        if extra:
            raise SpecError("security.capabilities_add", f"{', '.join(extra)} cannot be added")

    def capabilities(self) -> tuple[str, ...]:
        """The capabilities the container keeps."""
        dropped = set(CAPABILITIES_KEPT) if "ALL" in self.capabilities_drop else set()
        dropped |= set(self.capabilities_drop)
        return tuple(c for c in CAPABILITIES_KEPT if c not in dropped or c in self.capabilities_add)


@dataclass(frozen=True, slots=True)
class HTTPGetAction:
    """Succeeds on an HTTP status from 200 to 399 (Kubernetes `httpGet`)."""

    port: int
    path: str = "/"
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        _check_port("probe.http_get.port", self.port)
        if not self.path.startswith("/") or any(c in self.path for c in " \r\n"):
            raise SpecError("probe.http_get.path", f"{self.path!r} is not an absolute URL path")


@dataclass(frozen=True, slots=True)
class TCPSocketAction:
    """Succeeds when a TCP connection opens (Kubernetes `tcpSocket`)."""

    port: int
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        _check_port("probe.tcp_socket.port", self.port)


@dataclass(frozen=True, slots=True)
class ExecAction:
    """Succeeds when the command, run inside the container, exits with 0 (Kubernetes `exec`)."""

    command: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.command:
            raise SpecError("probe.exec.command", "is empty")


ProbeAction = HTTPGetAction | TCPSocketAction | ExecAction


@dataclass(frozen=True, slots=True)
class Probe:
    """A periodic health check, with Kubernetes' fields and defaults (seconds may be fractional)."""

    action: ProbeAction
    initial_delay_seconds: float = 0.0
    period_seconds: float = 10.0
    timeout_seconds: float = 1.0
    success_threshold: int = 1
    """Consecutive successes after a failure before the probe counts as passing."""
    failure_threshold: int = 3
    """Consecutive failures before the probe counts as failing."""

    def __post_init__(self) -> None:
        if self.initial_delay_seconds < 0:
            raise SpecError("probe.initial_delay_seconds", "is negative")
        if self.period_seconds <= 0:
            raise SpecError("probe.period_seconds", "must be positive")
        if self.timeout_seconds <= 0:
            raise SpecError("probe.timeout_seconds", "must be positive")
        if self.success_threshold < 1:
            raise SpecError("probe.success_threshold", "must be at least 1")
        if self.failure_threshold < 1:
            raise SpecError("probe.failure_threshold", "must be at least 1")


@dataclass(frozen=True, slots=True)
class Container:
    """One container of a replica (Kubernetes `containers[]`)."""

    name: str
    image: str
    command: tuple[str, ...] = ()
    """Replaces the image's entrypoint."""
    args: tuple[str, ...] = ()
    """Replaces the image's default arguments."""
    env: tuple[EnvVar, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    resources: EnforcedResources = field(default_factory=EnforcedResources)
    liveness_probe: Probe | None = None
    """Failing it restarts the container."""
    readiness_probe: Probe | None = None
    """Failing it takes the replica out of service without restarting it."""
    startup_probe: Probe | None = None
    """Holds off the other probes until the application has started."""
    image_pull_policy: ImagePullPolicy = ImagePullPolicy.IF_NOT_PRESENT
    security: SecurityContext = field(default_factory=SecurityContext)

    def __post_init__(self) -> None:
        _check_dns_label("containers.name", self.name)
        if not self.image or any(c.isspace() for c in self.image):
            raise SpecError("containers.image", f"{self.image!r} is not an image reference")
        names = [e.name for e in self.env]
        if len(set(names)) != len(names):
            raise SpecError("containers.env", f"container {self.name!r} repeats a variable")
        for kind, probe in (("liveness", self.liveness_probe), ("startup", self.startup_probe)):
            if probe is not None and probe.success_threshold != 1:
                raise SpecError(f"containers.{kind}_probe.success_threshold", "must be 1")


@dataclass(frozen=True, slots=True)
class Volume:
    """A named volume mounted at the same path in every container of the replica."""

    name: str
    mount_path: str
    kind: VolumeKind = VolumeKind.EPHEMERAL
    size_bytes: int | None = None
    """A persistent volume's size, an ephemeral one's `sizeLimit` (None: no limit). Measured
    periodically; a replica whose volume is past it is evicted."""
    memory: bool = False
    """An ephemeral volume in memory (`emptyDir.medium: Memory`): a tmpfs of `size_bytes`."""

    def __post_init__(self) -> None:
        _check_dns_label("volumes.name", self.name)
        if not self.mount_path.startswith("/") or self.mount_path == "/":
            raise SpecError("volumes.mount_path", f"{self.mount_path!r} is not an absolute path")
        if self.size_bytes is not None and self.size_bytes < 1:
            raise SpecError("volumes.size_bytes", f"{self.size_bytes} is below 1")
        if self.memory and self.kind is not VolumeKind.EPHEMERAL:
            raise SpecError("volumes.memory", "only an ephemeral volume can be in memory")
        if self.memory and self.size_bytes is None:
            raise SpecError("volumes.size_bytes", "a volume in memory needs a size limit")


@dataclass(frozen=True, slots=True)
class FileItem:
    """One key of a configuration or secret as a file of a `FilesVolume`."""

    key: str
    path: str
    """Relative to the mount path, without `.` or `..` parts."""
    mode: int

    def __post_init__(self) -> None:
        parts = self.path.split("/")
        if not self.path or self.path.startswith("/") or {"", ".", ".."} & set(parts):
            raise SpecError("files.items.path", f"{self.path!r} is not a relative path")
        if not 0 <= self.mode <= 0o777:
            raise SpecError("files.items.mode", f"{self.mode:o} is not a file mode")


@dataclass(frozen=True, slots=True)
class FilesVolume:
    """A configuration's or secret's keys as read-only files, written by the node on a tmpfs
    when the container is created and removed with it (Kubernetes' `secret` and `configMap`
    volumes)."""

    name: str
    mount_path: str
    source: SourceRef
    items: tuple[FileItem, ...]
    data: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)
    """A configuration's values, read from the chain with its version; empty for a secret,
    whose values only the node's secret source gives, at creation."""
    containers: tuple[str, ...] = ()
    """The containers that mount it (none: every one); a secret reaches no other."""

    def mounted_in(self, container: str) -> bool:
        return not self.containers or container in self.containers

    def __post_init__(self) -> None:
        _check_dns_label("files.name", self.name)
        if not self.mount_path.startswith("/") or self.mount_path == "/":
            raise SpecError("files.mount_path", f"{self.mount_path!r} is not an absolute path")

    def digest_parts(self) -> list[object]:
        return [
            self.name,
            self.mount_path,
            *self.source.digest_parts(),
            [[i.key, i.path, i.mode] for i in self.items],
            list(self.containers),
        ]


@dataclass(frozen=True, slots=True, order=True)
class ReplicaKey:
    """Which replica: stable across revisions, so a new revision replaces the old one."""

    chain: str
    app: str
    replica: int

    def __str__(self) -> str:
        return f"{self.app}/{self.replica}"


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """One replica of one revision of an application, assigned to this node by the chain."""

    chain: str
    """The chain id whose state assigned this replica."""
    app: str
    revision: int
    """Bumped by the chain on every change to the application; a new revision is a replacement."""
    replica: int
    """The replica's index within the application."""
    containers: tuple[Container, ...]
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    volumes: tuple[Volume, ...] = ()
    termination_grace_period_seconds: float = 30.0
    """How long a container has to exit after SIGTERM before it is killed."""
    owner: str = ""
    """The account that owns the application (its address)."""
    instance: int = 0
    """Which application of this name: the chain numbers each creation anew, so an application
    deleted and created again (by anyone) never finds the old one's volumes."""
    files: tuple[FilesVolume, ...] = ()
    """Configurations and secrets mounted as files, in every container (as volumes are)."""
    pull_secrets: tuple[SourceRef, ...] = ()
    """The owner's secrets with registry credentials (`imagePullSecrets`), in manifest order."""

    def __post_init__(self) -> None:
        if self.instance < 0:
            raise SpecError("instance", f"{self.instance} is negative")
        if not _CHAIN_ID.match(self.chain):
            raise SpecError("chain", f"{self.chain!r} is not a chain id")
        _check_dns_label("app", self.app)
        if self.revision < 0:
            raise SpecError("revision", f"{self.revision} is negative")
        if self.replica < 0:
            raise SpecError("replica", f"{self.replica} is negative")
        if not self.containers:
            raise SpecError("containers", "a replica needs at least one container")
        names = [c.name for c in self.containers]
        if len(set(names)) != len(names):
            raise SpecError("containers.name", "two containers have the same name")
        if len({v.name for v in self.volumes}) != len(self.volumes):
            raise SpecError("volumes.name", "two volumes have the same name")
        named = [v.name for v in self.volumes] + [f.name for f in self.files]
        if len(set(named)) != len(named):
            raise SpecError("volumes.name", "two volumes have the same name")
        paths = [v.mount_path for v in self.volumes] + [f.mount_path for f in self.files]
        if len(set(paths)) != len(paths):
            raise SpecError("volumes.mount_path", "two volumes are mounted at the same path")
        if self.termination_grace_period_seconds < 0:
            raise SpecError("termination_grace_period_seconds", "is negative")

    @property
    def key(self) -> ReplicaKey:
        return ReplicaKey(self.chain, self.app, self.replica)

    def secrets(self) -> list[SourceRef]:
        """The secrets (with their versions) its containers read, in order, each once."""
        found = {e.source for c in self.containers for e in c.env if e.source is not None}
        found |= {f.source for f in self.files}
        found |= set(self.pull_secrets)
        return sorted(
            (r for r in found if r.kind is SourceKind.SECRET), key=lambda r: (r.name, r.version)
        )

    def container(self, name: str) -> Container:
        for c in self.containers:
            if c.name == name:
                return c
        raise KeyError(name)
