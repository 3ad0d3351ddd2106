"""The application manifest (`statemesh/v1`, kind `Application`): a Kubernetes Deployment, Service
and Ingress in one document. Owns its JSON Schema, the checks the schema cannot express, its typed
form with integer quantities, and the canonical JSON the chain stores and hashes."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from importlib import resources
from typing import Any

import jsonschema
import yaml  # type: ignore[import-untyped]  # no stubs unless types-PyYAML is installed

from chain.errors import ChainError
from chain.primitives import Hash32, blake2_256
from chain.runtime.scheduler import AppDemand, Resources

API_VERSION = "statemesh/v1"
KIND = "Application"
MAX_MANIFEST_BYTES = 64 * 1024
"""Both the text a user submits and the canonical JSON the chain stores."""
MAX_DEPTH = 32
DEFAULT_ZONE = "statemesh.internal"
"""The DNS zone under which ingress hosts live unless the chain names another."""


def ingress_prefix(path: str) -> str:
    """The requests an ingress rule's path matches, as one prefix: `/api` and `/api/` match the
    same ones, so both are `/api`; `/` stays `/`."""
    return path.rstrip("/") or "/"


KIB = 1024
MIB = KIB * KIB
GIB = MIB * KIB
DEFAULT_CPU_REQUEST_MILLICORES = 100
"""Requested by a container that gives neither a cpu request nor a limit, so that every replica
takes some room and is billed for some."""
DEFAULT_MEMORY_REQUEST_BYTES = 64 * MIB
MIN_MEMORY_LIMIT_BYTES = 6 * MIB
"""The container engine refuses smaller memory limits."""
MAX_CPU_MILLICORES = 256_000
"""Per container, requests and limits alike."""
MAX_MEMORY_BYTES = 1024 * GIB
MAX_DISK_BYTES = 64 * 1024 * GIB
MAX_PIDS_LIMIT = 32768
"""The most processes and threads a manifest may give one container (`resources.limits.pids`):
Linux's traditional pid_max. Each node caps a replica, its containers together, lower
(`statemesh node --max-pids`)."""
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

FieldPath = tuple[str | int, ...]
"""Where in a manifest document an issue is: keys and list indexes from the top."""


class ManifestError(ChainError, ValueError):
    """A manifest that cannot be accepted, with every issue found as (path, message), the path
    written like `spec.containers[0].resources.limits.cpu`."""

    def __init__(self, issues: Iterable[tuple[FieldPath, str]]) -> None:
        unique = sorted(set(issues), key=lambda issue: (_path_key(issue[0]), issue[1]))
        self.issues: tuple[tuple[str, str], ...] = tuple(
            (format_path(path), message) for path, message in unique
        )
        shown = "; ".join(f"{path}: {message}" for path, message in self.issues)
        super().__init__(f"invalid manifest: {shown}")


def format_path(path: FieldPath) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = part if len(part) <= 64 else part[:64] + "..."
            text += f".{shown}" if text else shown
    return text or "manifest"


def _path_key(path: FieldPath) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in path)


# -- the typed manifest ----------------------------------------------------------------------


class NodeClass(enum.Enum):
    CPU = "cpu"
    GPU = "gpu"
    STORAGE = "storage"


class RestartPolicy(enum.Enum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class PortProtocol(enum.Enum):
    """The transport a port speaks."""

    TCP = "TCP"
    UDP = "UDP"


class VolumeKind(enum.Enum):
    EMPTY_DIR = "emptyDir"
    """Starts empty with each new copy of the replica."""
    PERSISTENT = "persistent"
    """Outlives replacements of the replica."""


@dataclass(frozen=True, slots=True)
class KeyRef:
    """One key of a named secret or configuration held by the chain."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class EnvVar:
    """Exactly one of `value`, `secret_ref` and `config_ref` is set."""

    name: str
    value: str | None = None
    secret_ref: KeyRef | None = None
    """Resolved only by the node that runs the container."""
    config_ref: KeyRef | None = None


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
    return _over(spec.security_context, container.security_context)


def _over(pod: SecurityContext, own: SecurityContext) -> SecurityContext:
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


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    kind: VolumeKind
    size_bytes: int | None
    """The size of a persistent volume; the optional size limit of an emptyDir."""
    memory: bool = False
    """An emptyDir in memory (`medium: Memory`): a tmpfs of its size limit, which counts as
    memory, not disk."""


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


@dataclass(frozen=True, slots=True)
class Autoscaling:
    min_replicas: int
    max_replicas: int
    target_cpu_utilization_percentage: int


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


