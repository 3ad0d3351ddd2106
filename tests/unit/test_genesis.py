"""Chain specs: the shipped genesis.json, and clear errors for every kind of bad spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chain.errors import GenesisError
from chain.genesis import load_spec, parse_spec
from node.chain_spec import development_spec

ROOT = Path(__file__).resolve().parents[2]


def test_genesis_json_is_the_development_spec() -> None:
    assert load_spec(ROOT / "genesis.json") == development_spec()


def spec_json() -> dict[str, Any]:
    return development_spec().to_json()


def test_round_trip() -> None:
    assert parse_spec(spec_json()) == development_spec()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.pop("name"), "name is missing"),
        (lambda s: s.update(extra=1), "the chain spec: unknown field(s) extra"),
        (lambda s: s.update(chainType="Test"), "chainType must be one of Development, Local, Live"),
        (
            lambda s: s["consensus"].update(slotDurationMs=5),
            "consensus.slotDurationMs must be between 100 and 600000",
        ),
        (
            lambda s: s["consensus"].update(slotDurationMs="soon"),
            "consensus.slotDurationMs must be an integer, got 'soon'",
        ),
        (
            lambda s: s["consensus"].update(authorities=[]),
            "consensus.authorities must name at least one authority",
        ),
        (
            lambda s: s["consensus"]["authorities"].append(s["consensus"]["authorities"][0]),
            "consensus.authorities lists an authority twice",
        ),
        (
            lambda s: s["consensus"]["authorities"].__setitem__(0, "5notanaddress"),
            "consensus.authorities[0]: '5notanaddress' has the wrong length for an address",
        ),
        (lambda s: s["runtime"].pop("baseFee"), "runtime.baseFee is missing"),
        (lambda s: s["runtime"].update(byteFee=-1), "runtime.byteFee must not be negative"),
        (
            lambda s: s["runtime"].update(existentialDeposit=0),
            "runtime.existentialDeposit must be at least 1",
        ),
        (
            lambda s: s["runtime"].update(volumeRetentionSeconds=-1),
            "runtime.volumeRetentionSeconds must not be negative",
        ),
        (
            lambda s: s["runtime"].update(volumeRetentionSeconds=365 * 24 * 3600 + 1),
            "runtime.volumeRetentionSeconds must be at most 31536000 (one year)",
        ),
        (
            lambda s: s["runtime"].update(volumeRetentionSeconds=10**400),
            "runtime.volumeRetentionSeconds must be at most 31536000 (one year)",
        ),
        (
            lambda s: s["runtime"].update(volumeRetentionSeconds="a day"),
            "runtime.volumeRetentionSeconds must be an integer, got 'a day'",
        ),
        (
            lambda s: s["runtime"].update(volumeRetentionSeconds=True),
            "runtime.volumeRetentionSeconds must be an integer",
        ),
        (
            lambda s: s["runtime"].update(volumeRetentionSeconds=1.5),
            "runtime.volumeRetentionSeconds must be an integer",
        ),
        (lambda s: s["balances"].append(s["balances"][0]), "is endowed twice"),
        (lambda s: s["balances"].append(["x"]), "balances[6] must be [address, amount]"),
        (
            lambda s: s["balances"][0].__setitem__(1, "1"),
            "balances[0]: amount must be >= the existential deposit and < 2^128",
        ),
    ],
)
def test_invalid_spec(mutate: Any, message: str) -> None:
    spec = spec_json()
    mutate(spec)
    with pytest.raises(GenesisError) as info:
        parse_spec(spec)
    assert message in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(GenesisError, match="cannot read chain spec .*missing.json: No such file"):
        load_spec(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": ')
    with pytest.raises(GenesisError, match="broken.json is not valid JSON"):
        load_spec(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([1, 2]))
    with pytest.raises(GenesisError, match="wrong.json: the chain spec must be a JSON object"):
        load_spec(wrong)


def test_wallet_committee_bounds() -> None:
    spec = spec_json()
    spec["runtime"]["walletThreshold"] = 4
    with pytest.raises(GenesisError, match="2 <= threshold <= size <= 64"):
        parse_spec(spec)


def test_volume_retention() -> None:
    spec = spec_json()
    assert spec["runtime"]["volumeRetentionSeconds"] == 30  # the dev chain's
    spec["runtime"]["volumeRetentionSeconds"] = "0"
    assert parse_spec(spec).runtime.volume_retention_seconds == 0
    spec["runtime"]["volumeRetentionSeconds"] = 365 * 24 * 3600
    assert parse_spec(spec).runtime.volume_retention_seconds == 365 * 24 * 3600
    del spec["runtime"]["volumeRetentionSeconds"]
    assert parse_spec(spec).runtime.volume_retention_seconds == 86400  # a day unless set


def test_numbers_too_long_to_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    text = json.dumps(spec_json()).replace(
        '"volumeRetentionSeconds": 30', '"volumeRetentionSeconds": ' + "9" * 5000
    )
    huge.write_text(text)
    with pytest.raises(GenesisError, match="huge.json is not valid JSON: Exceeds the limit"):
        load_spec(huge)
    spec = spec_json()
    spec["runtime"]["volumeRetentionSeconds"] = "9" * 5000
    with pytest.raises(GenesisError) as info:
        parse_spec(spec)
    assert str(info.value) == (
        "runtime.volumeRetentionSeconds must be an integer, got '" + "9" * 40 + "…'"
    )
