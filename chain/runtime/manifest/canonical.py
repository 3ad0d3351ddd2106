"""The canonical JSON of a manifest, what the chain stores and hashes: every default filled in,
port names resolved to numbers, quantities to integers, keys sorted, no whitespace."""

from __future__ import annotations

import json
from typing import Any

from chain.runtime.manifest.quantities import format_cpu
from chain.runtime.manifest.types import (
    NO_SECURITY_CONTEXT,
    ApplicationSpec,
    Container,
    ContainerPort,
    EnvFromSource,
    EnvVar,
    HttpGetAction,
    Probe,
    ScalingRules,
    SecurityContext,
    ServicePort,
    TcpSocketAction,
    Volume,
    VolumeKind,
)

API_VERSION = "statemesh/v1"
KIND = "Application"
MAX_MANIFEST_BYTES = 64 * 1024
"""Both the text a user submits and the canonical JSON the chain stores."""


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, ASCII: equal documents have equal bytes."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def manifest_json(name: str, spec: ApplicationSpec) -> dict[str, Any]:
    """The whole document of application `name`, every default filled in."""
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
        # Only when given: a manifest without it keeps the canonical form (and hash) it had.
        behavior = {
            key: scaling_rules_json(rules)
            for key, rules in (("scaleUp", scaling.scale_up), ("scaleDown", scaling.scale_down))
            if rules is not None
        }
        if behavior:
            body["autoscaling"]["behavior"] = behavior
    if spec.security_context != NO_SECURITY_CONTEXT:
        body["securityContext"] = _security_context_json(spec.security_context)
    if spec.image_pull_secrets:
        # Only when given: a manifest without it keeps the canonical form (and hash) it had.
        body["imagePullSecrets"] = [{"name": n} for n in spec.image_pull_secrets]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": body,
    }


def scaling_rules_json(rules: ScalingRules) -> dict[str, Any]:
    """One direction of `behavior` as a manifest writes it, every field given."""
    return {
        "stabilizationWindowSeconds": rules.stabilization_window_seconds,
        "selectPolicy": rules.select_policy.value,
        "policies": [
            {"type": p.type.value, "value": p.value, "periodSeconds": p.period_seconds}
            for p in rules.policies
        ],
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
    if c.env_from:
        # Only when given: a manifest without it keeps the canonical form (and hash) it had.
        result["envFrom"] = [_env_from_json(e) for e in c.env_from]
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
        ref = {"name": e.secret_ref.name, "key": e.secret_ref.key}
        result["valueFrom"] = {"secretKeyRef": ref}
    if e.config_ref is not None:
        ref = {"name": e.config_ref.name, "key": e.config_ref.key}
        result["valueFrom"] = {"configMapKeyRef": ref}
    return result


def _env_from_json(e: EnvFromSource) -> dict[str, Any]:
    if e.secret is not None:
        return {"secretRef": {"name": e.secret}}
    return {"configMapRef": {"name": e.config}}


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
    if v.kind in (VolumeKind.SECRET, VolumeKind.CONFIG_MAP):
        items = []
        for item in v.items:
            shown: dict[str, Any] = {"key": item.key, "path": item.path}
            if item.mode is not None:
                shown["mode"] = item.mode
            items.append(shown)
        name_key = "secretName" if v.kind is VolumeKind.SECRET else "name"
        files = {name_key: v.source, "items": items, "defaultMode": v.default_mode}
        return {"name": v.name, v.kind.value: files}
    if v.kind is VolumeKind.PERSISTENT:
        return {"name": v.name, "persistent": {"size": v.size_bytes}}
    source: dict[str, Any] = {} if v.size_bytes is None else {"sizeLimit": v.size_bytes}
    if v.memory:
        source["medium"] = "Memory"
    return {"name": v.name, "emptyDir": source}
