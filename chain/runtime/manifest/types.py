"""The typed manifest's parts: the enums and frozen records an application spec is made of, with
Kubernetes' field names in snake_case and every quantity an integer."""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace
from typing import Any

DEFAULT_ZONE = "statemesh.internal"
"""The DNS zone under which ingress hosts live unless the chain names another."""


def ingress_prefix(path: str) -> str:
    """The requests an ingress rule's path matches, as one prefix: `/api` and `/api/` match the
    same ones, so both are `/api`; `/` stays `/`."""
    return path.rstrip("/") or "/"


CAPABILITIES = frozenset(
    {
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
        "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
        "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
        "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    }
)  # fmt: skip
"""Linux capabilities, named as Kubernetes names them (without CAP_)."""
ADDABLE_CAPABILITIES = frozenset(
    {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETGID",
     "SETPCAP", "SETUID"}
)  # fmt: skip
"""The capabilities a container may add: Docker's default set without NET_RAW, MKNOD, SYS_CHROOT,
AUDIT_WRITE and SETFCAP. Each acts only on what the container owns (its files, its processes,
its own ports); every tenant may be hostile, so none that reaches the network stack (NET_RAW,
NET_ADMIN), the kernel or other processes (SYS_*) is ever granted."""


class NodeClass(enum.Enum):
    CPU = "cpu"
    GPU = "gpu"
    STORAGE = "storage"


class RestartPolicy(enum.Enum):
    """When a container that exited is started again (Kubernetes `restartPolicy`)."""

    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class PortProtocol(enum.StrEnum):
    """The transport a port speaks. Its members are their text, as the engine's digests and
    port bindings write them."""

    TCP = "TCP"
    UDP = "UDP"


class VolumeKind(enum.Enum):
    EMPTY_DIR = "emptyDir"
    """Starts empty with each new copy of the replica."""
    PERSISTENT = "persistent"
    """Outlives replacements of the replica."""
    SECRET = "secret"
    """The keys of one of the owner's secrets as read-only files, in memory on the node."""
    CONFIG_MAP = "configMap"
    """The keys of one of the owner's configurations as read-only files."""


DEFAULT_SECRET_MODE = 0o400
"""The mode of a secret volume's files unless the manifest says otherwise: readable by their
owner only (Kubernetes' default is 0644; a secret here is kept tighter)."""
DEFAULT_CONFIG_MODE = 0o644
"""The mode of a configMap volume's files unless the manifest says otherwise (Kubernetes')."""


@dataclass(frozen=True, slots=True)
class KeyRef:
    """One key of a named secret or configuration of the application's owner, held by the chain
    (Kubernetes' `secretKeyRef` and `configMapKeyRef`)."""

    name: str
    key: str

    @classmethod
    def from_json(cls, raw: Any) -> KeyRef | None:
        """From a manifest's `secretKeyRef` or `configMapKeyRef` object, if there is one."""
        return None if raw is None else cls(raw["name"], raw["key"])


@dataclass(frozen=True, slots=True)
class EnvVar:
    """Exactly one of `value`, `secret_ref` and `config_ref` is set (`value` or `valueFrom`)."""

    name: str
    value: str | None = None
    secret_ref: KeyRef | None = None
    """Resolved only by the node that runs the container."""
    config_ref: KeyRef | None = None


@dataclass(frozen=True, slots=True)
class EnvFromSource:
    """Every key of one secret or one configuration as an environment variable (Kubernetes'
    `envFrom`); exactly one of the two names is set."""

    secret: str | None = None
    config: str | None = None


@dataclass(frozen=True, slots=True)
class KeyToPath:
    """One key of a secret or configMap volume as a file (Kubernetes' `items`)."""

    key: str
    path: str
    """Relative to the volume's mount path; no `.` or `..` part."""
    mode: int | None = None
    """None: the volume's `default_mode`."""


@dataclass(frozen=True, slots=True)
class ContainerPort:
    container_port: int
    """A port of the replica: its containers share a network namespace of their own (a pod),
    so two replicas on one node may listen on the same port."""
    protocol: PortProtocol = PortProtocol.TCP
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ResourceRequests:
    """What the scheduler reserves for a container: always set (defaults filled in)."""

    cpu_millicores: int
    memory_bytes: int
    disk_bytes: int
    gpus: int


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """What the engine enforces; None is unlimited."""

    cpu_millicores: int | None = None
    memory_bytes: int | None = None
    disk_bytes: int | None = None
    gpus: int | None = None
    pids: int | None = None
    """Processes and threads; None leaves the node's default (a node never runs a container
    without a pids limit)."""


@dataclass(frozen=True, slots=True)
class ContainerResources:
    requests: ResourceRequests
    limits: ResourceLimits


@dataclass(frozen=True, slots=True)
class HttpGetAction:
    port: int
    """A declared TCP port of the container (a port name is resolved to its number)."""
    path: str = "/"


@dataclass(frozen=True, slots=True)
class TcpSocketAction:
    port: int


@dataclass(frozen=True, slots=True)
class ExecAction:
    command: tuple[str, ...]


ProbeAction = HttpGetAction | TcpSocketAction | ExecAction


@dataclass(frozen=True, slots=True)
class Probe:
    """A health check with Kubernetes' fields and defaults, in whole seconds."""

    action: ProbeAction
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True, slots=True)
class VolumeMount:
    name: str
    mount_path: str


