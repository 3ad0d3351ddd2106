"""The `epochs` module: at each epoch boundary, judge every node by its Time Tower. A node
that added enough proofs is eligible; one that missed is demoted to standby, and after
`max_misses` consecutive misses jailed for `jail_epochs`. Per class, eligible nodes with the
longest towers (then the lowest id) fill the active set. Deterministic, and every change is
an event."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from chain import codec
from chain.primitives import AccountId
from chain.runtime import nodes, towers
from chain.runtime.framework import AccountRef, Context, Module
from chain.runtime.nodes import NodeRecord, NodeStatus
from chain.state import StateReader, storage_key

NAME = "epochs"
CURRENT_KEY = storage_key(NAME, "current")
CHANGES_KEY = storage_key(NAME, "changes")


@dataclass(frozen=True, slots=True)
class EpochInfo:
    number: int = 0
    start_block: int = 0
    active: int = 0
    standby: int = 0
    jailed: int = 0

    def encode(self) -> bytes:
        return codec.encode(
            [
                codec.encode_uint(v)
                for v in (self.number, self.start_block, self.active, self.standby, self.jailed)
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> EpochInfo:
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 5:
            raise codec.CodecError("an epoch record has 5 fields")
        return cls(*(codec.uint(x, "epoch field") for x in item))


def current_epoch(state: StateReader) -> EpochInfo:
    data = state.get(CURRENT_KEY)
    return EpochInfo() if data is None else EpochInfo.decode(data)


def last_changes(state: StateReader) -> list[tuple[AccountId, str]]:
    """What the last transition changed: (node, "activated" | "demoted" | "jailed" | ...)."""
    data = state.get(CHANGES_KEY)
    if not data:
        return []
    item = codec.decode(data)
    if not isinstance(item, list):
        raise codec.CodecError("epoch changes are a list")
    out = []
    for entry in item:
        if not isinstance(entry, list) or len(entry) != 2:
            raise codec.CodecError("an epoch change is [node, change]")
        node, change = entry
        if not isinstance(change, bytes):
            raise codec.CodecError("an epoch change names what changed")
        out.append((AccountId(codec.fixed(node, 32, "node")), change.decode(errors="replace")))
    return out


class Epochs(Module):
    name = NAME

    def on_initialize(self, ctx: Context) -> None:
        length = ctx.config.towers.epoch_length
        number = ctx.env.number
        if number == 0 or number % length:
            return
        self.transition(ctx, number // length)

    def transition(self, ctx: Context, epoch: int) -> None:
        state = ctx.state
        config = ctx.config.towers
        records: dict[AccountId, NodeRecord] = {}
        eligible: defaultdict[str, list[tuple[int, AccountId]]] = defaultdict(list)
        changes: list[tuple[AccountId, str]] = []
        for node_id in nodes.node_ids(state):
            record = nodes.get_node(state, node_id)
            if record is None:
                continue
            tower = towers.get_tower(state, node_id)
            status, misses, until = record.status, record.misses, record.jailed_until
            if status is NodeStatus.JAILED and epoch >= until:
                status, misses = NodeStatus.STANDBY, 0
                changes.append((node_id, "unjailed"))
            if status is not NodeStatus.JAILED:
                if tower.proofs_in_epoch >= config.proofs_per_epoch:
                    misses = 0
                    eligible[record.node_class].append((tower.height, node_id))
                else:
                    misses += 1
                    if misses >= config.max_misses:
                        status, until = NodeStatus.JAILED, epoch + config.jail_epochs
                        changes.append((node_id, "jailed"))
            records[node_id] = replace(record, misses=misses, jailed_until=until, status=status)
            towers.put_tower(state, node_id, replace(tower, proofs_in_epoch=0))
        active: set[AccountId] = set()
        for node_class, candidates in eligible.items():
            size = config.classes[node_class].active_set_size if node_class in config.classes else 0
            ranked = sorted(candidates, key=lambda c: (-c[0], c[1]))
            active.update(node_id for _, node_id in ranked[:size])
        counts = {NodeStatus.ACTIVE: 0, NodeStatus.STANDBY: 0, NodeStatus.JAILED: 0}
        for node_id, record in records.items():
            old = nodes.get_node(state, node_id)
            new_status = (
                NodeStatus.ACTIVE
                if node_id in active
                else record.status
                if record.status is NodeStatus.JAILED
                else NodeStatus.STANDBY
            )
            was = old.status if old else NodeStatus.STANDBY
            if was is not NodeStatus.ACTIVE and new_status is NodeStatus.ACTIVE:
                changes.append((node_id, "activated"))
                ctx.emit(NAME, "NodeActivated", node=AccountRef(node_id), epoch=epoch)
            elif was is NodeStatus.ACTIVE and new_status is not NodeStatus.ACTIVE:
                changes.append((node_id, "demoted"))
                ctx.emit(
                    NAME, "NodeDemoted", node=AccountRef(node_id), epoch=epoch, misses=record.misses
                )
            if new_status is NodeStatus.JAILED and was is not NodeStatus.JAILED:
                ctx.emit(
                    NAME, "NodeJailed", node=AccountRef(node_id), until_epoch=record.jailed_until
                )
            if was is NodeStatus.JAILED and new_status is not NodeStatus.JAILED:
                ctx.emit(NAME, "NodeUnjailed", node=AccountRef(node_id), epoch=epoch)
            counts[new_status] += 1
            nodes.put_node(state, node_id, replace(record, status=new_status))
        info = EpochInfo(
            epoch,
            ctx.env.number,
            counts[NodeStatus.ACTIVE],
            counts[NodeStatus.STANDBY],
            counts[NodeStatus.JAILED],
        )
        state.put(CURRENT_KEY, info.encode())
        state.put(CHANGES_KEY, codec.encode([[n, c.encode()] for n, c in changes]))
        ctx.emit(
            NAME,
            "EpochStarted",
            epoch=epoch,
            active=info.active,
            standby=info.standby,
            jailed=info.jailed,
        )
