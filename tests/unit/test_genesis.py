"""Chain specs: the shipped genesis.json, and clear errors for every kind of bad spec."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chain.address import encode_address
from chain.errors import GenesisError
from chain.genesis import build_genesis, load_spec, parse_spec
from chain.keys import dev_keypair
from chain.runtime.system import account
from chain.runtime.wallets import get_wallet
from chain.state import TrieState
from chain.trie import BLANK_ROOT
from node.chain_spec import (
    DEV_WALLET_ENDOWMENT,
    dev_node_id,
    dev_wallet_share,
    development_spec,
)
from node.commands.testnet import create

ROOT = Path(__file__).resolve().parents[2]


def test_genesis_json_is_the_development_spec() -> None:
    assert load_spec(ROOT / "genesis.json") == development_spec()


def test_the_dev_chain_has_a_one_node_wallet_committee_and_a_testnet_two_of_three(
    tmp_path: Path,
) -> None:
    dev = development_spec().runtime
    assert (dev.wallet_committee_size, dev.wallet_threshold) == (1, 1)
    create(tmp_path / "net", 3, 9944, 30333, 1000)
    local = load_spec(tmp_path / "net" / "genesis.json").runtime
    assert (local.wallet_committee_size, local.wallet_threshold) == (3, 2)


def spec_json() -> dict[str, Any]:
    return development_spec().to_json()


def test_round_trip() -> None:
    assert parse_spec(spec_json()) == development_spec()


def test_the_dev_chain_starts_with_a_funded_wallet_its_dev_node_can_sign_for() -> None:
    """The genesis state records the dev wallet (committee: the `--dev` node's well-known key,
    1 of 1; login: dev-alice) and its balance; the dev node's share is the wallet's key."""
    spec = development_spec()
    (wallet,) = spec.wallets
    assert wallet.committee == (dev_node_id(),) and wallet.threshold == 1
    assert wallet.login_key == dev_keypair("alice").public
    assert dict(spec.balances)[wallet.address] == DEV_WALLET_ENDOWMENT
    share = dev_wallet_share()
    assert share.public_package.group_public_key.encoding == wallet.address
    nodes: dict[bytes, bytes] = {}
    commit = build_genesis(spec, TrieState(nodes, BLANK_ROOT)).commit
    nodes.update(commit.nodes)
    state = TrieState(nodes, commit.root)
    record = get_wallet(state, wallet.address)
    assert record is not None
    assert (record.committee, record.threshold) == ((dev_node_id(),), 1)
    assert account(state, wallet.address).free == DEV_WALLET_ENDOWMENT


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
        (
            lambda s: s["towers"].update(proofInterval=0),
            "towers.proofInterval must be at least 1",
        ),
        (
            lambda s: s["towers"].update(proofInterval=6, proofsPerEpoch=2),
            "towers: 2 proofs an epoch, 6 blocks apart, do not fit in an epoch of 10 blocks: no "
            "node could stay eligible",
        ),
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
        (lambda s: s["balances"].append(["x"]), "balances[7] must be [address, amount]"),
        (
            lambda s: s["balances"][0].__setitem__(1, "1"),
            "balances[0]: amount must be >= the existential deposit and < 2^128",
        ),
    ],
)
def test_invalid_spec(mutate: Any, message: str) -> None:
    assert message in refusal(mutate)


def refusal(mutate: Any) -> str:
    """The error of the dev spec changed by `mutate`."""
    spec = spec_json()
    mutate(spec)
    with pytest.raises(GenesisError) as info:
        parse_spec(spec)
    return str(info.value)


def wallet_entry(spec: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = spec["wallets"][0]
    return entry


NOT_A_POINT = encode_address(b"\x02" + bytes(31))
SECOND = encode_address(dev_keypair("bob").public)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update(wallets={}), "wallets must be a list"),
        (lambda s: wallet_entry(s).update(color=1), "wallets[0]: unknown field(s) color"),
        (lambda s: wallet_entry(s).pop("loginKey"), "wallets[0].loginKey is missing"),
        (
            lambda s: wallet_entry(s).update(address=NOT_A_POINT),
            "wallets[0].address is not a group key",
        ),
        (lambda s: s["wallets"].append(dict(wallet_entry(s))), "wallets[1].address names a wallet"),
        (
            lambda s: wallet_entry(s)["committee"].append(wallet_entry(s)["committee"][0]),
            "wallets[0].committee must list distinct node ids in ascending order",
        ),
        (
            lambda s: wallet_entry(s).update(threshold=2),
            "wallets[0].threshold and committee need 2 <= threshold <= size",
        ),
        (lambda s: wallet_entry(s).update(committee=[]), "wallets[0].threshold and committee"),
        (
            lambda s: wallet_entry(s).update(committee=["5x"]),
            "wallets[0].committee[0]",
        ),
        (lambda s: wallet_entry(s).update(loginKey=SECOND[:-1]), "wallets[0].loginKey"),
    ],
)
def test_invalid_genesis_wallet(mutate: Any, message: str) -> None:
    assert message in refusal(mutate)


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
    for size, threshold in ((3, 1), (2, 1), (1, 0), (65, 2)):
        spec["runtime"]["walletCommitteeSize"] = size
        spec["runtime"]["walletThreshold"] = threshold
        with pytest.raises(GenesisError, match="or threshold = size = 1"):
            parse_spec(spec)
    spec["runtime"]["walletCommitteeSize"] = spec["runtime"]["walletThreshold"] = 1
    one = parse_spec(spec).runtime
    assert (one.wallet_committee_size, one.wallet_threshold) == (1, 1)


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


def local_spec_json() -> dict[str, Any]:
    spec = spec_json()
    spec["chainType"] = "Local"
    spec["consensus"]["genesisTimestampMs"] = 1_800_000_000_000
    return spec


def test_genesis_timestamp_is_kept_and_moves_the_genesis_hash() -> None:
    spec = parse_spec(local_spec_json())
    assert spec.genesis_timestamp_ms == 1_800_000_000_000
    assert spec.genesis_slot == 1_800_000_000
    assert parse_spec(spec.to_json()) == spec
    header = build_genesis(spec, TrieState({}, BLANK_ROOT)).block.header
    assert (header.timestamp, header.slot) == (1_800_000_000_000, 1_800_000_000)
    one_ms_later = replace(spec, genesis_timestamp_ms=spec.genesis_timestamp_ms + 1)
    assert build_genesis(one_ms_later, TrieState({}, BLANK_ROOT)).hash != header.hash


def test_a_development_chain_starts_at_zero_unless_told() -> None:
    spec = spec_json()
    del spec["consensus"]["genesisTimestampMs"]
    assert parse_spec(spec).genesis_timestamp_ms == 0
    # The built-in dev chain's genesis is the same on every run (a dev node restarts on it).
    assert development_spec().genesis_timestamp_ms == 0
    assert (
        build_genesis(development_spec(), TrieState({}, BLANK_ROOT)).hash
        == build_genesis(development_spec(), TrieState({}, BLANK_ROOT)).hash
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda s: s["consensus"].pop("genesisTimestampMs"),
            "consensus.genesisTimestampMs is missing: a Local chain needs the time it starts",
        ),
        (
            lambda s: (s.update(chainType="Live"), s["consensus"].pop("genesisTimestampMs")),
            "consensus.genesisTimestampMs is missing: a Live chain needs the time it starts",
        ),
        (
            lambda s: (s.pop("chainType"), s["consensus"].pop("genesisTimestampMs")),
            "consensus.genesisTimestampMs is missing: a Live chain",
        ),
        (
            lambda s: s["consensus"].update(genesisTimestampMs=-1),
            "consensus.genesisTimestampMs must be between 0 and 9223372036854775807",
        ),
        (
            lambda s: s["consensus"].update(genesisTimestampMs=2**63),
            "consensus.genesisTimestampMs must be between 0 and 9223372036854775807",
        ),
        (
            lambda s: s["consensus"].update(genesisTimestampMs="1800000000000"),
            "consensus.genesisTimestampMs must be an integer (Unix milliseconds)",
        ),
        (
            lambda s: s["consensus"].update(genesisTimestampMs=1.5e12),
            "consensus.genesisTimestampMs must be an integer (Unix milliseconds)",
        ),
        (
            lambda s: s["consensus"].update(genesisTimestampMs=True),
            "consensus.genesisTimestampMs must be an integer (Unix milliseconds)",
        ),
        (
            lambda s: s["consensus"].update(genesisTimestampMs=None),
            "consensus.genesisTimestampMs must be an integer (Unix milliseconds)",
        ),
    ],
)
def test_invalid_genesis_timestamp(mutate: Any, message: str) -> None:
    spec = local_spec_json()
    mutate(spec)
    with pytest.raises(GenesisError) as info:
        parse_spec(spec)
    assert message in str(info.value)


CHECKPOINT_HASH = "0x" + "ab" * 32


def test_checkpoint_round_trip() -> None:
    spec = spec_json()
    assert "checkpoint" not in spec and parse_spec(spec).checkpoint is None
    spec["checkpoint"] = {"number": 1200, "hash": CHECKPOINT_HASH.upper().replace("0X", "0x")}
    parsed = parse_spec(spec)
    assert parsed.checkpoint == (1200, b"\xab" * 32)
    assert parsed.to_json()["checkpoint"] == {"number": 1200, "hash": CHECKPOINT_HASH}
    assert parse_spec(parsed.to_json()) == parsed
    # A checkpoint is what a node checks sync against, not part of the chain: same genesis.
    assert (
        build_genesis(parsed, TrieState({}, BLANK_ROOT)).hash
        == build_genesis(development_spec(), TrieState({}, BLANK_ROOT)).hash
    )


@pytest.mark.parametrize(
    ("checkpoint", "message"),
    [
        ([1200, CHECKPOINT_HASH], 'checkpoint must be an object {"number": N, "hash": "0x…"}'),
        ("1200:" + CHECKPOINT_HASH, 'checkpoint must be an object {"number": N, "hash": "0x…"}'),
        ({"hash": CHECKPOINT_HASH}, "checkpoint.number is missing"),
        ({"number": 1200}, "checkpoint.hash is missing"),
        (
            {"number": 1200, "hash": CHECKPOINT_HASH, "round": 3},
            "checkpoint: unknown field(s) round",
        ),
        ({"number": "1200", "hash": CHECKPOINT_HASH}, "checkpoint.number must be an integer"),
        ({"number": True, "hash": CHECKPOINT_HASH}, "checkpoint.number must be an integer"),
        ({"number": 12.5, "hash": CHECKPOINT_HASH}, "checkpoint.number must be an integer"),
        (
            {"number": 0, "hash": CHECKPOINT_HASH},
            "checkpoint.number must be between 1 and 9223372036854775807 (block #0 is the "
            "genesis this spec defines)",
        ),
        ({"number": -5, "hash": CHECKPOINT_HASH}, "checkpoint.number must be between 1 and"),
        ({"number": 2**64, "hash": CHECKPOINT_HASH}, "checkpoint.number must be between 1 and"),
        ({"number": 1, "hash": 12}, "checkpoint.hash must be a string 0x and 64 hex digits"),
        (
            {"number": 1, "hash": "ab" * 32},
            "checkpoint.hash must be 0x and 64 hex digits, got '" + "ab" * 32 + "'",
        ),
        ({"number": 1, "hash": "0x" + "ab" * 31}, "checkpoint.hash must be 0x and 64 hex digits"),
        ({"number": 1, "hash": "0x" + "ab" * 33}, "checkpoint.hash must be 0x and 64 hex digits"),
        ({"number": 1, "hash": "0x" + "zz" * 32}, "checkpoint.hash must be 0x and 64 hex digits"),
        (
            {"number": 1, "hash": "0x" + "ab " * 21 + "a"},
            "checkpoint.hash must be 0x and 64 hex digits",
        ),
        (
            {"number": 1, "hash": "0x" + "a" * 5000},
            "checkpoint.hash must be 0x and 64 hex digits, got '0x" + "a" * 78 + "…'",
        ),
    ],
)
def test_invalid_checkpoint(checkpoint: Any, message: str) -> None:
    spec = spec_json()
    spec["checkpoint"] = checkpoint
    with pytest.raises(GenesisError) as info:
        parse_spec(spec)
    assert message in str(info.value)


def test_testnet_spec_starts_when_it_is_created(tmp_path: Path) -> None:
    before = time.time_ns() // 1_000_000
    create(tmp_path / "net", 2, 9944, 30333, 1000)
    after = time.time_ns() // 1_000_000
    spec = load_spec(tmp_path / "net" / "genesis.json")
    assert spec.chain_type == "Local"
    assert before <= spec.genesis_timestamp_ms <= after
    create(tmp_path / "old", 1, 9944, 30333, 1000, genesis_timestamp_ms=1_700_000_000_000)
    assert load_spec(tmp_path / "old" / "genesis.json").genesis_timestamp_ms == 1_700_000_000_000
