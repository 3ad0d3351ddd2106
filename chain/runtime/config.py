"""Parameters of the runtime that come from genesis and are the same on every node."""

from __future__ import annotations

from dataclasses import dataclass, field

NODE_CLASSES = ("cpu", "gpu", "storage")


@dataclass(frozen=True, slots=True)
class NodeClass:
    """The least hardware a node must declare to register in a class, and how many of the
    class are active at once."""

    min_cores: int
    min_memory_mb: int
    min_disk_gb: int
    min_gpus: int = 0
    active_set_size: int = 16


def _default_classes() -> dict[str, NodeClass]:
    return {
        "cpu": NodeClass(min_cores=1, min_memory_mb=512, min_disk_gb=1),
        "gpu": NodeClass(min_cores=2, min_memory_mb=4096, min_disk_gb=10, min_gpus=1),
        "storage": NodeClass(min_cores=1, min_memory_mb=1024, min_disk_gb=100),
    }


@dataclass(frozen=True, slots=True)
class TowerConfig:
    """Time Towers and epochs: how presence is proven and judged."""

    discriminant_bits: int = 1024
    min_iterations: int = 100_000
    """The least VDF iterations a proof must carry (about 0.5 s on a 2-core machine)."""
    anchor_window: int = 32
    """A proof's anchor block must be one of the last this-many blocks."""
    epoch_length: int = 600
    """Blocks per epoch."""
    proofs_per_epoch: int = 1
    """Proofs a node must add in an epoch to stay eligible."""
    proof_interval: int = 1
    """Blocks from a node's proof to its next one. Every node's tower grows at most one proof
    per this many blocks, so a longer interval makes presence cheaper for everyone (each proof
    is proven once and verified by every node) without favouring anyone."""
    max_misses: int = 3
    """Consecutive missed epochs after which a node is jailed."""
    jail_epochs: int = 2
    bond: int = 0
    """Reserved from the operator at registration, returned at deregistration."""
    classes: dict[str, NodeClass] = field(default_factory=_default_classes)


@dataclass(frozen=True, slots=True)
class Prices:
    """What an hour of each resource costs on nodes of one class, in the smallest unit."""

    cpu_millicore_hour: int = 0
    """Per millicore of CPU time used for an hour (one core busy for an hour: 1,000 of them)."""
    memory_gib_hour: int = 0
    """Per GiB of peak memory held for an hour of assignment."""
    disk_gib_hour: int = 0
    """Per GiB of peak disk held for an hour of assignment."""
    gpu_hour: int = 0
    """Per GPU reserved for an hour of assignment."""
    replica_hour_minimum: int = 0
    """The least a replica costs per hour it is assigned, whatever it used."""


def _default_prices() -> dict[str, Prices]:
    return {name: Prices() for name in NODE_CLASSES}


@dataclass(frozen=True, slots=True)
class BillingConfig:
    """Hourly billing: prices per node class (genesis values; the sudo account may change them
    on chain), and how long an unpaid invoice waits before its applications stop and go."""

    prices: dict[str, Prices] = field(default_factory=_default_prices)
    grace_seconds: int = 86400
    """After an invoice is issued, how long it may stay unpaid before the wallet's applications
    are suspended."""
    deletion_seconds: int = 30 * 86400
    """How long an application stays suspended before it is deleted."""
    sudo: bytes = b""
    """The account allowed to change prices (the dev chain's sudo); empty: nobody."""
    measure_slack_seconds: int = 30
    """A node measures usage between its meter's samples, not exactly over a period: how far
    past the time a replica was placed its CPU time and uptime may reach before a report is
    refused (they are charged up to the time placed only)."""


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    base_fee: int
    """Charged for every transaction, burned."""
    byte_fee: int
    """Charged per byte of the encoded transaction, burned."""
    existential_deposit: int
    """The least balance a new account may be created with."""
    max_tx_bytes: int = 64 * 1024
    max_block_bytes: int = 5 * 1024 * 1024
    max_block_extrinsics: int = 10_000
    max_future_nonces: int = 64
    """How far ahead of the account nonce the pool accepts a transaction."""
    towers: TowerConfig = field(default_factory=TowerConfig)
    metering_period_seconds: int = 3600
    """Nodes report their replicas' usage once per period of this length."""
    volume_retention_seconds: int = 86400
    """How long the persistent volumes of a deleted application are kept (and billed) before
    the nodes that hold them remove them: time for an owner to notice a mistaken delete."""
    autoscaling_time_scale: int = 1
    """Seconds of autoscaling time (stabilization windows, policy periods) per second of chain
    time: 1 on a real chain; a dev chain runs them faster so that a window passes in a demo."""
    autoscaling_apps_per_block: int = 300
    """Autoscaled applications one block decides at most: the pass of a metering period goes on
    over the following blocks (about 100 ms of the pass per block at 10,000 applications)."""
    wallet_committee_size: int = 3
    """Nodes that hold shares of each platform wallet's key."""
    wallet_threshold: int = 2
    """Shares needed to sign for a platform wallet."""
    billing: BillingConfig = field(default_factory=BillingConfig)

    def fee(self, encoded_length: int) -> int:
        return self.base_fee + self.byte_fee * encoded_length
