"""A container's process limit in the manifest (`resources.limits.pids`): accepted within its
bounds, refused with a typed error otherwise (hostile values included), kept in the canonical
form only when given, and never a request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.runtime import manifest as mf
from chain.runtime.manifest import SCHEMA, ManifestError, decode_manifest
from node.commands.manifest_file import parse_manifest
from tests.unit.test_manifest import CANONICAL, base, container, issues_of

LIMITS = "spec.containers[0].resources.limits"


def with_limits(**limits: object) -> dict[str, Any]:
    data = base()
    container(data)["resources"]["limits"] = limits
    return data


@pytest.mark.parametrize("pids", [1, 100, 1024, mf.MAX_PIDS_LIMIT])
def test_a_pids_limit_within_bounds_is_kept_and_read_back(pids: int) -> None:
    manifest = mf.validate_manifest(with_limits(pids=pids))
    assert manifest.spec.containers[0].resources.limits.pids == pids
    canonical = manifest.canonical_json()
    assert json.loads(canonical)["spec"]["containers"][0]["resources"]["limits"] == {"pids": pids}
    again = decode_manifest(canonical)
    assert again == manifest
    assert again.canonical_json() == canonical


def test_without_a_pids_limit_the_canonical_form_and_hash_stay_as_they_were() -> None:
    manifest = mf.validate_manifest(base())
    assert manifest.spec.containers[0].resources.limits.pids is None
    assert manifest.canonical_json() == CANONICAL
    limited = mf.validate_manifest(with_limits(pids=64))
    assert limited.hash() != manifest.hash()


def test_a_pids_limit_reserves_nothing() -> None:
    """The scheduler is told the same with or without it: processes are capped, not booked."""
    assert mf.validate_manifest(with_limits(pids=64)).replica_resources() == (
        mf.validate_manifest(base()).replica_resources()
    )


def test_yaml_and_json_give_the_same_limit() -> None:
    text = """
apiVersion: statemesh/v1
kind: Application
metadata: {name: web}
spec:
  containers:
    - name: main
      image: busybox
      resources: {limits: {pids: 200, memory: 32Mi}}
"""
    manifest = parse_manifest(text)
    assert manifest.spec.containers[0].resources.limits.pids == 200
    assert parse_manifest(manifest.canonical_json()) == manifest


def test_the_schema_bound_is_the_published_constant() -> None:
    pids = SCHEMA["$defs"]["resourceLimits"]["properties"]["pids"]
    assert (pids["minimum"], pids["maximum"]) == (1, mf.MAX_PIDS_LIMIT)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "0 is less than 1"),  # Docker reads 0 as "no limit"
        (-1, "-1 is less than 1"),  # and -1 as unlimited
        (mf.MAX_PIDS_LIMIT + 1, f"{mf.MAX_PIDS_LIMIT + 1} is more than {mf.MAX_PIDS_LIMIT}"),
        (2**63, "9223372036854775808 is more than 32768"),
        (10**60, "a number of more than 40 digits is more than 32768"),
        ("100", "must be an integer"),
        ("1Ki", "must be an integer"),
        (True, "must be an integer"),
        (None, "must be an integer"),
        ([100], "must be an integer"),
        ({"max": 100}, "must be an integer"),
        (10.0, "must be an integer"),  # a float becomes an exact decimal, never an integer
        (10.5, "must be an integer"),
    ],
)
def test_bad_and_hostile_pids_limits_are_refused(value: object, message: str) -> None:
    assert issues_of(with_limits(pids=value)) == ((f"{LIMITS}.pids", message),)


def test_pids_is_a_limit_not_a_request() -> None:
    data = base()
    container(data)["resources"]["requests"]["pids"] = 10
    assert issues_of(data) == (
        ("spec.containers[0].resources.requests.pids", "is not a known field"),
    )


def test_a_bad_pids_limit_is_reported_with_the_other_issues() -> None:
    data = with_limits(pids=0, cpu="100m")
    data["spec"]["containers"].append({"name": "side", "image": "busybox"})
    data["spec"]["containers"][1]["resources"] = {"limits": {"pids": "lots"}}
    assert issues_of(data) == (
        (f"{LIMITS}.pids", "0 is less than 1"),
        ("spec.containers[1].resources.limits.pids", "must be an integer"),
    )


def test_json_text_with_a_decimal_pids_limit_is_refused() -> None:
    data = with_limits()
    text = json.dumps(data).replace('"limits": {}', '"limits": {"pids": 1e3}')
    with pytest.raises(ManifestError) as caught:
        decode_manifest(text.encode())
    assert caught.value.issues == ((f"{LIMITS}.pids", "must be an integer"),)


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_any_integer_is_a_limit_or_a_manifest_error(pids: int) -> None:
    try:
        manifest = mf.validate_manifest(with_limits(pids=pids))
    except ManifestError as exc:
        assert not 1 <= pids <= mf.MAX_PIDS_LIMIT
        assert [path for path, _ in exc.issues] == [f"{LIMITS}.pids"]
    else:
        assert manifest.spec.containers[0].resources.limits.pids == pids
