"""The `nodes` module: the registry of compute nodes (operator, class, declared capacity,
network address, bond) and their standing (standby, active, jailed) that epochs decide. A node
may declare no compute at all: it validates and proves presence, and holds no replica."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from chain import codec
from chain.primitives import AccountId
from chain.runtime import system
from chain.runtime.config import NODE_CLASSES
from chain.runtime.framework import AccountRef, Arg, ArgKind, CallDef, Context, Module
from chain.signature import verify
from chain.state import Overlay, StateReader, storage_key

NAME = "nodes"
REGISTRATION_DOMAIN = b"statemesh/node-registration/v1"
_NODE = storage_key(NAME, "node")
INDEX_KEY = storage_key(NAME, "index")
OFFER_CHANGED_KEY = storage_key(NAME, "offerChanged")
"""Set in a block where an active node changed its declared capacity or left: replicas are
placed again at that block's end (the `apps` module reads it). Cleared as the next block starts."""


class NodeStatus(enum.IntEnum):
    STANDBY = 0
    ACTIVE = 1
    JAILED = 2


class NodesError(enum.Enum):
    NODE_EXISTS = "NodeExists"
    UNKNOWN_NODE = "UnknownNode"
    NOT_OPERATOR = "NotOperator"
    BAD_NODE_SIGNATURE = "BadNodeSignature"
    UNKNOWN_CLASS = "UnknownClass"
    BELOW_CLASS_MINIMUM = "BelowClassMinimum"
    INSUFFICIENT_BOND = "InsufficientBond"


