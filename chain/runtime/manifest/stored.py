"""A manifest read back from the chain's state: the canonical JSON the runtime stored once it had
checked it (`decode_manifest` at `apps.create` and `apps.update`). Reading it again builds the
typed form without checking it again: a manifest is validated once, when the chain accepts it.

The reader is the inverse of `canonical`: every default is there and every name resolved, so
nothing is filled in here. Bytes that are not such a form (a damaged database) raise
ManifestError, never a wrong manifest."""

from __future__ import annotations

import json
from typing import Any

from chain.runtime.manifest.application import Manifest
from chain.runtime.manifest.errors import ManifestError
from chain.runtime.manifest.types import (
    NO_SECURITY_CONTEXT,
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
)


def read_stored_manifest(data: bytes) -> Manifest:
    """The manifest whose canonical JSON is `data`, as the runtime stored it."""
    try:
        document = json.loads(data)
        manifest = Manifest(document["metadata"]["name"], _spec(document["spec"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ManifestError([((), f"is not a stored manifest ({type(exc).__name__})")]) from None
    if manifest.canonical_json() != data:
        raise ManifestError([((), "is not in its canonical form")])
    return manifest


def _spec(raw: dict[str, Any]) -> ApplicationSpec:
    rolling = raw["strategy"]["rollingUpdate"]
    service = raw.get("service")
    ingress = raw.get("ingress")
    scaling = raw.get("autoscaling")
    return ApplicationSpec(
        replicas=raw["replicas"],
        node_class=NodeClass(raw["nodeClass"]),
        restart_policy=RestartPolicy(raw["restartPolicy"]),
        containers=tuple(_container(c) for c in raw["containers"]),
        volumes=tuple(_volume(v) for v in raw["volumes"]),
        service=None
        if service is None
        else Service(tuple(_service_port(p) for p in service["ports"])),
        ingress=None
        if ingress is None
        else Ingress(
            ingress["host"],
            tuple(IngressRule(r["path"], r["servicePort"]) for r in ingress["rules"]),
        ),
        autoscaling=None
        if scaling is None
        else Autoscaling(
            scaling["minReplicas"],
            scaling["maxReplicas"],
            scaling["targetCPUUtilizationPercentage"],
            _scaling_rules(scaling.get("behavior", {}).get("scaleUp")),
            _scaling_rules(scaling.get("behavior", {}).get("scaleDown")),
        ),
        strategy=RollingUpdate(
            IntOrPercent.from_json(rolling["maxSurge"]),
            IntOrPercent.from_json(rolling["maxUnavailable"]),
        ),
        security_context=_security_context(raw.get("securityContext")),
        image_pull_secrets=tuple(s["name"] for s in raw.get("imagePullSecrets", [])),
    )


def _scaling_rules(raw: dict[str, Any] | None) -> ScalingRules | None:
    if raw is None:
        return None
    return ScalingRules(
        raw["stabilizationWindowSeconds"],
        SelectPolicy(raw["selectPolicy"]),
        tuple(
            ScalingPolicy(ScalingPolicyType(p["type"]), p["value"], p["periodSeconds"])
            for p in raw["policies"]
        ),
    )


def _container(raw: dict[str, Any]) -> Container:
    requests = raw["resources"]["requests"]
    limits = raw["resources"]["limits"]
    return Container(
        name=raw["name"],
        image=raw["image"],
        command=tuple(raw["command"]),
        args=tuple(raw["args"]),
        env=tuple(_env(e) for e in raw["env"]),
        ports=tuple(
            ContainerPort(p["containerPort"], PortProtocol(p["protocol"]), p.get("name"))
            for p in raw["ports"]
        ),
        resources=ContainerResources(
            ResourceRequests(
                _millicores(requests["cpu"]),
                requests["memory"],
                requests["ephemeral-storage"],
                requests["gpu"],
            ),
            ResourceLimits(
                cpu_millicores=None if "cpu" not in limits else _millicores(limits["cpu"]),
                memory_bytes=limits.get("memory"),
                disk_bytes=limits.get("ephemeral-storage"),
                gpus=limits.get("gpu"),
                pids=limits.get("pids"),
            ),
        ),
        liveness_probe=_probe(raw.get("livenessProbe")),
        readiness_probe=_probe(raw.get("readinessProbe")),
        startup_probe=_probe(raw.get("startupProbe")),
        volume_mounts=tuple(VolumeMount(m["name"], m["mountPath"]) for m in raw["volumeMounts"]),
        security_context=_security_context(raw.get("securityContext")),
        env_from=tuple(_env_from(e) for e in raw.get("envFrom", [])),
    )


def _millicores(text: str) -> int:
    """The canonical form writes cpu as millicores: "250m"."""
    if not text.endswith("m"):
        raise ValueError(text)
    return int(text[:-1])


def _env(raw: dict[str, Any]) -> EnvVar:
    source = raw.get("valueFrom", {})
    return EnvVar(
        raw["name"],
        raw.get("value"),
        KeyRef.from_json(source.get("secretKeyRef")),
        KeyRef.from_json(source.get("configMapKeyRef")),
    )


def _env_from(raw: dict[str, Any]) -> EnvFromSource:
    if "secretRef" in raw:
        return EnvFromSource(secret=raw["secretRef"]["name"])
    return EnvFromSource(config=raw["configMapRef"]["name"])


def _probe(raw: dict[str, Any] | None) -> Probe | None:
    if raw is None:
        return None
    action: ProbeAction
    if "httpGet" in raw:
        action = HttpGetAction(raw["httpGet"]["port"], raw["httpGet"]["path"])
    elif "tcpSocket" in raw:
        action = TcpSocketAction(raw["tcpSocket"]["port"])
    else:
        action = ExecAction(tuple(raw["exec"]["command"]))
    return Probe(
        action,
        raw["initialDelaySeconds"],
        raw["periodSeconds"],
        raw["timeoutSeconds"],
        raw["successThreshold"],
        raw["failureThreshold"],
    )


def _security_context(raw: dict[str, Any] | None) -> SecurityContext:
    if raw is None:
        return NO_SECURITY_CONTEXT
    capabilities = raw.get("capabilities", {})
    add, drop = capabilities.get("add"), capabilities.get("drop")
    return SecurityContext(
        run_as_user=raw.get("runAsUser"),
        run_as_group=raw.get("runAsGroup"),
        run_as_non_root=raw.get("runAsNonRoot"),
        read_only_root_filesystem=raw.get("readOnlyRootFilesystem"),
        capabilities_add=None if add is None else tuple(add),
        capabilities_drop=None if drop is None else tuple(drop),
    )


def _volume(raw: dict[str, Any]) -> Volume:
    for kind, name_key in ((VolumeKind.SECRET, "secretName"), (VolumeKind.CONFIG_MAP, "name")):
        if kind.value in raw:
            source = raw[kind.value]
            return Volume(
                raw["name"],
                kind,
                None,
                source=source[name_key],
                items=tuple(KeyToPath(i["key"], i["path"], i.get("mode")) for i in source["items"]),
                default_mode=source["defaultMode"],
            )
    if "persistent" in raw:
        return Volume(raw["name"], VolumeKind.PERSISTENT, raw["persistent"]["size"])
    source = raw["emptyDir"]
    return Volume(
        raw["name"], VolumeKind.EMPTY_DIR, source.get("sizeLimit"), source.get("medium") == "Memory"
    )


def _service_port(raw: dict[str, Any]) -> ServicePort:
    return ServicePort(
        raw["port"], raw["targetPort"], PortProtocol(raw["protocol"]), raw.get("name")
    )