@dataclass(frozen=True, slots=True)
class SecurityContext:
    """How a container's processes run, with Kubernetes' fields. None is "not set" (the image's
    user and group, the engine's defaults): at container level, not set means the pod level's
    value applies (`effective_security_context`). `allowPrivilegeEscalation` and `privileged`
    are accepted only as false, so they are not kept: no container ever gains privileges."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    """True: the container must not run as user 0. A manifest never pairs it with runAsUser 0;
    with no runAsUser, the image's user must be checked before starting, as the kubelet does."""
    read_only_root_filesystem: bool | None = None
    """Set at container level only, as in Kubernetes."""
    capabilities_add: tuple[str, ...] | None = None
    """Sorted, no repeats, each one of ADDABLE_CAPABILITIES."""
    capabilities_drop: tuple[str, ...] | None = None
    """Sorted, no repeats, each one of CAPABILITIES or "ALL"."""


NO_SECURITY_CONTEXT = SecurityContext()


def effective_security_context(spec: ApplicationSpec, container: Container) -> SecurityContext:
    """The container's securityContext over the pod's: each field the container sets wins, each
    it leaves unset comes from `spec.securityContext` (capabilities' add and drop separately)."""
    return merge_security_contexts(spec.security_context, container.security_context)


def merge_security_contexts(pod: SecurityContext, own: SecurityContext) -> SecurityContext:
    """`own` over `pod`, field by field."""
    overrides = {
        f.name: getattr(own, f.name) for f in fields(own) if getattr(own, f.name) is not None
    }
    return replace(pod, **overrides)


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[EnvVar, ...]
    ports: tuple[ContainerPort, ...]
    resources: ContainerResources
    liveness_probe: Probe | None
    readiness_probe: Probe | None
    startup_probe: Probe | None
    volume_mounts: tuple[VolumeMount, ...]
    security_context: SecurityContext = NO_SECURITY_CONTEXT
    env_from: tuple[EnvFromSource, ...] = ()
    """Applied before `env`, in order: a name `env` sets, or a later source sets, wins."""


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    kind: VolumeKind
    size_bytes: int | None
    """The size of a persistent volume; the optional size limit of an emptyDir."""
    memory: bool = False
    """An emptyDir in memory (`medium: Memory`): a tmpfs of its size limit, which counts as
    memory, not disk."""
    source: str | None = None
    """The secret (`secretName`) or configuration (`configMap.name`) a volume of either kind
    shows."""
    items: tuple[KeyToPath, ...] = ()
    """Empty: every key of the source, each as a file named after it."""
    default_mode: int | None = None
    """The mode of a secret or configMap volume's files (filled in: DEFAULT_SECRET_MODE or
    DEFAULT_CONFIG_MODE)."""


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    target_port: int
    """A container port number (a port name is resolved to its number)."""
    protocol: PortProtocol = PortProtocol.TCP
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Service:
    ports: tuple[ServicePort, ...]


@dataclass(frozen=True, slots=True)
class IngressRule:
    path: str
    """Requests whose path starts with this go to `service_port`."""
    service_port: int


@dataclass(frozen=True, slots=True)
class Ingress:
    host: str
    rules: tuple[IngressRule, ...]


class ScalingPolicyType(enum.Enum):
    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(enum.Enum):
    """Which of several policies applies: the one allowing the largest change, the smallest,
    or none (no scaling in that direction)."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    type: ScalingPolicyType
    value: int
    """Replicas (Pods) or percent of the replicas at the start of the period (Percent)."""
    period_seconds: int
    """The change this policy allows is counted over the last this-many seconds."""


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """One direction of Kubernetes' `behavior`: a stabilization window and rate policies."""

    stabilization_window_seconds: int
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]


DEFAULT_SCALE_UP = ScalingRules(
    0,
    SelectPolicy.MAX,
    (
        ScalingPolicy(ScalingPolicyType.PODS, 4, 15),
        ScalingPolicy(ScalingPolicyType.PERCENT, 100, 15),
    ),
)
"""Kubernetes' default: no window; add 4 replicas or double, whichever is more, per 15 s."""
DEFAULT_SCALE_DOWN = ScalingRules(
    300, SelectPolicy.MAX, (ScalingPolicy(ScalingPolicyType.PERCENT, 100, 15),)
)
"""Kubernetes' default: the highest recommendation of the last 5 minutes; no rate limit."""