@dataclass(frozen=True, slots=True)
class Manifest:
    """A checked manifest. Build it with `parse_manifest`, `decode_manifest` or
    `validate_manifest`, which guarantee every cross-reference holds."""

    name: str
    spec: ApplicationSpec

    def to_json(self) -> dict[str, Any]:
        return _manifest_json(self)

    def canonical_json(self) -> bytes:
        """Sorted keys, no whitespace, ASCII, every default filled in, names resolved to port
        numbers and quantities to integers: equal manifests have equal bytes."""
        return json.dumps(
            self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True
        ).encode("ascii")

    def hash(self) -> Hash32:
        """blake2b-256 of the canonical JSON."""
        return blake2_256(self.canonical_json())

    def replica_resources(self) -> Resources:
        """What one replica requests, rounded up to the scheduler's units: millicores, MiB,
        GiB (container disk plus every volume's size) and gpus."""
        containers = self.spec.containers
        memory = sum(c.resources.requests.memory_bytes for c in containers)
        memory += sum(v.size_bytes or 0 for v in self.spec.volumes if v.memory)
        disk = sum(c.resources.requests.disk_bytes for c in containers)
        disk += sum(v.size_bytes or 0 for v in self.spec.volumes if not v.memory)
        return Resources(
            cpu_millicores=sum(c.resources.requests.cpu_millicores for c in containers),
            memory_mib=-(-memory // MIB),
            disk_gib=-(-disk // GIB),
            gpus=sum(c.resources.requests.gpus for c in containers),
        )

    def demand(self, app: str, revision: int) -> AppDemand:
        """What the scheduler needs to place this manifest's replicas as application `app`."""
        return AppDemand(
            app,
            revision,
            self.spec.replicas,
            self.spec.node_class.value,
            self.replica_resources(),
        )


# -- reading text ----------------------------------------------------------------------------


def parse_manifest(text: str | bytes, *, zone: str = DEFAULT_ZONE) -> Manifest:
    """A manifest from YAML or JSON text (JSON when it starts with '{'). YAML is for clients:
    the chain reads only JSON (`decode_manifest`) and stores the canonical form."""
    raw = _bounded_bytes(text)
    if raw.lstrip().startswith(b"{"):
        return validate_manifest(_load_json(raw), zone=zone)
    return validate_manifest(_load_yaml(raw), zone=zone)


def decode_manifest(data: bytes, *, zone: str = DEFAULT_ZONE) -> Manifest:
    """A manifest from JSON bytes: what the runtime accepts in a transaction or reads back."""
    return validate_manifest(_load_json(_bounded_bytes(data)), zone=zone)


def _bounded_bytes(text: str | bytes) -> bytes:
    if isinstance(text, str):
        if len(text) > MAX_MANIFEST_BYTES:
            raise ManifestError([((), f"is more than {MAX_MANIFEST_BYTES} bytes")])
        try:
            text = text.encode("utf-8")
        except UnicodeEncodeError:
            raise ManifestError([((), "is not valid Unicode text")]) from None
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError([((), f"is {len(text)} bytes, more than {MAX_MANIFEST_BYTES}")])
    return text


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _load_json(raw: bytes) -> object:
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                duplicates.append(key)
            result[key] = value
        return result

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError([((), "is not UTF-8 text")]) from None
    try:
        # Decimals, never floats: "0.5" cpu stays exact and the runtime stays float-free.
        data = json.loads(
            text, parse_float=Decimal, parse_constant=_refuse_constant, object_pairs_hook=pairs
        )
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ManifestError([((), f"is not valid JSON: {exc.msg} at {where}")]) from None
    except ValueError as exc:  # a NaN or Infinity, or an integer of thousands of digits
        raise ManifestError([((), f"is not valid JSON: {exc}")]) from None
    except RecursionError:
        raise ManifestError([((), f"is nested more than {MAX_DEPTH} levels deep")]) from None
    if duplicates:
        raise ManifestError(
            [((), f"repeats the key {_show(key)} in one object") for key in duplicates]
        )
    return data


def _load_yaml(raw: bytes) -> object:
    node = _read_yaml(lambda: yaml.compose(raw, Loader=yaml.SafeLoader))
    _check_yaml_node(node, (), set())
    return _read_yaml(lambda: yaml.safe_load(raw))


def _read_yaml(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ManifestError([((), f"is not valid YAML: {exc.problem}{where}")]) from None
    except yaml.YAMLError as exc:
        shown = " ".join(str(exc).split())
        raise ManifestError([((), f"is not valid YAML: {shown}")]) from None
    except ValueError as exc:  # an integer of thousands of digits
        raise ManifestError([((), f"is not valid YAML: {exc}")]) from None
    except RecursionError:
        raise ManifestError([((), f"is nested more than {MAX_DEPTH} levels deep")]) from None


def _check_yaml_node(node: Any, path: FieldPath, seen: set[int]) -> None:
    """Refuse aliases (a few lines of them expand to gigabytes) and repeated keys, which the
    YAML loader would otherwise resolve silently to the last one."""
    if node is None:
        return
    if id(node) in seen:
        raise ManifestError([(path, "uses a YAML alias; write the value out")])
    seen.add(id(node))
    if len(path) > MAX_DEPTH:
        raise ManifestError([(path, f"is nested more than {MAX_DEPTH} levels deep")])
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else ""
            if key in keys:
                raise ManifestError([(path, f"repeats the key {_show(key)}")])
            keys.add(key)
            _check_yaml_node(key_node, path, seen)
            _check_yaml_node(value_node, (*path, key), seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_yaml_node(item, (*path, index), seen)


# -- validation ------------------------------------------------------------------------------


def _load_schema() -> dict[str, Any]:
    text = resources.files("chain.runtime").joinpath("manifest.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


SCHEMA: dict[str, Any] = _load_schema()
"""The published JSON Schema (draft 2020-12) of a manifest."""
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def validate_manifest(data: object, *, zone: str = DEFAULT_ZONE) -> Manifest:
    """Check decoded JSON (or YAML) data against the schema, then against every rule the schema
    cannot express, and build the typed manifest. Raises one ManifestError listing every issue
    (the semantic rules are checked once the document has the schema's shape)."""
    issues: list[tuple[FieldPath, str]] = []
    plain = _plain(data, (), issues)
    if issues:
        raise ManifestError(issues)
    issues.extend(_schema_issues(plain))
    if issues:
        raise ManifestError(issues)
    builder = _Builder(zone)
    manifest = builder.manifest(plain)
    if builder.issues:
        raise ManifestError(builder.issues)
    size = len(manifest.canonical_json())
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(
            [((), f"has a canonical form of {size} bytes, more than {MAX_MANIFEST_BYTES}")]
        )
    return manifest


_SURROGATE = re.compile("[\ud800-\udfff]")


def _plain(value: object, path: FieldPath, issues: list[tuple[FieldPath, str]]) -> object:
    """The data as JSON values only (objects with string keys, lists, strings, integers,
    decimals, booleans, null), within the depth bound. YAML floats become exact decimals."""
    if len(path) > MAX_DEPTH:
        issues.append((path, f"is nested more than {MAX_DEPTH} levels deep"))
        return None
    if isinstance(value, dict):
        result: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str) or _SURROGATE.search(key):
                issues.append(((*path, ascii(key)), "is not a text key"))
                continue
            result[key] = _plain(item, (*path, key), issues)
        return result
    if isinstance(value, list | tuple):
        return [_plain(item, (*path, index), issues) for index, item in enumerate(value)]
    if isinstance(value, str):
        if _SURROGATE.search(value):
            issues.append((path, "is not valid Unicode text"))
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            issues.append((path, "is not a finite number"))
            return None
        # repr is the shortest text that reads back as the same float: "0.5", not 0.5000001.
        return Decimal(repr(value))
    if value is None or isinstance(value, bool | int | Decimal):
        return value
    issues.append((path, f"is a {type(value).__name__}, not a JSON value (quote it)"))
    return None


_TYPE_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _schema_issues(data: object) -> list[tuple[FieldPath, str]]:
    """The schema's findings in our own words, so that messages do not depend on the version
    of the validator (they can end up in chain events)."""
    # One finding per value, the most basic: a value of the wrong type also breaks the rules
    # about its contents, and a name that is too long also breaks its pattern.
    first: dict[FieldPath, Any] = {}
    for error in _VALIDATOR.iter_errors(data):
        path: FieldPath = tuple(error.absolute_path)
        rank = _RANK.get(error.validator, len(_RANK))
        if error.validator in ("required", "additionalProperties"):
            path = (*path, "", error.validator)  # about the fields below, not the value
        if path not in first or rank < _RANK.get(first[path].validator, len(_RANK)):
            first[path] = error
    issues: list[tuple[FieldPath, str]] = []
    for error in first.values():
        path = tuple(error.absolute_path)
        kind = error.validator
        expected = error.validator_value
        instance = error.instance
        if kind == "required":
            issues.extend(
                ((*path, name), "is required") for name in expected if name not in instance
            )
        elif kind == "additionalProperties":
            known = error.schema.get("properties", {})
            issues.extend(
                ((*path, key), "is not a known field") for key in instance if key not in known
            )
        else:
            issues.append((path, _schema_message(kind, expected, instance, error.schema)))
    return issues


_RANK = {
    kind: rank
    for rank, kind in enumerate(
        ("type", "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "const",
         "enum", "pattern", "oneOf")
    )
}  # fmt: skip


def _schema_message(kind: str, expected: Any, instance: Any, schema: dict[str, Any]) -> str:
    if kind == "type":
        names = [expected] if isinstance(expected, str) else expected
        return "must be " + " or ".join(_TYPE_NAMES[name] for name in names)
    if kind == "const":
        return f"must be {expected}"
    if kind == "enum":
        return f"{_show(instance)} is not one of {', '.join(expected)}"
    if kind == "pattern":
        return f"{_show(instance)} is not {schema['description']}"
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    if kind == "maxLength":
        return f"must be at most {expected} characters"
    if kind == "minimum":
        return f"{_show(instance)} is less than {expected}"
    if kind == "maximum":
        return f"{_show(instance)} is more than {expected}"
    if kind == "minItems":
        return f"needs at least {expected} item{'s' if expected != 1 else ''}"
    if kind == "maxItems":
        return f"has more than {expected} items"
    if kind == "oneOf":
        names = [branch["required"][0] for branch in expected]
        return f"needs exactly one of {', '.join(names)}"
    raise ValueError(f"the manifest schema uses {kind!r}, which has no message")


def _show(value: object) -> str:
    """A bounded rendering of a user's value for an error message."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        return "a number of more than 40 digits"
    if isinstance(value, bool | int | Decimal) or value is None:
        text = str(value) if isinstance(value, Decimal) else json.dumps(value)
        return text if len(text) <= 40 else text[:40] + "..."
    return "a list" if isinstance(value, list) else "an object"


# -- quantities ------------------------------------------------------------------------------

_QUANTITY = re.compile(r"([0-9]+)(?:\.([0-9]+))?([A-Za-z]*)")
_MILLICORES_PER = {"": 1000, "m": 1}
_BYTES_PER = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip
_CPU_FORM = 'cores such as 2 or "0.5", or millicores such as "500m"'
_BYTES_FORM = 'bytes, or a number with a suffix such as "256Mi", "1Gi" or "500M"'


def _scaled(value: object, units: dict[str, int]) -> tuple[int, int] | None:
    """`value` times its suffix's unit, as an exact fraction (numerator, denominator)."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None
    if isinstance(value, int) and not 0 <= value < 10**30:
        return None
    text = value if isinstance(value, str) else str(value)
    match = _QUANTITY.fullmatch(text) if len(text) <= 32 else None
    if match is None or match.group(3) not in units:
        return None
    whole, fraction, suffix = match.group(1), match.group(2) or "", match.group(3)
    return int(whole + fraction) * units[suffix], 10 ** len(fraction)


def format_cpu(millicores: int) -> str:
    return f"{millicores}m"


def parse_bytes(text: str) -> int:
    """A byte quantity as manifests write them ("10Gi", "500M", "1024"), rounded up to a whole
    byte; `ValueError` (saying the accepted form) for anything else."""
    scaled = _scaled(text, _BYTES_PER)
    if scaled is None:
        raise ValueError(f"{text!r} is not a byte quantity ({_BYTES_FORM})")
    return -(-scaled[0] // scaled[1])


def format_bytes(amount: int) -> str:
    """The largest binary unit that divides `amount` exactly: 268435456 is "256Mi"."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BYTES_PER[suffix]
        if amount and amount % unit == 0:
            return f"{amount // unit}{suffix}"
    return f"{amount} bytes"


# -- building the typed manifest -------------------------------------------------------------


class _Builder:
    """Builds a manifest from schema-valid data and collects every rule it breaks."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self.issues: list[tuple[FieldPath, str]] = []

    def fail(self, path: FieldPath, message: str) -> None:
        self.issues.append((path, message))

    def manifest(self, data: Any) -> Manifest:
        raw = data["spec"]
        if "imagePullSecrets" in raw:
            self.fail(
                ("spec", "imagePullSecrets"),
                "registry credentials come from secrets held by the chain, which it does not "
                "hold yet: use an image that can be pulled without credentials",
            )
        node_class = NodeClass(raw.get("nodeClass", NodeClass.CPU.value))
        pod_context = self.security_context(
            raw.get("securityContext", {}), ("spec", "securityContext")
        )
        containers = tuple(
            self.container(item, ("spec", "containers", i), node_class)
            for i, item in enumerate(raw["containers"])
        )
        self.check_containers(containers)
        self.check_run_as_non_root(pod_context, containers)
        volumes = tuple(
            self.volume(item, ("spec", "volumes", i))
            for i, item in enumerate(raw.get("volumes", []))
        )
        self.check_mounts(containers, volumes)
        service = self.service(raw["service"], containers) if "service" in raw else None
        ingress = self.ingress(raw["ingress"], service) if "ingress" in raw else None
        replicas: int = raw.get("replicas", 1)
        autoscaling = (
            self.autoscaling(raw["autoscaling"], replicas) if "autoscaling" in raw else None
        )
        spec = ApplicationSpec(
            replicas=replicas,
            node_class=node_class,
            restart_policy=RestartPolicy(raw.get("restartPolicy", RestartPolicy.ALWAYS.value)),
            containers=containers,
            volumes=volumes,
            service=service,
            ingress=ingress,
            autoscaling=autoscaling,
            strategy=self.strategy(raw.get("strategy", {})),
            security_context=pod_context,
        )
        return Manifest(data["metadata"]["name"], spec)

    # -- containers ------------------------------------------------------------------------

    def container(self, raw: Any, path: FieldPath, node_class: NodeClass) -> Container:
        ports = tuple(
            ContainerPort(p["containerPort"], PortProtocol(p.get("protocol", "TCP")), p.get("name"))
            for p in raw.get("ports", [])
        )
        env: list[EnvVar] = []
        first: dict[str, int] = {}
        for j, item in enumerate(raw.get("env", [])):
            name = item["name"]
            if name in first:
                self.fail(
                    (*path, "env", j, "name"), f"{name!r} is already set by env[{first[name]}]"
                )
            first.setdefault(name, j)
            env.append(
                EnvVar(
                    name,
                    item.get("value"),
                    _key_ref(item.get("secretRef")),
                    _key_ref(item.get("configRef")),
                )
            )
        probes = {
            key: self.probe(raw[key], (*path, key), ports, key != "readinessProbe")
            for key in ("livenessProbe", "readinessProbe", "startupProbe")
            if key in raw
        }
        return Container(
            name=raw["name"],
            image=raw["image"],
            command=tuple(raw.get("command", [])),
            args=tuple(raw.get("args", [])),
            env=tuple(env),
            ports=ports,
            resources=self.resources(raw.get("resources", {}), (*path, "resources"), node_class),
            liveness_probe=probes.get("livenessProbe"),
            readiness_probe=probes.get("readinessProbe"),
            startup_probe=probes.get("startupProbe"),
            volume_mounts=tuple(
                VolumeMount(m["name"], m["mountPath"]) for m in raw.get("volumeMounts", [])
            ),
            security_context=self.security_context(
                raw.get("securityContext", {}), (*path, "securityContext")
            ),
        )

    def check_containers(self, containers: tuple[Container, ...]) -> None:
        names: dict[str, int] = {}
        numbers: dict[tuple[int, PortProtocol], FieldPath] = {}
        port_names: dict[str, FieldPath] = {}
        for i, c in enumerate(containers):
            if c.name in names:
                self.fail(
                    ("spec", "containers", i, "name"),
                    f"{c.name!r} is already the name of spec.containers[{names[c.name]}]",
                )
            names.setdefault(c.name, i)
            for j, port in enumerate(c.ports):
                here: FieldPath = ("spec", "containers", i, "ports", j)
                key = (port.container_port, port.protocol)
                # The containers of a replica share its network namespace: a port is taken
                # once per replica.
                if key in numbers:
                    self.fail(
                        (*here, "containerPort"),
                        f"{port.container_port}/{port.protocol.value} is already declared at "
                        f"{format_path(numbers[key])}",
                    )
                numbers.setdefault(key, here)
                if port.name is not None:
                    if port.name in port_names:
                        self.fail(
                            (*here, "name"),
                            f"{port.name!r} is already the name of "
                            f"{format_path(port_names[port.name])}",
                        )
                    port_names.setdefault(port.name, here)

    def security_context(self, raw: Any, path: FieldPath) -> SecurityContext:
        """Pod or container level (the schema keeps readOnlyRootFilesystem to the latter)."""
        for key, what in (
            ("allowPrivilegeEscalation", "privilege escalation is never allowed"),
            ("privileged", "privileged containers are never allowed"),
        ):
            if raw.get(key) is True:
                self.fail((*path, key), f"{what}: it may only be false")
        capabilities = raw.get("capabilities", {})
        add = drop = None
        if "add" in capabilities:
            add = self.capability_names(capabilities["add"], (*path, "capabilities", "add"), True)
        if "drop" in capabilities:
            drop = self.capability_names(
                capabilities["drop"], (*path, "capabilities", "drop"), False
            )
        return SecurityContext(
            run_as_user=raw.get("runAsUser"),
            run_as_group=raw.get("runAsGroup"),
            run_as_non_root=raw.get("runAsNonRoot"),
            read_only_root_filesystem=raw.get("readOnlyRootFilesystem"),
            capabilities_add=add,
            capabilities_drop=drop,
        )

    def capability_names(self, names: list[str], path: FieldPath, adding: bool) -> tuple[str, ...]:
        """Sorted and without repeats: the order of a capability list means nothing."""
        for k, name in enumerate(names):
            if name not in CAPABILITIES and name != "ALL":
                self.fail(
                    (*path, k),
                    f"{_show(name)} is not a Linux capability (write it as Kubernetes does, "
                    "without CAP_, such as NET_BIND_SERVICE)",
                )
            elif adding and name not in ADDABLE_CAPABILITIES:
                self.fail(
                    (*path, k),
                    f"{name} may not be added: a container may add only "
                    + ", ".join(sorted(ADDABLE_CAPABILITIES)),
                )
        return tuple(sorted(set(names)))

    def check_run_as_non_root(
        self, pod: SecurityContext, containers: tuple[Container, ...]
    ) -> None:
        """runAsNonRoot true forbids runAsUser 0, at pod level and in each container with what
        it takes from the pod level."""
        pod_path: FieldPath = ("spec", "securityContext")
        levels = [(pod_path, pod)] + [
            (("spec", "containers", i, "securityContext"), c.security_context)
            for i, c in enumerate(containers)
        ]
        for path, own in levels:
            merged = _over(pod, own)
            if merged.run_as_non_root and merged.run_as_user == 0:
                user_at = path if own.run_as_user is not None else pod_path
                non_root_at = path if own.run_as_non_root is not None else pod_path
                self.fail(
                    (*user_at, "runAsUser"),
                    "is 0 (root), but runAsNonRoot is true at "
                    + format_path((*non_root_at, "runAsNonRoot")),
                )

    def resources(self, raw: Any, path: FieldPath, node_class: NodeClass) -> ContainerResources:
        given: dict[str, dict[str, tuple[int | None, FieldPath]]] = {}
        for kind in ("requests", "limits"):
            values = raw.get(kind, {})
            here: FieldPath = (*path, kind)
            if "ephemeral-storage" in values and "disk" in values:
                self.fail((*here, "disk"), "repeats ephemeral-storage; give only one of the two")
            disk_key = "disk" if "disk" in values else "ephemeral-storage"
            amounts: dict[str, tuple[int | None, FieldPath]] = {}
            if "cpu" in values:
                amounts["cpu"] = (self.cpu(values["cpu"], (*here, "cpu")), (*here, "cpu"))
            for field, key, bound in (
                ("memory", "memory", MAX_MEMORY_BYTES),
                ("disk", disk_key, MAX_DISK_BYTES),
            ):
                if key in values:
                    amounts[field] = (
                        self.byte_amount(values[key], (*here, key), field, bound),
                        (*here, key),
                    )
            if "gpu" in values:
                amounts["gpu"] = (values["gpu"], (*here, "gpu"))
            given[kind] = amounts
        requests, limits = given["requests"], given["limits"]
        defaults = {"cpu": DEFAULT_CPU_REQUEST_MILLICORES, "memory": DEFAULT_MEMORY_REQUEST_BYTES}
        chosen: dict[str, int] = {}
        for field in ("cpu", "memory", "disk", "gpu"):
            # As in Kubernetes, a missing request is the limit; with neither, a default.
            request = requests.get(field, limits.get(field, (defaults.get(field, 0), ())))[0]
            limit, where = limits.get(field, (None, ()))
            chosen[field] = request or 0
            if request is not None and limit is not None and limit < request:
                shown = _FORMATS[field]
                self.fail(where, f"the limit {shown(limit)} is below the request {shown(request)}")
        memory_limit, where = limits.get("memory", (None, ()))
        if memory_limit is not None and memory_limit < MIN_MEMORY_LIMIT_BYTES:
            self.fail(where, f"{format_bytes(memory_limit)} is below the least memory limit, 6Mi")
        if node_class is not NodeClass.GPU:
            for amounts in (requests, limits):
                gpus, where = amounts.get("gpu", (0, ()))
                if gpus:
                    self.fail(
                        where,
                        f"asks for gpus, which only nodeClass gpu offers (spec.nodeClass is "
                        f"{node_class.value})",
                    )
        return ContainerResources(
            ResourceRequests(chosen["cpu"], chosen["memory"], chosen["disk"], chosen["gpu"]),
            ResourceLimits(
                cpu_millicores=limits["cpu"][0] if "cpu" in limits else None,
                memory_bytes=limits["memory"][0] if "memory" in limits else None,
                disk_bytes=limits["disk"][0] if "disk" in limits else None,
                gpus=limits["gpu"][0] if "gpu" in limits else None,
                pids=raw.get("limits", {}).get("pids"),
            ),
        )

    def cpu(self, value: object, path: FieldPath) -> int | None:
        scaled = _scaled(value, _MILLICORES_PER)
        if scaled is None:
            self.fail(path, f"{_show(value)} is not a cpu quantity ({_CPU_FORM})")
            return None
        numerator, denominator = scaled
        if numerator % denominator:
            self.fail(path, f"{_show(value)} is finer than a millicore")
            return None
        millicores = numerator // denominator
        if millicores > MAX_CPU_MILLICORES:
            self.fail(path, f"{_show(value)} is more than {MAX_CPU_MILLICORES // 1000} cores")
            return None
        return millicores

    def byte_amount(self, value: object, path: FieldPath, what: str, bound: int) -> int | None:
        scaled = _scaled(value, _BYTES_PER)
        if scaled is None:
            self.fail(path, f"{_show(value)} is not a {what} quantity ({_BYTES_FORM})")
            return None
        numerator, denominator = scaled
        amount = -(-numerator // denominator)  # fractions of a byte round up, as in Kubernetes
        if amount > bound:
            self.fail(path, f"{_show(value)} is more than {format_bytes(bound)}")
            return None
        return amount

    def probe(
        self, raw: Any, path: FieldPath, ports: tuple[ContainerPort, ...], once: bool
    ) -> Probe:
        action: ProbeAction
        if "httpGet" in raw:
            port = self.probe_port(raw["httpGet"]["port"], (*path, "httpGet", "port"), ports)
            action = HttpGetAction(port, raw["httpGet"].get("path", "/"))
        elif "tcpSocket" in raw:
            port = self.probe_port(raw["tcpSocket"]["port"], (*path, "tcpSocket", "port"), ports)
            action = TcpSocketAction(port)
        else:
            action = ExecAction(tuple(raw["exec"]["command"]))
        success = raw.get("successThreshold", 1)
        if once and success != 1:
            self.fail((*path, "successThreshold"), "must be 1 for liveness and startup probes")
        return Probe(
            action,
            raw.get("initialDelaySeconds", 0),
            raw.get("periodSeconds", 10),
            raw.get("timeoutSeconds", 1),
            success,
            raw.get("failureThreshold", 3),
        )

    def probe_port(self, ref: int | str, path: FieldPath, ports: tuple[ContainerPort, ...]) -> int:
        declared = ", ".join(f"{p.container_port}/{p.protocol.value}" for p in ports) or "none"
        if isinstance(ref, str):
            found = [p for p in ports if p.name == ref]
            missing = f"no port of this container is named {ref!r} (it declares {declared})"
        else:
            found = sorted(
                (p for p in ports if p.container_port == ref), key=lambda p: p.protocol.value
            )
            missing = f"port {ref} is not declared by this container (it declares {declared})"
        if not found:
            self.fail(path, missing)
            return ref if isinstance(ref, int) else 0
        port = found[0]
        if port.protocol is not PortProtocol.TCP:
            self.fail(path, f"port {port.container_port} is UDP; probes connect over TCP")
        return port.container_port

    # -- volumes ---------------------------------------------------------------------------

    def volume(self, raw: Any, path: FieldPath) -> Volume:
        if "persistent" in raw:
            size = self.byte_amount(
                raw["persistent"]["size"], (*path, "persistent", "size"), "disk", MAX_DISK_BYTES
            )
            if size == 0:
                self.fail((*path, "persistent", "size"), "must be more than 0")
            return Volume(raw["name"], VolumeKind.PERSISTENT, size)
        limit = raw["emptyDir"].get("sizeLimit")
        memory = raw["emptyDir"].get("medium", "") == "Memory"
        size = None
        if limit is not None:
            size = self.byte_amount(limit, (*path, "emptyDir", "sizeLimit"), "disk", MAX_DISK_BYTES)
        if memory and not size:
            self.fail(
                (*path, "emptyDir", "sizeLimit"),
                "an emptyDir in memory needs a sizeLimit (it is a tmpfs of that size)",
            )
        return Volume(raw["name"], VolumeKind.EMPTY_DIR, size, memory)

    def check_mounts(self, containers: tuple[Container, ...], volumes: tuple[Volume, ...]) -> None:
        declared: dict[str, int] = {}
        for i, v in enumerate(volumes):
            if v.name in declared:
                self.fail(
                    ("spec", "volumes", i, "name"),
                    f"{v.name!r} is already the name of spec.volumes[{declared[v.name]}]",
                )
            declared.setdefault(v.name, i)
        # A volume is mounted at one path in every container that mounts it, and a path holds
        # one volume: a replica's volumes map onto the orchestrator's one path per volume.
        path_of: dict[str, tuple[str, FieldPath]] = {}
        volume_at: dict[str, str] = {}
        for i, c in enumerate(containers):
            mounted: set[str] = set()
            for j, m in enumerate(c.volume_mounts):
                here: FieldPath = ("spec", "containers", i, "volumeMounts", j)
                if m.name not in declared:
                    self.fail((*here, "name"), f"no volume named {m.name!r} in spec.volumes")
                    continue
                if m.name in mounted:
                    self.fail((*here, "name"), f"volume {m.name!r} is already mounted here")
                    continue
                mounted.add(m.name)
                first = path_of.setdefault(m.name, (m.mount_path, here))
                if first[0] != m.mount_path:
                    self.fail(
                        (*here, "mountPath"),
                        f"volume {m.name!r} is mounted at {first[0]} by {format_path(first[1])}; "
                        "mount it at the same path in every container",
                    )
                    continue
                owner = volume_at.setdefault(m.mount_path, m.name)
                if owner != m.name:
                    self.fail(
                        (*here, "mountPath"), f"{m.mount_path} is where volume {owner!r} is mounted"
                    )

    # -- service, ingress, scaling ---------------------------------------------------------

    def service(self, raw: Any, containers: tuple[Container, ...]) -> Service:
        everywhere = [p for c in containers for p in c.ports]
        ports: list[ServicePort] = []
        numbers: dict[tuple[int, PortProtocol], int] = {}
        names: dict[str, int] = {}
        for k, item in enumerate(raw["ports"]):
            here: FieldPath = ("spec", "service", "ports", k)
            protocol = PortProtocol(item.get("protocol", "TCP"))
            number = item["port"]
            if (number, protocol) in numbers:
                self.fail(
                    (*here, "port"),
                    f"{number}/{protocol.value} is already declared at spec.service.ports"
                    f"[{numbers[(number, protocol)]}]",
                )
            numbers.setdefault((number, protocol), k)
            name = item.get("name")
            if name is not None:
                if name in names:
                    self.fail(
                        (*here, "name"),
                        f"{name!r} is already the name of spec.service.ports[{names[name]}]",
                    )
                names.setdefault(name, k)
            target = self.target_port(
                item.get("targetPort", number), (*here, "targetPort"), protocol, everywhere
            )
            ports.append(ServicePort(number, target, protocol, name))
        return Service(tuple(ports))

    def target_port(
        self, ref: int | str, path: FieldPath, protocol: PortProtocol, ports: list[ContainerPort]
    ) -> int:
        if isinstance(ref, str):
            found = [p for p in ports if p.name == ref]
            if not found:
                self.fail(path, f"no container port is named {ref!r}")
                return 0
        else:
            found = [p for p in ports if p.container_port == ref]
            same = [p for p in found if p.protocol is protocol]
            if not found:
                self.fail(path, f"port {ref} is not a container port")
                return ref
            found = same or found
        port = found[0]
        if port.protocol is not protocol:
            self.fail(
                path,
                f"container port {port.container_port} is {port.protocol.value}, the service "
                f"port {protocol.value}",
            )
        return port.container_port

    def ingress(self, raw: Any, service: Service | None) -> Ingress:
        host: str = raw["host"]
        if not host.endswith("." + self.zone):
            self.fail(("spec", "ingress", "host"), f"{host!r} is not a name under {self.zone}")
        if service is None:
            self.fail(("spec", "ingress"), "routes to the service: spec.service is required")
        rules: list[IngressRule] = []
        paths: dict[str, int] = {}
        for k, item in enumerate(raw["rules"]):
            here: FieldPath = ("spec", "ingress", "rules", k)
            route = item.get("path", "/")
            same = ingress_prefix(route)
            if same in paths:
                self.fail(
                    (*here, "path"),
                    f"{route} matches what spec.ingress.rules[{paths[same]}] matches",
                )
            paths.setdefault(same, k)
            ref = item["servicePort"]
            port = self.service_port(ref, (*here, "servicePort"), service) if service else 0
            rules.append(IngressRule(route, port))
        return Ingress(host, tuple(rules))

    def service_port(self, ref: int | str, path: FieldPath, service: Service) -> int:
        if isinstance(ref, str):
            found = [p for p in service.ports if p.name == ref]
            missing = f"no service port is named {ref!r}"
        else:
            found = sorted(
                (p for p in service.ports if p.port == ref), key=lambda p: p.protocol.value
            )
            missing = f"port {ref} is not a service port"
        if not found:
            self.fail(path, missing)
            return 0
        if found[0].protocol is not PortProtocol.TCP:
            self.fail(path, f"service port {found[0].port} is UDP; ingress routes HTTP over TCP")
        return found[0].port

    def autoscaling(self, raw: Any, replicas: int) -> Autoscaling:
        least, most = raw.get("minReplicas", 1), raw["maxReplicas"]
        if least > most:
            self.fail(
                ("spec", "autoscaling", "minReplicas"), f"{least} is above maxReplicas {most}"
            )
        elif not least <= replicas <= most:
            self.fail(
                ("spec", "replicas"),
                f"{replicas} is outside the autoscaling range {least}..{most}",
            )
        return Autoscaling(least, most, raw.get("targetCPUUtilizationPercentage", 80))

    def strategy(self, raw: Any) -> RollingUpdate:
        rolling = raw.get("rollingUpdate", {})
        surge = _int_or_percent(rolling.get("maxSurge", "25%"))
        unavailable = _int_or_percent(rolling.get("maxUnavailable", "25%"))
        if surge.amount == 0 and unavailable.amount == 0:
            self.fail(
                ("spec", "strategy", "rollingUpdate"),
                "maxSurge and maxUnavailable cannot both be 0",
            )
        return RollingUpdate(surge, unavailable)


_FORMATS: dict[str, Callable[[int], str]] = {
    "cpu": format_cpu,
    "memory": format_bytes,
    "disk": format_bytes,
    "gpu": str,
}


def _key_ref(raw: Any) -> KeyRef | None:
    return None if raw is None else KeyRef(raw["name"], raw["key"])


def _int_or_percent(raw: int | str) -> IntOrPercent:
    if isinstance(raw, str):
        return IntOrPercent(int(raw[:-1]), percent=True)
    return IntOrPercent(raw, percent=False)


# -- the canonical form ----------------------------------------------------------------------


def _manifest_json(manifest: Manifest) -> dict[str, Any]:
    spec = manifest.spec
    body: dict[str, Any] = {
        "replicas": spec.replicas,
        "nodeClass": spec.node_class.value,
        "restartPolicy": spec.restart_policy.value,
        "containers": [_container_json(c) for c in spec.containers],
        "volumes": [_volume_json(v) for v in spec.volumes],
        "strategy": {
            "rollingUpdate": {
                "maxSurge": spec.strategy.max_surge.to_json(),
                "maxUnavailable": spec.strategy.max_unavailable.to_json(),
            }
        },
    }
    if spec.service is not None:
        body["service"] = {"ports": [_service_port_json(p) for p in spec.service.ports]}
    if spec.ingress is not None:
        body["ingress"] = {
            "host": spec.ingress.host,
            "rules": [{"path": r.path, "servicePort": r.service_port} for r in spec.ingress.rules],
        }
    if spec.autoscaling is not None:
        scaling = spec.autoscaling
        body["autoscaling"] = {
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "targetCPUUtilizationPercentage": scaling.target_cpu_utilization_percentage,
        }
    if spec.security_context != NO_SECURITY_CONTEXT:
        body["securityContext"] = _security_context_json(spec.security_context)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": manifest.name},
        "spec": body,
    }


def _container_json(c: Container) -> dict[str, Any]:
    requests = c.resources.requests
    limits = c.resources.limits
    limit_json: dict[str, Any] = {}
    if limits.cpu_millicores is not None:
        limit_json["cpu"] = format_cpu(limits.cpu_millicores)
    if limits.memory_bytes is not None:
        limit_json["memory"] = limits.memory_bytes
    if limits.disk_bytes is not None:
        limit_json["ephemeral-storage"] = limits.disk_bytes
    if limits.gpus is not None:
        limit_json["gpu"] = limits.gpus
    if limits.pids is not None:
        # Only when given: a manifest without it keeps the canonical form (and hash) it had.
        limit_json["pids"] = limits.pids
    result: dict[str, Any] = {
        "name": c.name,
        "image": c.image,
        "command": list(c.command),
        "args": list(c.args),
        "env": [_env_json(e) for e in c.env],
        "ports": [_port_json(p) for p in c.ports],
        "resources": {
            "requests": {
                "cpu": format_cpu(requests.cpu_millicores),
                "memory": requests.memory_bytes,
                "ephemeral-storage": requests.disk_bytes,
                "gpu": requests.gpus,
            },
            "limits": limit_json,
        },
        "volumeMounts": [{"name": m.name, "mountPath": m.mount_path} for m in c.volume_mounts],
    }
    for key, probe in (
        ("livenessProbe", c.liveness_probe),
        ("readinessProbe", c.readiness_probe),
        ("startupProbe", c.startup_probe),
    ):
        if probe is not None:
            result[key] = _probe_json(probe)
    if c.security_context != NO_SECURITY_CONTEXT:
        result["securityContext"] = _security_context_json(c.security_context)
    return result


def _security_context_json(context: SecurityContext) -> dict[str, Any]:
    """Only the fields that are set: a manifest without a securityContext keeps the canonical
    form (and hash) it had before securityContext existed."""
    result: dict[str, Any] = {}
    for key, value in (
        ("runAsUser", context.run_as_user),
        ("runAsGroup", context.run_as_group),
        ("runAsNonRoot", context.run_as_non_root),
        ("readOnlyRootFilesystem", context.read_only_root_filesystem),
    ):
        if value is not None:
            result[key] = value
    capabilities: dict[str, Any] = {}
    if context.capabilities_add is not None:
        capabilities["add"] = list(context.capabilities_add)
    if context.capabilities_drop is not None:
        capabilities["drop"] = list(context.capabilities_drop)
    if capabilities:
        result["capabilities"] = capabilities
    return result


def _env_json(e: EnvVar) -> dict[str, Any]:
    result: dict[str, Any] = {"name": e.name}
    if e.value is not None:
        result["value"] = e.value
    if e.secret_ref is not None:
        result["secretRef"] = {"name": e.secret_ref.name, "key": e.secret_ref.key}
    if e.config_ref is not None:
        result["configRef"] = {"name": e.config_ref.name, "key": e.config_ref.key}
    return result


def _port_json(p: ContainerPort) -> dict[str, Any]:
    result: dict[str, Any] = {"containerPort": p.container_port, "protocol": p.protocol.value}
    if p.name is not None:
        result["name"] = p.name
    return result


def _service_port_json(p: ServicePort) -> dict[str, Any]:
    result: dict[str, Any] = {
        "port": p.port,
        "targetPort": p.target_port,
        "protocol": p.protocol.value,
    }
    if p.name is not None:
        result["name"] = p.name
    return result


def _probe_json(probe: Probe) -> dict[str, Any]:
    action = probe.action
    result: dict[str, Any] = {
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "successThreshold": probe.success_threshold,
        "failureThreshold": probe.failure_threshold,
    }
    if isinstance(action, HttpGetAction):
        result["httpGet"] = {"path": action.path, "port": action.port}
    elif isinstance(action, TcpSocketAction):
        result["tcpSocket"] = {"port": action.port}
    else:
        result["exec"] = {"command": list(action.command)}
    return result


def _volume_json(v: Volume) -> dict[str, Any]:
    if v.kind is VolumeKind.PERSISTENT:
        return {"name": v.name, "persistent": {"size": v.size_bytes}}
    source: dict[str, Any] = {} if v.size_bytes is None else {"sizeLimit": v.size_bytes}
    if v.memory:
        source["medium"] = "Memory"
    return {"name": v.name, "emptyDir": source}
