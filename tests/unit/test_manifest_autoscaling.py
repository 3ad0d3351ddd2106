"""`spec.autoscaling` in a manifest: Kubernetes' fields and defaults, its canonical form read back
unchanged, and every bad value refused with its path, by the schema or the rules, before anything
is written on chain."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chain.runtime.manifest import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    ManifestError,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    SelectPolicy,
    read_stored_manifest,
    validate_manifest,
)
from tests.factories import ALICE
from tests.unit.test_apps import WEB
from tests.unit.test_apps_autoscaling import CREATE, scaling_chain

BEHAVIOR = "spec.autoscaling.behavior"


def manifest_with(scaling: dict[str, Any], replicas: int = 2) -> dict[str, Any]:
    data = WEB.to_json()
    data["spec"]["replicas"] = replicas
    data["spec"]["autoscaling"] = scaling
    return data


def up(**rules: Any) -> dict[str, Any]:
    return {"maxReplicas": 6, "behavior": {"scaleUp": rules}}


def pods(value: Any = 1, period: Any = 15, kind: Any = "Pods") -> dict[str, Any]:
    return {"type": kind, "value": value, "periodSeconds": period}


def test_defaults_and_the_canonical_form() -> None:
    plain = validate_manifest(manifest_with({"maxReplicas": 6}))
    scaling = plain.spec.autoscaling
    assert scaling is not None
    assert (scaling.min_replicas, scaling.target_cpu_utilization_percentage) == (1, 80)
    assert (scaling.scale_up_rules, scaling.scale_down_rules) == (
        DEFAULT_SCALE_UP,
        DEFAULT_SCALE_DOWN,
    )
    # No behavior given: none written, so manifests stored before keep their form and hash.
    assert b"behavior" not in plain.canonical_json()
    given = validate_manifest(
        manifest_with(
            {
                "minReplicas": 2,
                "maxReplicas": 10,
                "targetCPUUtilizationPercentage": 60,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
            }
        )
    )
    scaling = given.spec.autoscaling
    assert scaling is not None and scaling.scale_up is None
    assert scaling.scale_down == ScalingRules(60, SelectPolicy.MAX, DEFAULT_SCALE_DOWN.policies)
    assert read_stored_manifest(given.canonical_json()) == given
    custom = validate_manifest(
        manifest_with(up(selectPolicy="Min", policies=[pods(2, 60), pods(50, 30, "Percent")]))
    )
    scaling = custom.spec.autoscaling
    assert scaling is not None
    assert scaling.scale_up == ScalingRules(
        0,
        SelectPolicy.MIN,
        (
            ScalingPolicy(ScalingPolicyType.PODS, 2, 60),
            ScalingPolicy(ScalingPolicyType.PERCENT, 50, 30),
        ),
    )
    assert read_stored_manifest(custom.canonical_json()) == custom


BAD: list[tuple[str, dict[str, Any], tuple[str, str]]] = [
    ("min above max", {"minReplicas": 7, "maxReplicas": 6},
     ("spec.autoscaling.minReplicas", "7 is above maxReplicas 6")),
    ("target 0", {"maxReplicas": 6, "targetCPUUtilizationPercentage": 0},
     ("spec.autoscaling.targetCPUUtilizationPercentage", "0 is less than 1")),
    ("target above 100", {"maxReplicas": 6, "targetCPUUtilizationPercentage": 101},
     ("spec.autoscaling.targetCPUUtilizationPercentage", "101 is more than 100")),
    ("target as text", {"maxReplicas": 6, "targetCPUUtilizationPercentage": "60"},
     ("spec.autoscaling.targetCPUUtilizationPercentage", "must be an integer")),
    ("max 0", {"maxReplicas": 0}, ("spec.autoscaling.maxReplicas", "0 is less than 1")),
    ("max past the replica limit", {"maxReplicas": 1001},
     ("spec.autoscaling.maxReplicas", "1001 is more than 1000")),
    ("a window over an hour",
     {"maxReplicas": 6, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 3601}}},
     (f"{BEHAVIOR}.scaleDown.stabilizationWindowSeconds", "3601 is more than 3600")),
    ("a negative window", up(stabilizationWindowSeconds=-1),
     (f"{BEHAVIOR}.scaleUp.stabilizationWindowSeconds", "-1 is less than 0")),
    ("an absurd window", up(stabilizationWindowSeconds=10**30),
     (f"{BEHAVIOR}.scaleUp.stabilizationWindowSeconds", f"{10**30} is more than 3600")),
    ("a period of 0", up(policies=[pods(period=0)]),
     (f"{BEHAVIOR}.scaleUp.policies[0].periodSeconds", "0 is less than 1")),
    ("a period over 30 minutes", up(policies=[pods(period=1801)]),
     (f"{BEHAVIOR}.scaleUp.policies[0].periodSeconds", "1801 is more than 1800")),
    ("a policy of 0", up(policies=[pods(value=0, kind="Percent")]),
     (f"{BEHAVIOR}.scaleUp.policies[0].value", "0 is less than 1")),
    ("an unknown policy type", up(policies=[pods(kind="Cpu")]),
     (f"{BEHAVIOR}.scaleUp.policies[0].type", "'Cpu' is not one of Pods, Percent")),
    ("no policies", up(policies=[]), (f"{BEHAVIOR}.scaleUp.policies", "needs at least 1 item")),
    ("too many policies", up(policies=[pods()] * 11),
     (f"{BEHAVIOR}.scaleUp.policies", "has more than 10 items")),
    ("an unknown select policy", up(selectPolicy="Fastest"),
     (f"{BEHAVIOR}.scaleUp.selectPolicy", "'Fastest' is not one of Max, Min, Disabled")),
    ("an unknown direction", {"maxReplicas": 6, "behavior": {"scaleSideways": {}}},
     (f"{BEHAVIOR}.scaleSideways", "is not a known field")),
    ("a policy without its period", up(policies=[{"type": "Pods", "value": 1}]),
     (f"{BEHAVIOR}.scaleUp.policies[0].periodSeconds", "is required")),
]  # fmt: skip


@pytest.mark.parametrize(("scaling", "issue"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_autoscaling_is_refused_with_its_path(
    scaling: dict[str, Any], issue: tuple[str, str]
) -> None:
    with pytest.raises(ManifestError) as info:
        validate_manifest(manifest_with(scaling))
    assert info.value.issues == (issue,)


def test_the_chain_refuses_them_and_writes_nothing() -> None:
    chain = scaling_chain()
    for _, scaling, (path, message) in BAD:
        raw = json.dumps(manifest_with(scaling)).encode()
        refused = chain.refuse(ALICE, CREATE.call(manifest=raw))  # the state root is unchanged
        assert refused.startswith("apps.BadManifest") and f"{path}: {message}" in refused