@dataclass(frozen=True, slots=True)
class Autoscaling:
    min_replicas: int
    max_replicas: int
    target_cpu_utilization_percentage: int
    scale_up: ScalingRules | None = None
    """None: the manifest said nothing and DEFAULT_SCALE_UP applies."""
    scale_down: ScalingRules | None = None
    """None: the manifest said nothing and DEFAULT_SCALE_DOWN applies."""

    @property
    def scale_up_rules(self) -> ScalingRules:
        return self.scale_up if self.scale_up is not None else DEFAULT_SCALE_UP

    @property
    def scale_down_rules(self) -> ScalingRules:
        return self.scale_down if self.scale_down is not None else DEFAULT_SCALE_DOWN


@dataclass(frozen=True, slots=True)
class IntOrPercent:
    amount: int
    percent: bool

    def resolve(self, total: int, *, round_up: bool) -> int:
        if not self.percent:
            return self.amount
        scaled = total * self.amount
        return -(-scaled // 100) if round_up else scaled // 100

    def to_json(self) -> int | str:
        return f"{self.amount}%" if self.percent else self.amount

    @classmethod
    def from_json(cls, raw: int | str) -> IntOrPercent:
        """From what `to_json` writes (and the schema allows): 2 or "25%"."""
        if isinstance(raw, str):
            if not raw.endswith("%"):
                raise ValueError(f"{raw!r} is not a percentage")
            return cls(int(raw[:-1]), percent=True)
        return cls(raw, percent=False)


@dataclass(frozen=True, slots=True)
class RollingUpdate:
    max_surge: IntOrPercent = IntOrPercent(25, percent=True)
    max_unavailable: IntOrPercent = IntOrPercent(25, percent=True)

    def resolve(self, replicas: int) -> tuple[int, int]:
        """(max surge, max unavailable) for `replicas`, rounded as Kubernetes does: the surge
        up, the unavailable down, and one unavailable when both come to zero."""
        surge = self.max_surge.resolve(replicas, round_up=True)
        unavailable = self.max_unavailable.resolve(replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable


DOCKER_CONFIG_KEY = ".dockerconfigjson"
"""The key of an `imagePullSecrets` secret that holds its registry credentials."""


@dataclass(frozen=True, slots=True)
class References:
    """The owner's secrets and configurations a manifest names, each with the keys it names
    one by one (an `envFrom` or a volume without `items` takes every key, and names none)."""

    secrets: dict[str, frozenset[str]]
    configs: dict[str, frozenset[str]]


def references(spec: ApplicationSpec) -> References:
    """What `spec` reads of its owner's secrets and configurations."""
    secrets: dict[str, set[str]] = {}
    configs: dict[str, set[str]] = {}
    for c in spec.containers:
        for var in c.env:
            if var.secret_ref is not None:
                secrets.setdefault(var.secret_ref.name, set()).add(var.secret_ref.key)
            if var.config_ref is not None:
                configs.setdefault(var.config_ref.name, set()).add(var.config_ref.key)
        for source in c.env_from:
            if source.secret is not None:
                secrets.setdefault(source.secret, set())
            if source.config is not None:
                configs.setdefault(source.config, set())
    for v in spec.volumes:
        if v.source is None:
            continue
        held = secrets if v.kind is VolumeKind.SECRET else configs
        held.setdefault(v.source, set()).update(item.key for item in v.items)
    for name in spec.image_pull_secrets:
        secrets.setdefault(name, set()).add(DOCKER_CONFIG_KEY)
    return References(
        {k: frozenset(v) for k, v in secrets.items()}, {k: frozenset(v) for k, v in configs.items()}
    )


@dataclass(frozen=True, slots=True)
class ApplicationSpec:
    replicas: int
    node_class: NodeClass
    restart_policy: RestartPolicy
    containers: tuple[Container, ...]
    volumes: tuple[Volume, ...]
    service: Service | None
    ingress: Ingress | None
    autoscaling: Autoscaling | None
    strategy: RollingUpdate
    security_context: SecurityContext = NO_SECURITY_CONTEXT
    """Pod level: what every container runs with unless its own securityContext says otherwise."""
    image_pull_secrets: tuple[str, ...] = ()
    """The owner's secrets (`imagePullSecrets`) holding registry credentials for the images,
    each under `DOCKER_CONFIG_KEY` in Kubernetes' kubernetes.io/dockerconfigjson format."""
