"""The `apps` module: applications on chain. Each is owned by the account that created it, keeps
its canonical manifest per revision, and has its replicas placed on active nodes by the
deterministic scheduler: after any change to an app, after an active node changes its declared
capacity or leaves, at every epoch boundary (nodes come and go), and block by block while a
rolling update is under way. Every creation of a name is a new instance; a deleted instance
leaves a tombstone while the nodes keep its persistent volumes (the genesis retention period)."""

from __future__ import annotations

import bisect
import enum
import json
from dataclasses import dataclass, replace

from chain import codec
from chain.primitives import AccountId
from chain.runtime import app_scaling, billing, nodes, towers, wallets
from chain.runtime.app_reads import follow_reads, refused_reads
from chain.runtime.app_scaling import AutoscalePass, AutoscaleState, ScalingDecision
from chain.runtime.autoscaling import History, decide
from chain.runtime.framework import (
    AccountRef,
    Arg,
    ArgKind,
    CallDef,
    Context,
    Module,
    get_uints,
    put_uints,
)
from chain.runtime.manifest import MAX_MANIFEST_BYTES, Manifest, ManifestError, decode_manifest
from chain.runtime.scheduler import (
    AppDemand,
    NodeInfo,
    ReplicaId,
    Resources,
    rollout_step,
    schedule,
)
from chain.state import Overlay, StateReader, storage_key

NAME = "apps"
MAX_REPLICAS = 1000
MAX_NAME_BYTES = 63
"""An application's name is a DNS label."""
_APP = storage_key(NAME, "app")
_MANIFEST = storage_key(NAME, "manifest")
_PLACEMENT = storage_key(NAME, "placement")
INDEX_KEY = storage_key(NAME, "index")
DIRTY_KEY = storage_key(NAME, "dirty")
"""Set when an app changed in this block: placements are computed again at its end."""
ROLLING_KEY = storage_key(NAME, "rolling")
"""Set while some app still runs copies of an older revision."""
_HOST = storage_key(NAME, "host")
"""Ingress host -> the application that holds it: one application per host."""
_HOST_OF = storage_key(NAME, "hostOf")
"""Application -> the ingress host it holds."""
_TOMBSTONE = storage_key(NAME, "tombstone")
"""Instance -> the tombstone of a deleted application whose volumes are still retained."""
_TOMBSTONES_OF = storage_key(NAME, "tombstonesOf")
"""Name -> the instances of that name that are tombstoned, oldest first."""
_EXPIRY = storage_key(NAME, "expiry")
"""Sequence number -> a tombstoned instance: the expiry queue. Tombstones enter it in the order
of their deletion, which is the order of their expiry since block timestamps only grow and the
retention period is fixed by genesis."""
EXPIRY_BOUNDS_KEY = storage_key(NAME, "expiryBounds")
"""[first, end): the sequence numbers in the expiry queue."""
MAX_EXPIRED_PER_BLOCK = 64
"""Tombstones removed at most per block; the rest wait for the next blocks, so that a burst of
deletions never makes one block slow. Their volumes are kept a few blocks longer, never less."""
NEXT_INSTANCE_KEY = storage_key(NAME, "nextInstance")
"""The instance the next created application gets: instances start at 1 and are never reused,
so an application deleted and created again under its name (by anyone) is a new instance whose
replicas start with empty volumes."""


class AppsError(enum.Enum):
    BAD_MANIFEST = "BadManifest"
    UNKNOWN_REFERENCE = "UnknownReference"
    """The manifest reads a config or secret (or a key of one) its owner does not have."""
    NAME_TAKEN = "NameTaken"
    UNKNOWN_APP = "UnknownApp"
    NOT_OWNER = "NotOwner"
    NAME_MISMATCH = "NameMismatch"
    TOO_MANY_REPLICAS = "TooManyReplicas"
    HOST_TAKEN = "HostTaken"
    AUTOSCALED = "Autoscaled"
    UNKNOWN_WALLET = "UnknownWallet"
    NOT_WALLET_OWNER = "NotWalletOwner"
    WALLET_IN_ARREARS = "WalletInArrears"


