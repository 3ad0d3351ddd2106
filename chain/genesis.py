"""Chain specs: load and validate `genesis.json`, the built-in development spec, and the genesis
block and state they define."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.bindings
import rlp

from chain.address import AddressError, decode_address, encode_address
from chain.blocks import Block, Header
from chain.errors import GenesisError
from chain.primitives import (
    ZERO_HASH,
    AccountId,
    BlockNumber,
    Hash32,
    Slot,
    TimestampMs,
    merkle_root,
)
from chain.runtime import balances, billing, system, wallets
from chain.runtime.config import (
    NODE_CLASSES,
    BillingConfig,
    NodeClass,
    Prices,
    RuntimeConfig,
    TowerConfig,
)
from chain.state import Overlay, TrieState
from chain.trie import BLANK_ROOT, TrieCommit

MAX_SPEC_BYTES = 16 * 1024 * 1024
SUPPORTED_DISCRIMINANT_BITS = frozenset({1024})
"""Sizes whose class-group form encoding (100 bytes) the runtime has been checked against."""
CHAIN_TYPES = ("Development", "Local", "Live")
DEV_ENDOWMENT = 10**21
"""Each well-known development account starts with 1,000 units of 10^18."""
DEV_PRICES = Prices(
    cpu_millicore_hour=10**13,
    memory_gib_hour=5 * 10**15,
    disk_gib_hour=10**14,
    gpu_hour=10**18,
    replica_hour_minimum=10**15,
)
"""A core-hour costs 0.01 unit of 10^18, a GiB-hour of memory 0.005, a GPU-hour 1."""
MAX_VOLUME_RETENTION_SECONDS = 365 * 24 * 3600
MAX_AUTOSCALING_TIME_SCALE = 3600
"""A deleted application's data is not kept, nor billed to its owner, for more than a year."""
MAX_TIMESTAMP_MS = 2**63 - 1
"""Timestamps and block numbers a spec may name are below 2^63 (they are stored in 8 bytes)."""
_HASH_TEXT = re.compile(r"0x[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class GenesisWallet:
    address: AccountId
    """The group key: the wallet's account."""
    committee: tuple[AccountId, ...]
    """Node ids, ascending: member i (1-based) holds the share with identifier i."""
    threshold: int
    login_key: AccountId

    def to_json(self) -> dict[str, Any]:
        return {
            "address": encode_address(self.address),
            "committee": [encode_address(m) for m in self.committee],
            "threshold": self.threshold,
            "loginKey": encode_address(self.login_key),
        }


@dataclass(frozen=True, slots=True)
class ChainSpec:
    name: str
    id: str
    chain_type: str
    slot_duration_ms: int
    authorities: tuple[AccountId, ...]
    """Block authors (validators), in slot order."""
    balances: tuple[tuple[AccountId, int], ...]
    runtime: RuntimeConfig
    protocol_id: str = "sm"
    genesis_timestamp_ms: int = 0
    """When the chain starts (Unix milliseconds). The genesis header carries it and its slot, and
    no block's slot may come before it: without it, one authority could seal a long chain from
    its own slots since 1970 in seconds. Zero only for a development chain."""
    checkpoint: tuple[BlockNumber, Hash32] | None = None
    """A block (number, hash) every node of this chain has finalized, known out of band: sync
    refuses a chain without it (a weak-subjectivity anchor)."""
    wallets: tuple[GenesisWallet, ...] = ()
    """Platform wallets the chain starts with (a dev chain's funded dev wallet): their
    committees hold shares made outside the chain; `balances` funds them like any account."""

    def runtime_json(self) -> dict[str, int]:
        rc = self.runtime
        return {
            "baseFee": rc.base_fee,
            "byteFee": rc.byte_fee,
            "existentialDeposit": rc.existential_deposit,
            "maxTxBytes": rc.max_tx_bytes,
            "maxBlockBytes": rc.max_block_bytes,
            "maxBlockExtrinsics": rc.max_block_extrinsics,
            "maxFutureNonces": rc.max_future_nonces,
            "meteringPeriodSeconds": rc.metering_period_seconds,
            "volumeRetentionSeconds": rc.volume_retention_seconds,
            "autoscalingTimeScale": rc.autoscaling_time_scale,
            "walletCommitteeSize": rc.wallet_committee_size,
            "walletThreshold": rc.wallet_threshold,
        }

    def towers_json(self) -> dict[str, Any]:
        t = self.runtime.towers
        return {
            "discriminantBits": t.discriminant_bits,
            "minIterations": t.min_iterations,
            "anchorWindow": t.anchor_window,
            "epochLength": t.epoch_length,
            "proofsPerEpoch": t.proofs_per_epoch,
            "proofInterval": t.proof_interval,
            "maxMisses": t.max_misses,
            "jailEpochs": t.jail_epochs,
            "bond": str(t.bond),
            "classes": {
                name: {
                    "minCores": c.min_cores,
                    "minMemoryMb": c.min_memory_mb,
                    "minDiskGb": c.min_disk_gb,
                    "minGpus": c.min_gpus,
                    "activeSetSize": c.active_set_size,
                }
                for name, c in sorted(t.classes.items())
            },
        }

    def billing_json(self) -> dict[str, Any]:
        b = self.runtime.billing
        return {
            "gracePeriodSeconds": b.grace_seconds,
            "deletionPeriodSeconds": b.deletion_seconds,
            "measureSlackSeconds": b.measure_slack_seconds,
            **({"sudo": encode_address(b.sudo)} if b.sudo else {}),
            "prices": {
                name: {key: str(getattr(p, attr)) for key, attr in _PRICE_FIELDS.items()}
                for name, p in sorted(b.prices.items())
            },
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "chainType": self.chain_type,
            "protocolId": self.protocol_id,
            "consensus": {
                "slotDurationMs": self.slot_duration_ms,
                "genesisTimestampMs": self.genesis_timestamp_ms,
                "authorities": [encode_address(a) for a in self.authorities],
            },
            "runtime": self.runtime_json(),
            "towers": self.towers_json(),
            "billing": self.billing_json(),
            "balances": [[encode_address(a), str(amount)] for a, amount in self.balances],
            **({"wallets": [w.to_json() for w in self.wallets]} if self.wallets else {}),
            **self.checkpoint_json(),
        }

    def checkpoint_json(self) -> dict[str, Any]:
        if self.checkpoint is None:
            return {}
        number, block_hash = self.checkpoint
        return {"checkpoint": {"number": number, "hash": "0x" + block_hash.hex()}}

    @property
    def genesis_slot(self) -> Slot:
        return Slot(self.genesis_timestamp_ms // self.slot_duration_ms)


def _field(obj: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(obj, dict):
        raise GenesisError(f"{where or 'the chain spec'} must be an object")
    if key not in obj:
        raise GenesisError(f"{where}{key} is missing")
    value = obj[key]
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise GenesisError(f"{where}{key} must be an integer")
        try:
            value = int(value)
        except ValueError:
            shown = value if len(value) <= 40 else value[:40] + "…"
            raise GenesisError(f"{where}{key} must be an integer, got {shown!r}") from None
        if value < 0:
            raise GenesisError(f"{where}{key} must not be negative")
        return value
    if not isinstance(value, kind):
        raise GenesisError(f"{where}{key} must be a {kind.__name__}")
    return value


def _no_unknown(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise GenesisError(f"{where or 'the chain spec'}: unknown field(s) {', '.join(unknown)}")


def _account(text: Any, where: str) -> AccountId:
    if not isinstance(text, str):
        raise GenesisError(f"{where} must be an address string")
    try:
        return decode_address(text)
    except AddressError as exc:
        raise GenesisError(f"{where}: {exc}") from None


def parse_spec(data: Any) -> ChainSpec:
    """Validate a decoded chain spec; every problem names the field."""
    if not isinstance(data, dict):
        raise GenesisError("the chain spec must be a JSON object")
    _no_unknown(
        data,
        {
            "name",
            "id",
            "chainType",
            "protocolId",
            "consensus",
            "runtime",
            "towers",
            "billing",
            "balances",
            "wallets",
            "checkpoint",
        },
        "",
    )
    name = _field(data, "name", str, "")
    chain_id = _field(data, "id", str, "")
    chain_type = data.get("chainType", "Live")
    if chain_type not in CHAIN_TYPES:
        raise GenesisError(f"chainType must be one of {', '.join(CHAIN_TYPES)}")
    protocol_id = data.get("protocolId", "sm")
    if not isinstance(protocol_id, str) or not protocol_id:
        raise GenesisError("protocolId must be a non-empty string")
    consensus = _field(data, "consensus", dict, "")
    _no_unknown(consensus, {"slotDurationMs", "genesisTimestampMs", "authorities"}, "consensus")
    slot = _field(consensus, "slotDurationMs", int, "consensus.")
    if not 100 <= slot <= 600_000:
        raise GenesisError("consensus.slotDurationMs must be between 100 and 600000")
    genesis_timestamp = _genesis_timestamp(consensus, chain_type)
    raw_authorities = _field(consensus, "authorities", list, "consensus.")
    if not raw_authorities:
        raise GenesisError("consensus.authorities must name at least one authority")
    authorities = tuple(
        _account(a, f"consensus.authorities[{i}]") for i, a in enumerate(raw_authorities)
    )
    if len(set(authorities)) != len(authorities):
        raise GenesisError("consensus.authorities lists an authority twice")
    rt = _field(data, "runtime", dict, "")
    keys = {
        "baseFee": "base_fee",
        "byteFee": "byte_fee",
        "existentialDeposit": "existential_deposit",
        "maxTxBytes": "max_tx_bytes",
        "maxBlockBytes": "max_block_bytes",
        "maxBlockExtrinsics": "max_block_extrinsics",
        "maxFutureNonces": "max_future_nonces",
        "meteringPeriodSeconds": "metering_period_seconds",
        "volumeRetentionSeconds": "volume_retention_seconds",
        "autoscalingTimeScale": "autoscaling_time_scale",
        "walletCommitteeSize": "wallet_committee_size",
        "walletThreshold": "wallet_threshold",
    }
    _no_unknown(rt, set(keys), "runtime")
    required = ("baseFee", "byteFee", "existentialDeposit")
    runtime_args = {
        keys[k]: _field(rt, k, int, "runtime.") for k in keys if k in rt or k in required
    }
    runtime_args["towers"] = _parse_towers(data.get("towers", {}))
    runtime_args["billing"] = _parse_billing(data.get("billing", {}))
    runtime = RuntimeConfig(**runtime_args)
    if runtime.existential_deposit < 1:
        raise GenesisError("runtime.existentialDeposit must be at least 1")
    if runtime.max_tx_bytes < 256 or runtime.max_block_bytes < runtime.max_tx_bytes:
        raise GenesisError("runtime.maxTxBytes must be >= 256 and <= runtime.maxBlockBytes")
    if not wallets.valid_committee_size(runtime.wallet_threshold, runtime.wallet_committee_size):
        raise GenesisError(
            "runtime.walletThreshold and walletCommitteeSize need 2 <= threshold <= size <= 64, "
            "or threshold = size = 1 (a one-node committee)"
        )
    if runtime.metering_period_seconds < 1:
        raise GenesisError("runtime.meteringPeriodSeconds must be at least 1")
    if not 1 <= runtime.autoscaling_time_scale <= MAX_AUTOSCALING_TIME_SCALE:
        raise GenesisError(
            f"runtime.autoscalingTimeScale must be 1 to {MAX_AUTOSCALING_TIME_SCALE}"
        )
    if runtime.max_block_extrinsics < 1:
        raise GenesisError("runtime.maxBlockExtrinsics must be at least 1")
    if runtime.volume_retention_seconds > MAX_VOLUME_RETENTION_SECONDS:
        raise GenesisError(
            f"runtime.volumeRetentionSeconds must be at most {MAX_VOLUME_RETENTION_SECONDS}"
            " (one year)"
        )
    raw_balances = _field(data, "balances", list, "")
    endowed: dict[AccountId, int] = {}
    for i, entry in enumerate(raw_balances):
        if not isinstance(entry, list) or len(entry) != 2:
            raise GenesisError(f"balances[{i}] must be [address, amount]")
        who = _account(entry[0], f"balances[{i}][0]")
        amount = _field({"amount": entry[1]}, "amount", int, f"balances[{i}].")
        if who in endowed:
            raise GenesisError(f"balances[{i}]: {entry[0]} is endowed twice")
        if amount < runtime.existential_deposit or amount >= 2**128:
            raise GenesisError(
                f"balances[{i}]: amount must be >= the existential deposit and < 2^128"
            )
        endowed[who] = amount
    if sum(endowed.values()) >= 2**128:
        raise GenesisError("balances add up to more than 2^128")
    return ChainSpec(
        name=name,
        id=chain_id,
        chain_type=chain_type,
        slot_duration_ms=slot,
        authorities=authorities,
        balances=tuple(endowed.items()),
        runtime=runtime,
        protocol_id=protocol_id,
        genesis_timestamp_ms=genesis_timestamp,
        checkpoint=_parse_checkpoint(data["checkpoint"]) if "checkpoint" in data else None,
        wallets=_parse_wallets(data.get("wallets", [])),
    )


def _parse_wallets(raw: Any) -> tuple[GenesisWallet, ...]:
    """`wallets`: [{address, committee, threshold, loginKey}], each address a valid group key
    named once, each committee ascending and of a size the runtime allows."""
    if not isinstance(raw, list):
        raise GenesisError("wallets must be a list")
    out: list[GenesisWallet] = []
    for i, body in enumerate(raw):
        where = f"wallets[{i}]."
        _no_unknown(body, {"address", "committee", "threshold", "loginKey"}, f"wallets[{i}]")
        address = _account(_field(body, "address", str, where), f"{where}address")
        if not nacl.bindings.crypto_core_ed25519_is_valid_point(address):
            raise GenesisError(f"{where}address is not a group key (an Ed25519 point)")
        if any(w.address == address for w in out):
            raise GenesisError(f"{where}address names a wallet twice")
        members = _field(body, "committee", list, where)
        committee = tuple(_account(m, f"{where}committee[{j}]") for j, m in enumerate(members))
        if list(committee) != sorted(set(committee)):
            raise GenesisError(f"{where}committee must list distinct node ids in ascending order")
        threshold = _field(body, "threshold", int, where)
        if not wallets.valid_committee_size(threshold, len(committee)):
            raise GenesisError(
                f"{where}threshold and committee need 2 <= threshold <= size <= "
                f"{wallets.MAX_COMMITTEE}, or threshold = size = 1"
            )
        login = _account(_field(body, "loginKey", str, where), f"{where}loginKey")
        out.append(GenesisWallet(address, committee, threshold, login))
    return tuple(out)


def _genesis_timestamp(consensus: dict[str, Any], chain_type: str) -> int:
    """`consensus.genesisTimestampMs`: required but for a development chain, which starts at 0
    so that its genesis (and the database of a dev node) stays the same from one run to the next."""
    if "genesisTimestampMs" not in consensus:
        if chain_type == "Development":
            return 0
        raise GenesisError(
            f"consensus.genesisTimestampMs is missing: a {chain_type} chain needs the time it "
            "starts (Unix milliseconds), which bounds the slots of its first blocks"
        )
    value = consensus["genesisTimestampMs"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenesisError("consensus.genesisTimestampMs must be an integer (Unix milliseconds)")
    if not 0 <= value <= MAX_TIMESTAMP_MS:
        raise GenesisError(f"consensus.genesisTimestampMs must be between 0 and {MAX_TIMESTAMP_MS}")
    return int(value)


def _parse_checkpoint(raw: Any) -> tuple[BlockNumber, Hash32]:
    if not isinstance(raw, dict):
        raise GenesisError('checkpoint must be an object {"number": N, "hash": "0x…"}')
    _no_unknown(raw, {"number", "hash"}, "checkpoint")
    if "number" not in raw:
        raise GenesisError("checkpoint.number is missing")
    number = raw["number"]
    if isinstance(number, bool) or not isinstance(number, int):
        raise GenesisError("checkpoint.number must be an integer")
    if not 1 <= number <= MAX_TIMESTAMP_MS:
        raise GenesisError(
            f"checkpoint.number must be between 1 and {MAX_TIMESTAMP_MS} (block #0 is the "
            "genesis this spec defines)"
        )
    if "hash" not in raw:
        raise GenesisError("checkpoint.hash is missing")
    return BlockNumber(number), parse_block_hash(raw["hash"], "checkpoint.hash")


def parse_block_hash(text: Any, where: str) -> Hash32:
    """A block hash written as 0x and 64 hex digits; a GenesisError naming `where` otherwise."""
    if not isinstance(text, str):
        raise GenesisError(f"{where} must be a string 0x and 64 hex digits")
    if not _HASH_TEXT.fullmatch(text):
        shown = text if len(text) <= 80 else text[:80] + "…"
        raise GenesisError(f"{where} must be 0x and 64 hex digits, got {shown!r}")
    return Hash32(bytes.fromhex(text[2:]))


_TOWER_FIELDS = {
    "discriminantBits": "discriminant_bits",
    "minIterations": "min_iterations",
    "anchorWindow": "anchor_window",
    "epochLength": "epoch_length",
    "proofsPerEpoch": "proofs_per_epoch",
    "proofInterval": "proof_interval",
    "maxMisses": "max_misses",
    "jailEpochs": "jail_epochs",
    "bond": "bond",
}
_CLASS_FIELDS = {
    "minCores": "min_cores",
    "minMemoryMb": "min_memory_mb",
    "minDiskGb": "min_disk_gb",
    "minGpus": "min_gpus",
    "activeSetSize": "active_set_size",
}


_PRICE_FIELDS = {
    "cpuMillicoreHour": "cpu_millicore_hour",
    "memoryGibHour": "memory_gib_hour",
    "diskGibHour": "disk_gib_hour",
    "gpuHour": "gpu_hour",
    "replicaHourMinimum": "replica_hour_minimum",
}
MAX_PRICE = 2**64 - 1
"""A price fits in 8 bytes: a period's charge stays far below 2^128."""


def _parse_billing(raw: Any) -> BillingConfig:
    """`billing`: prices per node class, grace and deletion periods, the sudo account."""
    if not isinstance(raw, dict):
        raise GenesisError("billing must be an object")
    _no_unknown(
        raw,
        {"gracePeriodSeconds", "deletionPeriodSeconds", "measureSlackSeconds", "sudo", "prices"},
        "billing",
    )
    values: dict[str, Any] = {}
    if "gracePeriodSeconds" in raw:
        values["grace_seconds"] = _field(raw, "gracePeriodSeconds", int, "billing.")
    if "deletionPeriodSeconds" in raw:
        values["deletion_seconds"] = _field(raw, "deletionPeriodSeconds", int, "billing.")
    if "measureSlackSeconds" in raw:
        values["measure_slack_seconds"] = _field(raw, "measureSlackSeconds", int, "billing.")
    if "sudo" in raw:
        values["sudo"] = bytes(_account(raw["sudo"], "billing.sudo"))
    if "prices" in raw:
        parsed = {}
        for name, body in _field(raw, "prices", dict, "billing.").items():
            if name not in NODE_CLASSES:
                raise GenesisError(f"billing.prices.{name}: classes are {', '.join(NODE_CLASSES)}")
            where = f"billing.prices.{name}."
            if not isinstance(body, dict):
                raise GenesisError(f"{where[:-1]} must be an object")
            _no_unknown(body, set(_PRICE_FIELDS), where[:-1])
            amounts = {
                a: _field(body, k, int, where) for k, a in _PRICE_FIELDS.items() if k in body
            }
            if any(v > MAX_PRICE for v in amounts.values()):
                raise GenesisError(f"{where[:-1]}: a price is at most {MAX_PRICE}")
            parsed[name] = Prices(**amounts)
        values["prices"] = parsed
    config = BillingConfig(**values)
    if config.grace_seconds > config.deletion_seconds:
        raise GenesisError(
            "billing.gracePeriodSeconds must not exceed billing.deletionPeriodSeconds"
        )
    return config


def _parse_towers(raw: Any) -> TowerConfig:
    if not isinstance(raw, dict):
        raise GenesisError("towers must be an object")
    _no_unknown(raw, {*_TOWER_FIELDS, "classes"}, "towers")
    values: dict[str, Any] = {
        attr: _field(raw, key, int, "towers.") for key, attr in _TOWER_FIELDS.items() if key in raw
    }
    if "classes" in raw:
        classes = _field(raw, "classes", dict, "towers.")
        parsed = {}
        for name, body in classes.items():
            if name not in NODE_CLASSES:
                raise GenesisError(f"towers.classes.{name}: classes are {', '.join(NODE_CLASSES)}")
            where = f"towers.classes.{name}."
            if not isinstance(body, dict):
                raise GenesisError(f"{where[:-1]} must be an object")
            _no_unknown(body, set(_CLASS_FIELDS), where[:-1])
            parsed[name] = NodeClass(
                **{a: _field(body, k, int, where) for k, a in _CLASS_FIELDS.items() if k in body}
            )
        values["classes"] = parsed
    try:
        towers = TowerConfig(**values)
    except TypeError as exc:
        raise GenesisError(f"towers: {exc}") from None
    if towers.discriminant_bits not in SUPPORTED_DISCRIMINANT_BITS:
        raise GenesisError(
            f"towers.discriminantBits must be one of {sorted(SUPPORTED_DISCRIMINANT_BITS)}"
        )
    for key in (
        "minIterations", "anchorWindow", "epochLength", "proofsPerEpoch", "proofInterval",
        "maxMisses",
    ):  # fmt: skip
        if getattr(towers, _TOWER_FIELDS[key]) < 1:
            raise GenesisError(f"towers.{key} must be at least 1")
    if towers.proofs_per_epoch * towers.proof_interval > towers.epoch_length:
        raise GenesisError(
            f"towers: {towers.proofs_per_epoch} proofs an epoch, {towers.proof_interval} blocks "
            f"apart, do not fit in an epoch of {towers.epoch_length} blocks: no node could stay "
            "eligible"
        )
    return towers


def load_spec(path: Path) -> ChainSpec:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise GenesisError(f"cannot read chain spec {path}: {exc.strerror}") from None
    if size > MAX_SPEC_BYTES:
        raise GenesisError(f"chain spec {path} is {size} bytes, at most {MAX_SPEC_BYTES}")
    try:
        data = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError) as exc:
        raise GenesisError(f"cannot read chain spec {path}: {exc}") from None
    except ValueError as exc:  # JSONDecodeError, or a number too long to convert
        raise GenesisError(f"chain spec {path} is not valid JSON: {exc}") from None
    try:
        return parse_spec(data)
    except GenesisError as exc:
        raise GenesisError(f"chain spec {path}: {exc}") from None


def dev_spec(authorities: tuple[AccountId, ...], endowed: tuple[AccountId, ...]) -> ChainSpec:
    return ChainSpec(
        name="Development",
        id="statemesh_dev",
        chain_type="Development",
        slot_duration_ms=1000,
        authorities=authorities,
        balances=tuple((who, DEV_ENDOWMENT) for who in endowed),
        runtime=RuntimeConfig(
            base_fee=1_000_000,
            byte_fee=1_000,
            existential_deposit=1_000_000,
            # Small proofs and short epochs: a fresh dev chain shows a growing tower and an
            # epoch transition within a minute. A proof every 4 blocks (2 or 3 an epoch, where 1
            # is needed): each costs its prover ~50 ms of a core at 2,000 iterations and every
            # node ~40 ms to verify, mostly deriving the discriminant, which at a proof a block
            # was a tenth of a core for an idle dev node.
            towers=TowerConfig(
                min_iterations=2_000, epoch_length=10, proof_interval=4, max_misses=2, jail_epochs=1
            ),
            metering_period_seconds=10,
            # A deleted application's volumes are gone half a minute later: a dev chain shows
            # the whole retention period.
            volume_retention_seconds=30,
            # Autoscaling windows and policy periods pass 10 times faster: the default 5-minute
            # scale-down window lasts 30 s, three metering periods.
            autoscaling_time_scale=10,
            # Billing shows within a minute: invoices a period after their period (10 s),
            # suspension 30 s after an invoice stays unpaid, deletion two minutes later.
            billing=BillingConfig(
                prices={name: DEV_PRICES for name in NODE_CLASSES},
                grace_seconds=30,
                deletion_seconds=150,
                sudo=bytes(authorities[0]) if authorities else b"",
            ),
        ),
    )


@dataclass(frozen=True, slots=True)
class Genesis:
    block: Block
    commit: TrieCommit

    @property
    def hash(self) -> Hash32:
        return self.block.hash


def build_genesis(spec: ChainSpec, empty_state: TrieState) -> Genesis:
    """The genesis state (endowed accounts, total issuance) and block. `empty_state` reads
    the blank trie in the node's store."""
    if empty_state.root != BLANK_ROOT:
        raise GenesisError("genesis is built on the empty state")
    overlay = Overlay(empty_state)
    for who, amount in spec.balances:
        system.put_account(overlay, who, system.AccountInfo(0, amount))
    balances.set_total_issuance(overlay, sum(amount for _, amount in spec.balances))
    # The chain's identity, its authorities and its runtime parameters live in the genesis
    # state, so two specs that differ in any of them have different genesis hashes.
    overlay.put(system.CHAIN_ID_KEY, spec.id.encode())
    overlay.put(system.AUTHORITIES_KEY, rlp.encode(list(spec.authorities)))
    overlay.put(system.RUNTIME_CONFIG_KEY, json.dumps(spec.runtime_json(), sort_keys=True).encode())
    overlay.put(billing.GENESIS_KEY, json.dumps(spec.billing_json(), sort_keys=True).encode())
    for w in spec.wallets:
        record = wallets.WalletRecord(w.committee, w.threshold, w.login_key, registered_at=0)
        wallets.put_wallet(overlay, w.address, record)
    commit = empty_state.commit(overlay.changes)
    header = Header(
        parent_hash=ZERO_HASH,
        number=BlockNumber(0),
        state_root=commit.root,
        extrinsics_root=merkle_root([]),
        timestamp=TimestampMs(spec.genesis_timestamp_ms),
        slot=spec.genesis_slot,
        author=b"\x00" * 32,
        seal=b"",
    )
    return Genesis(Block(header, ()), commit)
