"""The rules of a manifest that its schema cannot express (cross-references, quantities, limits
against requests, capabilities), checked while its typed form is built."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chain.runtime.manifest.application import Manifest
from chain.runtime.manifest.errors import FieldPath, format_path, shown_value
from chain.runtime.manifest.quantities import (
    BYTES_FORM,
    BYTES_PER,
    CPU_FORM,
    DEFAULT_CPU_REQUEST_MILLICORES,
    DEFAULT_MEMORY_REQUEST_BYTES,
    MAX_CPU_MILLICORES,
    MAX_DISK_BYTES,
    MAX_MEMORY_BYTES,
    MILLICORES_PER,
    MIN_MEMORY_LIMIT_BYTES,
    exact_amount,
    format_bytes,
    format_cpu,
)
from chain.runtime.manifest.types import (
    ADDABLE_CAPABILITIES,
    CAPABILITIES,
    DEFAULT_CONFIG_MODE,
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    DEFAULT_SECRET_MODE,
    ApplicationSpec,
    Autoscaling,
    Container,
    ContainerPort,
    ContainerResources,
    EnvFromSource,
    EnvVar,
    ExecAction,
    HttpGetAction,
    Ingress,
    IngressRule,
    IntOrPercent,
    KeyRef,
    KeyToPath,
    NodeClass,
    PortProtocol,
    Probe,
    ProbeAction,
    ResourceLimits,
    ResourceRequests,
    RestartPolicy,
    RollingUpdate,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    SecurityContext,
    SelectPolicy,
    Service,
    ServicePort,
    TcpSocketAction,
    Volume,
    VolumeKind,
    VolumeMount,
    ingress_prefix,
    merge_security_contexts,
)


class Builder:
    """Builds a manifest from schema-valid data and collects every rule it breaks."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self.issues: list[tuple[FieldPath, str]] = []

    def fail(self, path: FieldPath, message: str) -> None:
        self.issues.append((path, message))

    def manifest(self, data: Any) -> Manifest:
        raw = data["spec"]
        pull_secrets = self.image_pull_secrets(raw.get("imagePullSecrets", []))
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
            image_pull_secrets=pull_secrets,
        )
        return Manifest(data["metadata"]["name"], spec)

    def image_pull_secrets(self, raw: list[Any]) -> tuple[str, ...]:
        """The names of the owner's secrets with registry credentials, each once."""
        names: list[str] = []
        for i, item in enumerate(raw):
            name = item["name"]
            if name in names:
                self.fail(
                    ("spec", "imagePullSecrets", i, "name"),
                    f"{name!r} is already named by imagePullSecrets[{names.index(name)}]",
                )
                continue
            names.append(name)
        return tuple(names)

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
            source = item.get("valueFrom", {})
            env.append(
                EnvVar(
                    name,
                    item.get("value"),
                    KeyRef.from_json(source.get("secretKeyRef")),
                    KeyRef.from_json(source.get("configMapKeyRef")),
                )
            )
        env_from = tuple(
            EnvFromSource(
                item.get("secretRef", {}).get("name"), item.get("configMapRef", {}).get("name")
            )
            for item in raw.get("envFrom", [])
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
            env_from=env_from,
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
                    f"{shown_value(name)} is not a Linux capability (write it as Kubernetes does, "
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
            merged = merge_security_contexts(pod, own)
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
        scaled = exact_amount(value, MILLICORES_PER)
        if scaled is None:
            self.fail(path, f"{shown_value(value)} is not a cpu quantity ({CPU_FORM})")
            return None
        numerator, denominator = scaled
        if numerator % denominator:
            self.fail(path, f"{shown_value(value)} is finer than a millicore")
            return None
        millicores = numerator // denominator
        if millicores > MAX_CPU_MILLICORES:
            self.fail(path, f"{shown_value(value)} is more than {MAX_CPU_MILLICORES // 1000} cores")
            return None
        return millicores

    def byte_amount(self, value: object, path: FieldPath, what: str, bound: int) -> int | None:
        scaled = exact_amount(value, BYTES_PER)
        if scaled is None:
            self.fail(path, f"{shown_value(value)} is not a {what} quantity ({BYTES_FORM})")
            return None
        numerator, denominator = scaled
        amount = -(-numerator // denominator)  # fractions of a byte round up, as in Kubernetes
        if amount > bound:
            self.fail(path, f"{shown_value(value)} is more than {format_bytes(bound)}")
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
        for key, kind, name_key, mode in (
            ("secret", VolumeKind.SECRET, "secretName", DEFAULT_SECRET_MODE),
            ("configMap", VolumeKind.CONFIG_MAP, "name", DEFAULT_CONFIG_MODE),
        ):
            if key in raw:
                source = raw[key]
                return Volume(
                    raw["name"],
                    kind,
                    None,
                    source=source[name_key],
                    items=self.key_items(source.get("items", []), (*path, key, "items")),
                    default_mode=source.get("defaultMode", mode),
                )
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

    def key_items(self, raw: list[Any], path: FieldPath) -> tuple[KeyToPath, ...]:
        """The files of a secret or configMap volume: each path inside the volume (no `.` or
        `..` part), and no path both a file and the folder of another."""
        items = tuple(KeyToPath(i["key"], i["path"], i.get("mode")) for i in raw)
        files: dict[str, int] = {}
        for k, item in enumerate(items):
            if {".", ".."} & set(item.path.split("/")):
                self.fail((*path, k, "path"), f"{item.path!r} has a '.' or '..' part")
                continue
            if item.path in files:
                self.fail(
                    (*path, k, "path"),
                    f"{item.path!r} is already the path of items[{files[item.path]}]",
                )
            files.setdefault(item.path, k)
        for name, k in files.items():
            parts = name.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder in files:
                    self.fail(
                        (*path, k, "path"), f"{folder!r} is the file of items[{files[folder]}]"
                    )
        return items

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
        behavior = raw.get("behavior", {})
        return Autoscaling(
            least,
            most,
            raw.get("targetCPUUtilizationPercentage", 80),
            scaling_rules(behavior["scaleUp"], DEFAULT_SCALE_UP) if "scaleUp" in behavior else None,
            scaling_rules(behavior["scaleDown"], DEFAULT_SCALE_DOWN)
            if "scaleDown" in behavior
            else None,
        )

    def strategy(self, raw: Any) -> RollingUpdate:
        rolling = raw.get("rollingUpdate", {})
        surge = IntOrPercent.from_json(rolling.get("maxSurge", "25%"))
        unavailable = IntOrPercent.from_json(rolling.get("maxUnavailable", "25%"))
        if surge.amount == 0 and unavailable.amount == 0:
            self.fail(
                ("spec", "strategy", "rollingUpdate"),
                "maxSurge and maxUnavailable cannot both be 0",
            )
        return RollingUpdate(surge, unavailable)


def scaling_rules(raw: Any, default: ScalingRules) -> ScalingRules:
    """One direction of `behavior` (already checked by the schema): what it leaves out is
    Kubernetes' default for that direction."""
    policies = (
        tuple(
            ScalingPolicy(ScalingPolicyType(p["type"]), p["value"], p["periodSeconds"])
            for p in raw["policies"]
        )
        if "policies" in raw
        else default.policies
    )
    return ScalingRules(
        raw.get("stabilizationWindowSeconds", default.stabilization_window_seconds),
        SelectPolicy(raw.get("selectPolicy", default.select_policy.value)),
        policies,
    )


_FORMATS: dict[str, Callable[[int], str]] = {
    "cpu": format_cpu,
    "memory": format_bytes,
    "disk": format_bytes,
    "gpu": str,
}