@dataclass(frozen=True, slots=True)
class AppRecord:
    owner: AccountId
    revision: int
    manifest_hash: bytes
    replicas: int
    """Desired replicas: the manifest's, or what `scale` set since."""
    node_class: str
    resources: Resources
    """Per replica, what the scheduler reserves (kept here so placing never re-reads manifests)."""
    max_surge: int
    max_unavailable: int
    created_at: int
    updated_at: int
    instance: int
    """Which creation of the name this is: unique on the chain, kept by updates and scaling."""

    def demand(self, name: str) -> AppDemand:
        return AppDemand(name, self.revision, self.replicas, self.node_class, self.resources)

    def encode(self) -> bytes:
        u = codec.encode_uint
        r = self.resources
        return codec.encode(
            [
                self.owner,
                u(self.revision),
                self.manifest_hash,
                u(self.replicas),
                self.node_class.encode(),
                [u(r.cpu_millicores), u(r.memory_mib), u(r.disk_gib), u(r.gpus)],
                u(self.max_surge),
                u(self.max_unavailable),
                u(self.created_at),
                u(self.updated_at),
                u(self.instance),
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> AppRecord:
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 11:
            raise codec.CodecError("an app record has 11 fields")
        owner, rev, digest, replicas, klass, res, surge, unavail, created, updated, inst = item
        if not isinstance(klass, bytes) or not isinstance(res, list):
            raise codec.CodecError("malformed app record")
        amounts = [codec.uint(x, "resource") for x in res]
        return cls(
            AccountId(codec.fixed(owner, 32, "owner")),
            codec.uint(rev, "revision"),
            codec.fixed(digest, 32, "manifest hash"),
            codec.uint(replicas, "replicas"),
            klass.decode(),
            Resources(*amounts),
            codec.uint(surge, "max surge"),
            codec.uint(unavail, "max unavailable"),
            codec.uint(created, "created at"),
            codec.uint(updated, "updated at"),
            codec.uint(inst, "instance"),
        )


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A deleted application instance whose persistent volumes the nodes still keep."""

    name: str
    owner: AccountId
    instance: int
    deleted_at: int
    """The block that deleted the application."""
    retained_until: int
    """Block timestamp (ms): its volumes are kept, and billed to the owner, until then."""

    def encode(self) -> bytes:
        u = codec.encode_uint
        return codec.encode(
            [
                self.name.encode(),
                self.owner,
                u(self.instance),
                u(self.deleted_at),
                u(self.retained_until),
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Tombstone:
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 5:
            raise codec.CodecError("a tombstone is [name, owner, instance, deleted at, until]")
        name, owner, instance, deleted, until = item
        if not isinstance(name, bytes):
            raise codec.CodecError("a tombstone's name is bytes")
        return cls(
            name.decode(errors="replace"),
            AccountId(codec.fixed(owner, 32, "owner")),
            codec.uint(instance, "instance"),
            codec.uint(deleted, "deleted at"),
            codec.uint(until, "retained until"),
        )


@dataclass(frozen=True, slots=True)
class KeptInstance:
    """An application instance whose persistent volumes a node must keep."""

    name: str
    owner: AccountId
    retained_until: int | None
    """None while the application lives; the block timestamp (ms) its retention ends at once it
    is deleted."""


@dataclass(frozen=True, slots=True)
class ReplicaEntry:
    """One copy of one replica that a node must run (two copies of an index exist while a
    rolling update surges), or a replica no node could take."""

    index: int
    revision: int
    node: bytes
    """Empty when pending."""
    since: int
    """The block the entry took its current form."""
    reason: str = ""
    """Why it is pending."""


def _encode_entries(entries: list[ReplicaEntry]) -> bytes:
    u = codec.encode_uint
    return codec.encode(
        [[u(e.index), u(e.revision), e.node, u(e.since), e.reason.encode()] for e in entries]
    )


def _decode_entries(data: bytes) -> list[ReplicaEntry]:
    item = codec.decode(data)
    if not isinstance(item, list):
        raise codec.CodecError("a placement is a list")
    out = []
    for e in item:
        if not isinstance(e, list) or len(e) != 5 or not isinstance(e[2], bytes):
            raise codec.CodecError("malformed placement entry")
        reason = e[4]
        if not isinstance(reason, bytes):
            raise codec.CodecError("malformed placement reason")
        out.append(
            ReplicaEntry(
                codec.uint(e[0], "index"),
                codec.uint(e[1], "revision"),
                e[2],
                codec.uint(e[3], "since"),
                reason.decode(errors="replace"),
            )
        )
    return out


def app_names(state: StateReader) -> list[str]:
    data = state.get(INDEX_KEY)
    if not data:
        return []
    item = codec.decode(data)
    if not isinstance(item, list) or not all(isinstance(x, bytes) for x in item):
        raise codec.CodecError("the app index is a list of names")
    return [x.decode() for x in item]  # type: ignore[union-attr]


def _set_names(state: Overlay, names: list[str]) -> None:
    state.put(INDEX_KEY, codec.encode([n.encode() for n in sorted(names)]))


def next_instance(state: StateReader) -> int:
    """The instance the next `apps.create` gives its application."""
    data = state.get(NEXT_INSTANCE_KEY)
    return 1 if data is None else codec.uint(data, "next instance")


def _instance_key(instance: int) -> bytes:
    return instance.to_bytes(8, "big")


def tombstone(state: StateReader, instance: int) -> Tombstone | None:
    """The tombstone of a deleted instance, while its volumes are retained."""
    data = state.get(_TOMBSTONE + _instance_key(instance))
    return None if data is None else Tombstone.decode(data)


def tombstones_of(state: StateReader, name: str) -> list[Tombstone]:
    """The deleted instances of `name` whose volumes are still retained, oldest first."""
    found = []
    for instance in get_uints(state, _TOMBSTONES_OF + name.encode(), "tombstoned instance"):
        kept = tombstone(state, instance)
        if kept is not None:
            found.append(kept)
    return found


def tombstones(state: StateReader) -> list[Tombstone]:
    """Every tombstone, in the order they expire."""
    first, end = get_uints(state, EXPIRY_BOUNDS_KEY, "expiry bounds") or [0, 0]
    found = []
    for seq in range(first, end):
        instance = state.get(_EXPIRY + seq.to_bytes(8, "big"))
        kept = None if instance is None else tombstone(state, codec.uint(instance, "instance"))
        if kept is not None:
            found.append(kept)
    return found


def kept_instances(state: StateReader) -> dict[int, KeptInstance]:
    """Exactly the application instances whose persistent volumes a node must keep: every live
    application's, and every deleted one's until its retention ends. A node removes the
    persistent volumes of any other instance."""
    kept = {t.instance: KeptInstance(t.name, t.owner, t.retained_until) for t in tombstones(state)}
    for name in app_names(state):
        record = get_app(state, name)
        if record is not None:
            kept[record.instance] = KeptInstance(name, record.owner, None)
    return kept


def get_app(state: StateReader, name: str) -> AppRecord | None:
    data = state.get(_APP + name.encode())
    return None if data is None else AppRecord.decode(data)


def manifest_bytes(state: StateReader, name: str, revision: int) -> bytes | None:
    return state.get(_MANIFEST + name.encode() + b"/" + revision.to_bytes(8, "big"))


def host_holder(state: StateReader, host: str) -> str | None:
    """The application whose ingress serves `host`, if any."""
    data = state.get(_HOST + host.encode())
    return None if data is None else data.decode()


def placement(state: StateReader, name: str) -> list[ReplicaEntry]:
    data = state.get(_PLACEMENT + name.encode())
    return [] if not data else _decode_entries(data)


def assignments_for(state: StateReader, node_id: bytes) -> list[tuple[str, ReplicaEntry]]:
    """What node `node_id` must run: (app, entry) for every replica copy placed on it."""
    return [
        (name, entry)
        for name in app_names(state)
        for entry in placement(state, name)
        if entry.node == node_id
    ]


def _bury(state: Overlay, dead: Tombstone) -> None:
    """Keeps a tombstone for a deleted instance, at the end of the expiry queue."""
    state.put(_TOMBSTONE + _instance_key(dead.instance), dead.encode())
    key = _TOMBSTONES_OF + dead.name.encode()
    put_uints(state, key, [*get_uints(state, key, "tombstoned instance"), dead.instance])
    first, end = get_uints(state, EXPIRY_BOUNDS_KEY, "expiry bounds") or [0, 0]
    state.put(_EXPIRY + end.to_bytes(8, "big"), codec.encode_uint(dead.instance))
    put_uints(state, EXPIRY_BOUNDS_KEY, [first, end + 1])


def _unbury(state: Overlay, dead: Tombstone) -> None:
    state.delete(_TOMBSTONE + _instance_key(dead.instance))
    key = _TOMBSTONES_OF + dead.name.encode()
    left = [i for i in get_uints(state, key, "tombstoned instance") if i != dead.instance]
    put_uints(state, key, left)


class Apps(Module):
    name = NAME

    def calls(self) -> list[CallDef]:
        manifest = Arg("manifest", ArgKind.BYTES, max_length=MAX_MANIFEST_BYTES)
        app = Arg("app", ArgKind.BYTES, max_length=MAX_NAME_BYTES)
        return [
            CallDef(NAME, "create", (manifest,), self.create, "Deploy an application."),
            CallDef(NAME, "update", (manifest,), self.update, "Roll out a new revision."),
            CallDef(
                NAME,
                "scale",
                (app, Arg("replicas", ArgKind.U64)),
                self.scale,
                "Set the number of replicas.",
            ),
            CallDef(NAME, "delete", (app,), self.delete, "Remove an application."),
            CallDef(
                NAME,
                "create_paid",
                (manifest, Arg("wallet", ArgKind.ACCOUNT)),
                self.create_paid,
                "Deploy an application paid for each period by a platform wallet whose login key "
                "is the sender.",
            ),
        ]

    # -- calls ----------------------------------------------------------------------------------

    def _manifest(self, raw: bytes) -> Manifest:
        try:
            return decode_manifest(raw)
        except ManifestError as exc:
            raise self.fail(AppsError.BAD_MANIFEST, str(exc)) from None

    def _owned(self, ctx: Context, sender: AccountId, name: str) -> AppRecord:
        record = get_app(ctx.state, name)
        if record is None:
            raise self.fail(AppsError.UNKNOWN_APP, f"no application {name!r}")
        if record.owner != sender:
            raise self.fail(AppsError.NOT_OWNER, f"only the owner of {name!r} may change it")
        return record

    def _store(self, ctx: Context, name: str, record: AppRecord, canonical: bytes) -> None:
        state = ctx.state
        state.put(_APP + name.encode(), record.encode())
        state.put(_MANIFEST + name.encode() + b"/" + record.revision.to_bytes(8, "big"), canonical)
        state.put(DIRTY_KEY, b"\x01")

    def _record(
        self,
        ctx: Context,
        sender: AccountId,
        manifest: Manifest,
        revision: int,
        created: int,
        instance: int,
    ) -> AppRecord:
        replicas = manifest.spec.replicas
        if replicas > MAX_REPLICAS:
            raise self.fail(AppsError.TOO_MANY_REPLICAS, f"at most {MAX_REPLICAS} replicas")
        surge, unavailable = manifest.spec.strategy.resolve(replicas)
        return AppRecord(
            sender,
            revision,
            manifest.hash(),
            replicas,
            manifest.spec.node_class.value,
            manifest.replica_resources(),
            surge,
            unavailable,
            created,
            ctx.env.number,
            instance,
        )

    def _check_reads(self, ctx: Context, owner: AccountId, manifest: Manifest) -> None:
        problem = refused_reads(ctx.state, owner, manifest.spec)
        if problem is not None:
            raise self.fail(AppsError.UNKNOWN_REFERENCE, problem)

    def _claim_host(self, ctx: Context, name: str, manifest: Manifest) -> None:
        """Give `name` its manifest's ingress host (refused if another application holds it),
        releasing the one it held before."""
        state = ctx.state
        host = manifest.spec.ingress.host if manifest.spec.ingress is not None else None
        holder = host_holder(state, host) if host is not None else None
        if host is not None and holder not in (None, name):
            raise self.fail(
                AppsError.HOST_TAKEN, f"ingress host {host} belongs to application {holder!r}"
            )
        self._release_host(ctx, name)
        if host is not None:
            state.put(_HOST + host.encode(), name.encode())
            state.put(_HOST_OF + name.encode(), host.encode())

    def _release_host(self, ctx: Context, name: str) -> None:
        held = ctx.state.get(_HOST_OF + name.encode())
        if held is not None:
            ctx.state.delete(_HOST + held)
            ctx.state.delete(_HOST_OF + name.encode())

    def create(self, ctx: Context, sender: AccountId, raw: bytes) -> None:
        manifest = self._manifest(raw)
        name = manifest.name
        if get_app(ctx.state, name) is not None:
            raise self.fail(AppsError.NAME_TAKEN, f"an application named {name!r} exists")
        instance = next_instance(ctx.state)
        record = self._record(ctx, sender, manifest, 1, ctx.env.number, instance)
        self._check_reads(ctx, sender, manifest)
        self._claim_host(ctx, name, manifest)
        self._store(ctx, name, record, manifest.canonical_json())
        follow_reads(ctx.state, sender, name, manifest.spec)
        self._follow_autoscaling(ctx, name, manifest, record)
        ctx.state.put(NEXT_INSTANCE_KEY, codec.encode_uint(instance + 1))
        _set_names(ctx.state, [*app_names(ctx.state), name])
        ctx.emit(
            NAME,
            "AppCreated",
            app=name,
            owner=AccountRef(sender),
            replicas=record.replicas,
            instance=instance,
        )

    def update(self, ctx: Context, sender: AccountId, raw: bytes) -> None:
        manifest = self._manifest(raw)
        old = self._owned(ctx, sender, manifest.name)
        if manifest.hash() == old.manifest_hash:
            return
        record = self._record(ctx, sender, manifest, old.revision + 1, old.created_at, old.instance)
        scaling = manifest.spec.autoscaling
        if scaling is not None and app_scaling.get_state(ctx.state, manifest.name) is not None:
            # The autoscaler owns the count: an update keeps it, within the new range.
            kept = min(max(old.replicas, scaling.min_replicas), scaling.max_replicas)
            record = replace(record, replicas=kept)
        self._check_reads(ctx, sender, manifest)
        self._claim_host(ctx, manifest.name, manifest)
        self._store(ctx, manifest.name, record, manifest.canonical_json())
        follow_reads(ctx.state, sender, manifest.name, manifest.spec)
        self._follow_autoscaling(ctx, manifest.name, manifest, record)
        ctx.emit(NAME, "AppUpdated", app=manifest.name, revision=record.revision)

    def _follow_autoscaling(
        self, ctx: Context, name: str, manifest: Manifest, record: AppRecord
    ) -> None:
        """Start, change or stop the autoscaling of `name` as its new manifest says."""
        scaling = manifest.spec.autoscaling
        if scaling is None:
            app_scaling.stop(ctx.state, name)
            return
        containers = len(manifest.spec.containers)
        known = app_scaling.get_state(ctx.state, name)
        if known is None:
            known = AutoscaleState(
                scaling, containers, record.replicas, None, "", None, None, 0, History(), ()
            )
        app_scaling.start(
            ctx.state,
            name,
            replace(known, spec=scaling, containers=containers, desired=record.replicas),
        )

    def scale(self, ctx: Context, sender: AccountId, raw_name: bytes, replicas: int) -> None:
        name = raw_name.decode(errors="replace")
        record = self._owned(ctx, sender, name)
        scaling = app_scaling.get_state(ctx.state, name)
        if scaling is not None:
            spec = scaling.spec
            raise self.fail(
                AppsError.AUTOSCALED,
                f"{name!r} is autoscaled ({spec.min_replicas} to {spec.max_replicas} replicas at"
                f" {spec.target_cpu_utilization_percentage}% CPU): the autoscaler owns its replica"
                " count; change minReplicas and maxReplicas with an update, or remove autoscaling"
                " from its manifest to scale it by hand",
            )
        if replicas > MAX_REPLICAS:
            raise self.fail(AppsError.TOO_MANY_REPLICAS, f"at most {MAX_REPLICAS} replicas")
        scaled = replace(record, replicas=replicas, updated_at=ctx.env.number)
        ctx.state.put(_APP + name.encode(), scaled.encode())
        ctx.state.put(DIRTY_KEY, b"\x01")
        ctx.emit(NAME, "AppScaled", app=name, replicas=replicas)

    def delete(self, ctx: Context, sender: AccountId, raw_name: bytes) -> None:
        name = raw_name.decode(errors="replace")
        record = self._owned(ctx, sender, name)
        self._remove(ctx, name, record)

    def _remove(self, ctx: Context, name: str, record: AppRecord) -> None:
        state = ctx.state
        follow_reads(state, record.owner, name, None)
        _track_placement(ctx, name, record, placement(state, name), [])
        billing.forget_app(state, name, record.instance)
        self._release_host(ctx, name)
        state.delete(_APP + name.encode())
        state.delete(_PLACEMENT + name.encode())
        for revision in range(1, record.revision + 1):
            state.delete(_MANIFEST + name.encode() + b"/" + revision.to_bytes(8, "big"))
        _set_names(state, [n for n in app_names(state) if n != name])
        app_scaling.stop(state, name)
        state.put(DIRTY_KEY, b"\x01")
        until = ctx.env.timestamp + ctx.config.volume_retention_seconds * 1000
        _bury(state, Tombstone(name, record.owner, record.instance, ctx.env.number, until))
        ctx.emit(NAME, "AppDeleted", app=name, instance=record.instance, retained_until=until)

    # -- billing: the paying wallet, arrears ---------------------------------------------------

    def create_paid(self, ctx: Context, sender: AccountId, raw: bytes, wallet: AccountId) -> None:
        """`create`, and the application's replicas are billed to `wallet` each period: a
        registered platform wallet (it has a committee) whose login key is the sender, which
        authorizes it once here."""
        known = wallets.get_wallet(ctx.state, wallet)
        if known is None:
            raise self.fail(
                AppsError.UNKNOWN_WALLET,
                f"0x{wallet.hex()} is not a platform wallet: no committee holds its key",
            )
        if known.login_key != sender:
            raise self.fail(
                AppsError.NOT_WALLET_OWNER,
                f"wallet 0x{wallet.hex()} belongs to another login key than the sender",
            )
        late = billing.first_late_invoice(ctx.state, ctx.config, wallet, ctx.env.timestamp)
        if late is not None:
            raise self.fail(
                AppsError.WALLET_IN_ARREARS,
                f"wallet 0x{wallet.hex()} has left invoice {late.id} ({late.total}, period "
                f"{late.period}) unpaid past its grace period: fund it, and deploy once it is paid",
            )
        self.create(ctx, sender, raw)
        name = self._manifest(raw).name
        record = get_app(ctx.state, name)
        if record is not None:
            billing.set_wallet(ctx.state, name, record.instance, wallet)
            ctx.emit(
                NAME, "AppWallet", app=name, instance=record.instance, wallet=AccountRef(wallet)
            )

    def arrears(self, ctx: Context) -> None:
        """Suspends the applications of a wallet with an invoice unpaid past its grace period
        (their replicas removed; manifest, volumes and name kept), and deletes those suspended
        for longer than the deletion period. Payment resumes them (`billing.pay`)."""
        state = ctx.state
        now = ctx.env.timestamp
        for late in billing.advance_grace(state, ctx.config, now):
            for name in billing.apps_paid_by(state, late.wallet):
                record = get_app(state, name)
                if record is None or billing.suspended_since(state, name) is not None:
                    continue
                _track_placement(ctx, name, record, placement(state, name), [])
                state.delete(_PLACEMENT + name.encode())
                billing.mark_suspended(state, name, now)
                state.put(DIRTY_KEY, b"\x01")
                ctx.emit(NAME, "AppSuspended", app=name, invoice=late.id, period=late.period)
        deletion_ms = ctx.config.billing.deletion_seconds * 1000
        for name in billing.suspended_names(state):
            since = billing.suspended_since(state, name)
            record = get_app(state, name)
            if since is None or record is None or now < since + deletion_ms:
                continue
            self._remove(ctx, name, record)
            ctx.emit(NAME, "AppDeletedForArrears", app=name, suspended_since=since)

    # -- retention of deleted applications' volumes ---------------------------------------------

    def on_initialize(self, ctx: Context) -> None:
        self.expire(ctx)
        self.arrears(ctx)

    def expire(self, ctx: Context) -> None:
        """Removes the tombstones whose retention is over (at most MAX_EXPIRED_PER_BLOCK), oldest
        first: their volumes are no longer kept."""
        state = ctx.state
        bounds = get_uints(state, EXPIRY_BOUNDS_KEY, "expiry bounds")
        if not bounds:
            return
        first, end = bounds
        removed = 0
        while first < end and removed < MAX_EXPIRED_PER_BLOCK:
            slot = _EXPIRY + first.to_bytes(8, "big")
            raw = state.get(slot)
            kept = None if raw is None else tombstone(state, codec.uint(raw, "instance"))
            if kept is not None and kept.retained_until > ctx.env.timestamp:
                break
            state.delete(slot)
            first += 1
            removed += 1
            if kept is not None:
                _unbury(state, kept)
                ctx.emit(NAME, "RetentionEnded", app=kept.name, instance=kept.instance)
        if removed:
            put_uints(state, EXPIRY_BOUNDS_KEY, [first, end] if first < end else [])

    # -- placement ------------------------------------------------------------------------------

    def on_finalize(self, ctx: Context) -> None:
        state = ctx.state
        boundary = ctx.env.number % ctx.config.towers.epoch_length == 0
        rolling = state.get(ROLLING_KEY) is not None
        changed = state.get(DIRTY_KEY) is not None or nodes.offer_changed(state)
        changed = changed or state.get(billing.RESUMED_KEY) is not None
        if not changed and not boundary and not rolling:
            return
        self.place(ctx)
        state.delete(DIRTY_KEY)
        state.delete(billing.RESUMED_KEY)

    def place(self, ctx: Context) -> None:
        state = ctx.state
        names = app_names(state)
        records = {
            n: r
            for n in names
            if (r := get_app(state, n)) is not None and billing.suspended_since(state, n) is None
        }
        entries = {n: placement(state, n) for n in records}
        infos = []
        for node_id in nodes.node_ids(state):
            node = nodes.get_node(state, node_id)
            if node is not None:
                height = towers.get_tower(state, node_id).height
                infos.append(NodeInfo.from_record(node_id, node, height))
        current: dict[ReplicaId, bytes] = {}
        for name, app_entries in entries.items():
            revision = records[name].revision
            newest = {e.index: e.node for e in app_entries if e.node and e.revision == revision}
            older = {e.index: e.node for e in app_entries if e.node and e.revision != revision}
            for index, holder in {**older, **newest}.items():
                current[ReplicaId(name, index)] = holder
        # Old copies still running during a rolling update hold their room on their nodes
        # (counted at the current revision's size: the record keeps only that one).
        reserved: dict[bytes, Resources] = {}
        for name, app_entries in entries.items():
            record = records[name]
            for e in app_entries:
                if e.node and e.revision != record.revision:
                    held = reserved.get(e.node, Resources())
                    reserved[e.node] = Resources(
                        *(
                            a + b
                            for a, b in zip(held.amounts(), record.resources.amounts(), strict=True)
                        )
                    )
        result = schedule([r.demand(n) for n, r in records.items()], infos, current, reserved)
        # By application once, rather than a scan of every replica for each application.
        targets: dict[str, dict[int, bytes]] = {}
        for replica, holder in result.assignments.items():
            targets.setdefault(replica.app, {})[replica.index] = holder
        pending: dict[str, dict[int, str]] = {}
        for replica, why in result.pending.items():
            pending.setdefault(replica.app, {})[replica.index] = why
        rolling = False
        for name, record in records.items():
            updated = self._advance(
                ctx, name, record, entries[name], targets.get(name, {}), pending.get(name, {})
            )
            rolling = rolling or any(e.revision != record.revision for e in updated if e.node)
            if updated != entries[name]:
                _track_placement(ctx, name, record, entries[name], updated)
                state.put(_PLACEMENT + name.encode(), _encode_entries(updated))
        if rolling:
            state.put(ROLLING_KEY, b"\x01")
        else:
            state.delete(ROLLING_KEY)

    def _advance(
        self,
        ctx: Context,
        name: str,
        record: AppRecord,
        entries: list[ReplicaEntry],
        target: dict[int, bytes],
        pending: dict[int, str],
    ) -> list[ReplicaEntry]:
        """The app's copies after this step: the new revision on its target nodes (`target`, by
        replica index), old copies stopping as the rolling update allows, pending replicas with
        their reason (`pending`)."""
        now = ctx.env.number
        revision = record.revision
        old = {e.index: e.node for e in entries if e.node and e.revision != revision}
        new = {e.index: e.node for e in entries if e.node and e.revision == revision}
        if old:
            step = rollout_step(
                old, new, target, record.replicas, record.max_surge, record.max_unavailable
            )
            for index in step.stop:
                old.pop(index, None)
            for index in step.start:
                new[index] = target[index]
            # A new copy whose node can no longer hold it follows the scheduler.
            for index in list(new):
                if index in target:
                    new[index] = target[index]
                else:
                    del new[index]
        else:
            new = dict(target)
        since = {(e.index, e.revision, e.node): e.since for e in entries}
        old_revisions = {e.index: e.revision for e in entries if e.node and e.revision != revision}
        out: list[ReplicaEntry] = []
        for index, node in sorted(old.items()):
            rev = old_revisions[index]
            out.append(ReplicaEntry(index, rev, node, since.get((index, rev, node), now)))
        for index, node in sorted(new.items()):
            out.append(ReplicaEntry(index, revision, node, since.get((index, revision, node), now)))
            if (index, revision, node) not in since:
                ctx.emit(
                    NAME,
                    "ReplicaAssigned",
                    app=name,
                    replica=index,
                    revision=revision,
                    node=AccountRef(node),
                )
        placed = set(old) | set(new)
        for index in range(record.replicas):
            if index not in placed:
                why = pending.get(index, "waiting for the rolling update")
                entry_since = since.get((index, revision, b""), now)
                out.append(ReplicaEntry(index, revision, b"", entry_since, why))
                if (index, revision, b"") not in since:
                    ctx.emit(NAME, "ReplicaPending", app=name, replica=index, reason=why)
        out.sort(key=lambda e: (e.index, e.revision))
        return out


def autoscale(ctx: Context, run: AutoscalePass) -> None:
    """One block's share of the autoscaling pass `run`: the next autoscaled applications after
    `run.after` in name order, at most `autoscaling_apps_per_block` of them, each decided by the
    HPA rule from its own usage of `run.period` (kept by application as reports arrive) as of
    `run.started_ms`; its replica count follows, with a `Scaled` event when it changes. The pass
    is kept for the next block until every application is decided; the applications are placed
    again once, when it ends, if any count changed."""
    state = ctx.state
    names = app_scaling.autoscaled_names(state)
    first = bisect.bisect_right(names, run.after)
    chosen = names[first : first + ctx.config.autoscaling_apps_per_block]
    scaled = run.scaled
    for name in chosen:
        scaled = _autoscale_app(ctx, name, run) or scaled
    if first + len(chosen) < len(names):
        app_scaling.put_pass(state, replace(run, after=chosen[-1], scaled=scaled))
        return
    app_scaling.put_pass(state, None)
    if scaled:
        state.put(DIRTY_KEY, b"\x01")


def _autoscale_app(ctx: Context, name: str, run: AutoscalePass) -> bool:
    """Decides `name` for `run.period`; whether its replica count changed."""
    state = ctx.state
    period = run.period
    period_ms = ctx.config.metering_period_seconds * 1000
    now = run.started_ms * ctx.config.autoscaling_time_scale // 1000
    usage = app_scaling.take_usage(state, name, period)
    record = get_app(state, name)
    known = app_scaling.get_state(state, name)
    if record is None or known is None:
        return False
    holders: dict[int, set[bytes]] = {}
    for entry in placement(state, name):
        if entry.node:
            holders.setdefault(entry.index, set()).add(entry.node)
    observation = app_scaling.observe(
        record.replicas,
        holders,
        usage,
        known,
        record.instance,
        period,
        period_ms,
        record.resources.cpu_millicores,
    )
    decision = decide(known.spec, observation, known.history, now)
    updated = replace(
        known,
        desired=decision.desired,
        utilisation=decision.utilisation,
        reason=decision.message,
        last_period=period,
        history=decision.history,
    )
    changed = decision.desired != record.replicas
    if changed:
        made = ScalingDecision(
            period, record.replicas, decision.desired, decision.utilisation, decision.message
        )
        updated = replace(updated, decisions=(*known.decisions, made)[-app_scaling.MAX_DECISIONS :])
        if decision.desired > record.replicas:
            # The period in which the new replicas are added: they did not run through it.
            current_period = ctx.env.timestamp // period_ms
            updated = replace(updated, grown_at=current_period, grown_from=record.replicas)
        scaled = replace(record, replicas=decision.desired, updated_at=ctx.env.number)
        state.put(_APP + name.encode(), scaled.encode())
        ctx.emit(
            NAME,
            "Scaled",
            app=name,
            **{"from": record.replicas},
            to=decision.desired,
            utilisation=decision.utilisation if decision.utilisation is not None else 0,
            reason=decision.message,
        )
    app_scaling.put_state(state, name, updated)
    return changed


def manifest_json(state: StateReader, name: str, revision: int) -> object | None:
    data = manifest_bytes(state, name, revision)
    return None if data is None else json.loads(data)


def _track_placement(
    ctx: Context,
    name: str,
    record: AppRecord,
    before: list[ReplicaEntry],
    after: list[ReplicaEntry],
) -> None:
    """Records, for billing, when each replica of a billed application starts or stops being
    placed on a node (any revision's copy counts as the replica)."""
    if billing.wallet_of(ctx.state, record.instance) is None:
        return
    was = {(e.index, e.node) for e in before if e.node}
    now = {(e.index, e.node) for e in after if e.node}
    if was == now:
        return
    cpu_limit, memory_limit, disk_limit = _usage_limits(ctx.state, name, record)
    for index, node in sorted(was ^ now):
        reserved = None
        if (index, node) in now:
            held = nodes.get_node(ctx.state, node)
            cores, memory, disk = (held.cores, held.memory_mb, held.disk_gb) if held else (0, 0, 0)
            reserved = (
                cores * 1000 if cpu_limit is None else cpu_limit,
                memory if memory_limit is None else memory_limit,
                disk if disk_limit is None else disk_limit,
                record.resources.gpus,
            )
        billing.note_assignment(
            ctx.state, node, record.instance, index, now_ms=ctx.env.timestamp,
            period_seconds=ctx.config.metering_period_seconds, reserved=reserved,
        )  # fmt: skip


def _usage_limits(
    state: StateReader, name: str, record: AppRecord
) -> tuple[int | None, int | None, int | None]:
    """The most one replica can use of CPU (millicores), memory (MiB) and disk (GiB): its
    containers' limits plus its volumes, rounded up; None where a container or a volume has no
    limit (the node's capacity bounds it then). At least what it requests."""
    raw = manifest_bytes(state, name, record.revision)
    if raw is None:
        return (None, None, None)
    spec = decode_manifest(raw).spec
    limits = [c.resources.limits for c in spec.containers]
    in_memory = sum(v.size_bytes or 0 for v in spec.volumes if v.memory)
    on_disk = sum(v.size_bytes or 0 for v in spec.volumes if not v.memory)
    unsized = any(v.size_bytes is None for v in spec.volumes)
    cpu = (
        None
        if any(x.cpu_millicores is None for x in limits)
        else sum(x.cpu_millicores or 0 for x in limits)
    )
    memory = (
        None
        if unsized or any(x.memory_bytes is None for x in limits)
        else sum(x.memory_bytes or 0 for x in limits) + in_memory
    )
    disk = (
        None
        if unsized or any(x.disk_bytes is None for x in limits)
        else sum(x.disk_bytes or 0 for x in limits) + on_disk
    )
    requested = record.resources
    return (
        None if cpu is None else max(cpu, requested.cpu_millicores),
        None if memory is None else max(-(-memory // 2**20), requested.memory_mib),
        None if disk is None else max(-(-disk // 2**30), requested.disk_gib),
    )