@dataclass(frozen=True, slots=True)
class NodeRecord:
    operator: AccountId
    node_class: str
    cores: int
    memory_mb: int
    disk_gb: int
    gpus: int
    address: bytes
    """The node's p2p multiaddr, as the operator declared it."""
    bond: int
    registered_at: int
    status: NodeStatus = NodeStatus.STANDBY
    misses: int = 0
    """Consecutive epochs without enough proofs."""
    jailed_until: int = 0
    """The first epoch in which a jailed node may be eligible again."""

    def encode(self) -> bytes:
        u = codec.encode_uint
        return codec.encode(
            [
                self.operator,
                self.node_class.encode(),
                u(self.cores),
                u(self.memory_mb),
                u(self.disk_gb),
                u(self.gpus),
                self.address,
                u(self.bond),
                u(self.registered_at),
                u(self.status),
                u(self.misses),
                u(self.jailed_until),
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> NodeRecord:
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 12:
            raise codec.CodecError("a node record has 12 fields")
        op, klass, cores, mem, disk, gpus, address, bond, at, status, misses, jailed = item
        return cls(
            AccountId(codec.fixed(op, 32, "operator")),
            _text(klass, "class"),
            codec.uint(cores, "cores"),
            codec.uint(mem, "memory"),
            codec.uint(disk, "disk"),
            codec.uint(gpus, "gpus"),
            _text(address, "address").encode(),
            codec.uint(bond, "bond"),
            codec.uint(at, "registered at"),
            NodeStatus(codec.uint(status, "status")),
            codec.uint(misses, "misses"),
            codec.uint(jailed, "jailed until"),
        )


def _capacity(record: NodeRecord) -> tuple[int, int, int, int]:
    return (record.cores, record.memory_mb, record.disk_gb, record.gpus)


def _text(item: codec.RlpItem, name: str) -> str:
    if not isinstance(item, bytes):
        raise codec.CodecError(f"{name} must be bytes")
    return item.decode(errors="replace")


def node_key(node_id: bytes) -> bytes:
    return _NODE + node_id


def get_node(state: StateReader, node_id: bytes) -> NodeRecord | None:
    data = state.get(node_key(node_id))
    return None if data is None else NodeRecord.decode(data)


def put_node(state: Overlay, node_id: bytes, record: NodeRecord) -> None:
    state.put(node_key(node_id), record.encode())


def node_ids(state: StateReader) -> list[AccountId]:
    """Every registered node, in id order."""
    data = state.get(INDEX_KEY) or b""
    return [AccountId(data[i : i + 32]) for i in range(0, len(data), 32)]


def _set_index(state: Overlay, ids: list[AccountId]) -> None:
    state.put(INDEX_KEY, b"".join(sorted(ids)))


def registration_payload(operator: bytes) -> bytes:
    """What a node key signs to let `operator` register it."""
    return REGISTRATION_DOMAIN + operator


def offer_changed(state: StateReader) -> bool:
    """Whether an active node changed its declared capacity or left in the current block."""
    return state.get(OFFER_CHANGED_KEY) is not None


class Nodes(Module):
    name = NAME

    def calls(self) -> list[CallDef]:
        capacity = (
            Arg("cores", ArgKind.U64),
            Arg("memory_mb", ArgKind.U64),
            Arg("disk_gb", ArgKind.U64),
            Arg("gpus", ArgKind.U64),
        )
        address = Arg("address", ArgKind.BYTES, max_length=256)
        return [
            CallDef(
                NAME,
                "register",
                (
                    Arg("node_id", ArgKind.ACCOUNT),
                    Arg("node_signature", ArgKind.BYTES, max_length=64),
                    Arg("node_class", ArgKind.BYTES, max_length=16),
                    *capacity,
                    address,
                ),
                self.register,
                "Register a node (its key signs the operator's account) in a class.",
            ),
            CallDef(
                NAME,
                "update",
                (Arg("node_id", ArgKind.ACCOUNT), *capacity, address),
                self.update,
                "Change a node's declared capacity and address.",
            ),
            CallDef(
                NAME,
                "deregister",
                (Arg("node_id", ArgKind.ACCOUNT),),
                self.deregister,
                "Remove a node and return its bond.",
            ),
        ]

    def on_initialize(self, ctx: Context) -> None:
        if offer_changed(ctx.state):
            ctx.state.delete(OFFER_CHANGED_KEY)

    def _check_capacity(
        self, ctx: Context, node_class: str, cores: int, memory_mb: int, disk_gb: int, gpus: int
    ) -> None:
        """The class must exist, and the capacity meet its minimums or be zero throughout (a node
        that offers no compute now)."""
        classes = ctx.config.towers.classes
        if node_class not in classes:
            raise self.fail(
                NodesError.UNKNOWN_CLASS,
                f"class {node_class!r} is not one of {', '.join(sorted(classes))}",
            )
        if not any((cores, memory_mb, disk_gb, gpus)):
            return
        need = classes[node_class]
        for what, have, least in (
            ("cores", cores, need.min_cores),
            ("memory_mb", memory_mb, need.min_memory_mb),
            ("disk_gb", disk_gb, need.min_disk_gb),
            ("gpus", gpus, need.min_gpus),
        ):
            if have < least:
                raise self.fail(
                    NodesError.BELOW_CLASS_MINIMUM,
                    f"class {node_class} needs {what} >= {least}, declared {have}",
                )

    def register(
        self,
        ctx: Context,
        sender: AccountId,
        node_id: AccountId,
        node_signature: bytes,
        node_class_raw: bytes,
        cores: int,
        memory_mb: int,
        disk_gb: int,
        gpus: int,
        address: bytes,
    ) -> None:
        state = ctx.state
        if get_node(state, node_id) is not None:
            raise self.outdated(NodesError.NODE_EXISTS, f"node 0x{node_id.hex()} is registered")
        if not verify(node_id, registration_payload(sender), node_signature):
            raise self.fail(
                NodesError.BAD_NODE_SIGNATURE,
                "node_signature is not the node key's signature of the operator account",
            )
        node_class = node_class_raw.decode(errors="replace")
        if node_class not in NODE_CLASSES:
            raise self.fail(
                NodesError.UNKNOWN_CLASS, f"class {node_class!r} is not one of cpu, gpu, storage"
            )
        self._check_capacity(ctx, node_class, cores, memory_mb, disk_gb, gpus)
        bond = ctx.config.towers.bond
        if bond:
            account = system.account(state, sender)
            if account.free < bond:
                raise self.fail(
                    NodesError.INSUFFICIENT_BOND,
                    f"the bond is {bond}, the free balance {account.free}",
                )
            system.put_account(state, sender, replace(account, free=account.free - bond))
            reserve(state, sender, bond)
        record = NodeRecord(
            sender, node_class, cores, memory_mb, disk_gb, gpus, address, bond, ctx.env.number
        )
        put_node(state, node_id, record)
        _set_index(state, [*node_ids(state), node_id])
        ctx.emit(
            NAME, "NodeRegistered", node=AccountRef(node_id), operator=AccountRef(sender),
            node_class=node_class, bond=bond,
        )  # fmt: skip

    def _owned(self, ctx: Context, sender: AccountId, node_id: AccountId) -> NodeRecord:
        record = get_node(ctx.state, node_id)
        if record is None:
            raise self.fail(NodesError.UNKNOWN_NODE, f"node 0x{node_id.hex()} is not registered")
        if record.operator != sender:
            raise self.fail(NodesError.NOT_OPERATOR, "only the node's operator may do that")
        return record

    def update(
        self,
        ctx: Context,
        sender: AccountId,
        node_id: AccountId,
        cores: int,
        memory_mb: int,
        disk_gb: int,
        gpus: int,
        address: bytes,
    ) -> None:
        record = self._owned(ctx, sender, node_id)
        self._check_capacity(ctx, record.node_class, cores, memory_mb, disk_gb, gpus)
        updated = replace(
            record, cores=cores, memory_mb=memory_mb, disk_gb=disk_gb, gpus=gpus, address=address
        )
        put_node(ctx.state, node_id, updated)
        if record.status is NodeStatus.ACTIVE and _capacity(updated) != _capacity(record):
            # The node may no longer fit what it holds (or may fit what is pending): place again
            # at this block's end rather than wait for the epoch boundary.
            ctx.state.put(OFFER_CHANGED_KEY, b"\x01")
        ctx.emit(NAME, "NodeUpdated", node=AccountRef(node_id))

    def deregister(self, ctx: Context, sender: AccountId, node_id: AccountId) -> None:
        record = self._owned(ctx, sender, node_id)
        state = ctx.state
        if record.bond:
            unreserve(state, sender, record.bond)
            account = system.account(state, sender)
            system.put_account(state, sender, replace(account, free=account.free + record.bond))
        state.delete(node_key(node_id))
        _set_index(state, [n for n in node_ids(state) if n != node_id])
        if record.status is NodeStatus.ACTIVE:
            state.put(OFFER_CHANGED_KEY, b"\x01")  # its replicas move at this block's end
        ctx.emit(NAME, "NodeDeregistered", node=AccountRef(node_id), bond=record.bond)


_RESERVED = storage_key(NAME, "reserved")


def reserved(state: StateReader, who: bytes) -> int:
    """Funds of `who` held as bonds: out of the free balance, still part of the issuance."""
    data = state.get(_RESERVED + who)
    return 0 if data is None else int.from_bytes(data, "big")


def reserve(state: Overlay, who: bytes, amount: int) -> None:
    state.put(_RESERVED + who, (reserved(state, who) + amount).to_bytes(16, "big"))


def unreserve(state: Overlay, who: bytes, amount: int) -> None:
    left = reserved(state, who) - amount
    if left:
        state.put(_RESERVED + who, left.to_bytes(16, "big"))
    else:
        state.delete(_RESERVED + who)
