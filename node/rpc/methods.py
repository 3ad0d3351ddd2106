"""The node's JSON-RPC methods (Substrate's names where the concept is the same): system_*,
chain_*, state_*, author_*, and typed module queries (system_account, system_events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from chain.address import AddressError, decode_address, encode_address
from chain.blocks import Block, Header
from chain.errors import InvalidTransaction
from chain.genesis import ChainSpec
from chain.primitives import AccountId, Hash32
from chain.runtime import app_scaling, apps, epochs, nodes, offences, system, towers, usage
from chain.runtime.framework import Event
from chain.runtime.manifest import scaling_rules_json
from chain.runtime.nodes import NodeStatus
from chain.store import ChainStore
from consensus.chain_service import ChainService
from consensus.network_service import NetworkService
from consensus.tx_status import TxStatus
from node.rpc import billing_methods, secret_methods
from node.rpc.digest import digest_json
from node.rpc.errors import UNKNOWN_BLOCK, RpcError, invalid_transaction_error
from node.rpc.feeds import Feed
from node.rpc.heads import HeadFeeds
from node.rpc.jsonrpc import dumps
from node.rpc.registry import Params, Registry


@dataclass(frozen=True, slots=True)
class SystemInfo:
    """What the node says about itself through the `system_*` methods."""

    name: str
    version: str
    spec: ChainSpec


# -- parameter converters (their ValueError messages reach the client as -32602) ------------


def hex_bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("expected a 0x-prefixed hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError("not valid hex") from None


def block_hash(value: Any) -> Hash32:
    raw = hex_bytes(value)
    if len(raw) != 32:
        raise ValueError(f"a block hash is 32 bytes, got {len(raw)}")
    return Hash32(raw)


def block_number(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a block number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value, 16) if value.startswith("0x") else int(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a block number") from None
    else:
        raise ValueError("expected a block number (integer or hex string)")
    if number < 0:
        raise ValueError("a block number is not negative")
    return number


def account(value: Any) -> AccountId:
    if not isinstance(value, str):
        raise ValueError("expected an address")
    try:
        return decode_address(value)
    except AddressError as exc:
        raise ValueError(str(exc)) from None


def app_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected an application name")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ValueError("an application name is text") from None
    if not 1 <= size <= apps.MAX_NAME_BYTES:
        raise ValueError(f"an application name is 1 to {apps.MAX_NAME_BYTES} bytes")
    return value


# -- JSON views ---------------------------------------------------------------------------------


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def header_json(header: Header) -> dict[str, Any]:
    return {
        "parentHash": _hex(header.parent_hash),
        "number": hex(header.number),
        "stateRoot": _hex(header.state_root),
        "extrinsicsRoot": _hex(header.extrinsics_root),
        "digest": digest_json(header),
        "timestamp": header.timestamp,
        "slot": header.slot,
        "author": encode_address(header.author) if any(header.author) else None,
        "seal": _hex(header.seal),
        "hash": _hex(header.hash),
    }


def block_json(block: Block, justification: bytes | None = None) -> dict[str, Any]:
    return {
        "block": {
            "header": header_json(block.header),
            "extrinsics": [_hex(x) for x in block.extrinsics],
        },
        "justifications": None if justification is None else [_hex(justification)],
    }


def build_registry(
    chain: ChainService, info: SystemInfo, network: NetworkService | None = None
) -> Registry:
    registry = Registry()
    store = chain.store

    def resolve(params: Params, name: str = "hash") -> Hash32:
        """The block a query is `at`: the given hash (which must be known) or the best block."""
        at = params.optional(name, block_hash)
        if at is None:
            return store.best_header.hash
        if store.header(at) is None:
            raise RpcError(UNKNOWN_BLOCK, f"unknown block 0x{at.hex()}")
        return at

    # -- system -------------------------------------------------------------------------------

    # Safe or unsafe as in Substrate: what reveals this node's own network (peers, the addresses
    # to dial it at) or acts for its operator is unsafe; chain data is public, hence safe.
    registry.add_method("system_name", lambda params: "statemesh", unsafe=False)
    registry.add_method("system_version", lambda params: info.version, unsafe=False)
    registry.add_method("system_chain", lambda params: info.spec.name, unsafe=False)
    registry.add_method("system_chainType", lambda params: info.spec.chain_type, unsafe=False)
    registry.add_method("system_nodeName", lambda params: info.name, unsafe=False)

    @registry.method("system_health", unsafe=False)
    def health(params: Params) -> dict[str, Any]:
        return {
            "peers": len(network.peer_views()) if network else 0,
            "isSyncing": bool(network and network.sync.stats.syncing),
            "shouldHavePeers": len(chain.authorities) > 1,
        }

    @registry.method("system_peers", unsafe=True)
    def peers(params: Params) -> list[dict[str, Any]]:
        if network is None:
            return []
        return [
            {
                "peerId": view.peer_id,
                "address": view.address,
                "direction": view.direction,
                "score": view.score,
                "bestHash": _hex(view.status.best_hash) if view.status else None,
                "bestNumber": view.status.best_number if view.status else None,
                "finalizedNumber": view.status.finalized_number if view.status else None,
            }
            for view in network.peer_views()
        ]

    @registry.method("system_syncState", unsafe=False)
    def sync_state(params: Params) -> dict[str, Any]:
        best = store.best_header.number
        highest = max(
            [best] + [s.best_number for _, s in network.statuses()] if network else [best]
        )
        return {"currentBlock": best, "highestBlock": highest}

    registry.add_method(
        "system_localPeerId", lambda params: network.p2p.peer_id if network else None, unsafe=False
    )
    registry.add_method(
        "system_localListenAddresses",
        lambda params: [network.p2p.listen_address] if network else [],
        unsafe=False,
    )

    @registry.method("system_account", params=["address", "hash?"], unsafe=False)
    def system_account(params: Params) -> dict[str, Any]:
        who = params.required("address", account)
        at = resolve(params)
        record = system.account(store.state_at(at), who)
        return {
            "address": encode_address(who),
            "nonce": record.nonce,
            "free": str(record.free),
            "blockHash": _hex(at),
            "blockNumber": store.require_header(at).number,
        }

    @registry.method("system_accountNextIndex", params=["address"], unsafe=False)
    def account_next_index(params: Params) -> int:
        return chain.next_nonce(params.required("address", account))

    @registry.method("system_events", params=["hash?"], unsafe=False)
    def system_events(params: Params) -> list[dict[str, Any]]:
        events: list[Event] = store.events(resolve(params)) or []
        return [e.to_json() for e in events]

    # -- chain --------------------------------------------------------------------------------

    @registry.method("chain_getHeader", params=["hash?"], unsafe=False)
    def get_header(params: Params) -> dict[str, Any] | None:
        at = params.optional("hash", block_hash)
        header = store.best_header if at is None else store.header(at)
        return None if header is None else header_json(header)

    @registry.method("chain_getBlock", params=["hash?"], unsafe=False)
    def get_block(params: Params) -> dict[str, Any] | None:
        at = params.optional("hash", block_hash) or store.best_header.hash
        block = store.block(at)
        return None if block is None else block_json(block, store.justification(at))

    @registry.method("chain_getBlockHash", params=["number?"], unsafe=False)
    def get_block_hash(params: Params) -> Any:
        raw = params.optional("number", lambda v: v)
        if raw is None:
            return _hex(store.best_header.hash)
        if isinstance(raw, list):
            numbers = [block_number(v) for v in raw]
            return [_maybe_hex(store.canonical_hash(n)) for n in numbers]
        try:
            number = block_number(raw)
        except ValueError as exc:
            raise RpcError(-32602, f"invalid param 'number': {exc}") from None
        return _maybe_hex(store.canonical_hash(number))

    # Substrate's other names of these two.
    registry.add_method("chain_getHead", get_block_hash, params=["number?"], unsafe=False)
    for name in ("chain_getFinalizedHead", "chain_getFinalisedHead"):
        registry.add_method(name, lambda params: _hex(store.finalized_header.hash), unsafe=False)

    @registry.method("chain_getExtrinsic", params=["hash"], unsafe=False)
    def get_extrinsic(params: Params) -> dict[str, Any] | None:
        tx = params.required("hash", block_hash)
        location = store.tx_location(tx)
        if location is None:
            return None
        at, index = location
        events = [e for e in store.events(at) or [] if e.phase == index]
        failure = next((e for e in events if e.name == "ExtrinsicFailed"), None)
        return {
            "hash": _hex(tx),
            "blockHash": _hex(at),
            "blockNumber": store.require_header(at).number,
            "index": index,
            "success": failure is None,
            "error": None if failure is None else dict(failure.data).get("message"),
            "events": [e.to_json() for e in events],
        }

    # Every head subscriber gets the same header: encoded once per block for all of them.
    heads = HeadFeeds(store, encode_header)
    chain.new_heads.listen(heads.on_best)
    chain.finalized_heads.listen(heads.on_finalized)
    chain.imported_heads.listen(heads.on_imported)

    @registry.subscription(
        "chain_subscribeNewHeads",
        unsubscribe="chain_unsubscribeNewHeads",
        notification="chain_newHead",
        unsafe=False,
        aliases=("chain_subscribeNewHead", "subscribe_newHead"),
        unsubscribe_aliases=("chain_unsubscribeNewHead", "unsubscribe_newHead"),
    )
    def new_heads(params: Params) -> Feed[Header]:
        return heads.best

    @registry.subscription(
        "chain_subscribeFinalizedHeads",
        unsubscribe="chain_unsubscribeFinalizedHeads",
        notification="chain_finalizedHead",
        unsafe=False,
        aliases=("chain_subscribeFinalisedHeads",),
        unsubscribe_aliases=("chain_unsubscribeFinalisedHeads",),
    )
    def finalized_heads(params: Params) -> Feed[Header]:
        return heads.finalized

    @registry.subscription(
        "chain_subscribeAllHeads",
        unsubscribe="chain_unsubscribeAllHeads",
        notification="chain_allHead",
        unsafe=False,
    )
    def all_heads(params: Params) -> Feed[Header]:
        return heads.imported

    # -- state --------------------------------------------------------------------------------

    @registry.method("state_getStorage", params=["key", "hash?"], unsafe=False)
    def get_storage(params: Params) -> str | None:
        key = params.required("key", hex_bytes)
        value = store.state_at(resolve(params)).get(key)
        return None if value is None else _hex(value)

    # -- author -------------------------------------------------------------------------------

    @registry.method("author_submitExtrinsic", params=["extrinsic"], unsafe=False)
    async def submit(params: Params) -> str:
        encoded = params.required("extrinsic", hex_bytes)
        try:
            return _hex((await chain.submit_from_client(encoded)).hash)
        except InvalidTransaction as exc:
            raise invalid_transaction_error(exc) from None

    @registry.subscription(
        "author_submitAndWatchExtrinsic",
        unsubscribe="author_unwatchExtrinsic",
        notification="author_extrinsicUpdate",
        params=["extrinsic"],
        unsafe=False,
    )
    async def submit_and_watch(params: Params) -> AsyncIterator[Any]:
        encoded = params.required("extrinsic", hex_bytes)
        try:
            _, statuses = await chain.watch(encoded)
        except InvalidTransaction as exc:
            raise invalid_transaction_error(exc) from None
        return _statuses(statuses)

    registry.add_method(
        "author_pendingExtrinsics",
        lambda params: [_hex(tx.encoded) for tx in chain.pool.pending()],
        unsafe=False,
    )
    _register_towers(registry, chain, resolve)
    _register_apps(registry, chain, resolve)
    _register_offences(registry, chain, resolve)
    secret_methods.register(registry, store, resolve, account)
    billing_methods.register(registry, store, resolve, account, app_name, info.spec.runtime)
    return registry


APP_EVENTS_WINDOW = 200
"""Blocks searched backwards for an application's events."""


def recent_app_events(store: ChainStore, app: str) -> list[tuple[int, Hash32, Event]]:
    """The `apps` module's events about `app` in the last APP_EVENTS_WINDOW blocks of the best
    chain, oldest first, with the number and hash of the block that holds each."""
    found = []
    best = store.best_header.number
    for number in range(max(1, best - APP_EVENTS_WINDOW), best + 1):
        block_hash = store.canonical_hash(number)
        if block_hash is None:
            continue
        for event in store.events(block_hash) or []:
            if event.module == apps.NAME and dict(event.data).get("app") == app:
                found.append((number, block_hash, event))
    return found


def replica_json(entry: apps.ReplicaEntry) -> dict[str, Any]:
    return {
        "replica": entry.index,
        "revision": entry.revision,
        "node": encode_address(entry.node) if entry.node else None,
        "state": "assigned" if entry.node else "pending",
        "since": entry.since,
        "reason": entry.reason or None,
    }


def autoscaling_json(
    record: apps.AppRecord,
    scaling: app_scaling.AutoscaleState,
    placed: list[apps.ReplicaEntry],
) -> dict[str, Any]:
    spec = scaling.spec
    return {
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "targetCPUUtilizationPercentage": spec.target_cpu_utilization_percentage,
        "behavior": {
            "scaleUp": scaling_rules_json(spec.scale_up_rules),
            "scaleDown": scaling_rules_json(spec.scale_down_rules),
        },
        "currentReplicas": len({e.index for e in placed if e.node}),
        "desiredReplicas": record.replicas,
        "utilisation": scaling.utilisation,
        "lastPeriod": scaling.last_period,
        "reason": scaling.reason or None,
        "decisions": [
            {
                "period": d.period,
                "from": d.from_replicas,
                "to": d.to_replicas,
                "utilisation": d.utilisation,
                "reason": d.reason,
            }
            for d in scaling.decisions
        ],
    }


def _register_apps(registry: Registry, chain: ChainService, resolve: Any) -> None:
    store = chain.store

    def app_json(state: Any, name: str, record: apps.AppRecord) -> dict[str, Any]:
        return {
            "name": name,
            "owner": encode_address(record.owner),
            "instance": record.instance,
            "revision": record.revision,
            "manifestHash": _hex(record.manifest_hash),
            "replicas": record.replicas,
            "nodeClass": record.node_class,
            "createdAt": record.created_at,
            "updatedAt": record.updated_at,
            "placement": [replica_json(e) for e in apps.placement(state, name)],
        }

    @registry.method("apps_get", params=["name", "hash?"], unsafe=False)
    def get_app(params: Params) -> dict[str, Any] | None:
        name = params.required("name", app_name)
        state = store.state_at(resolve(params))
        record = apps.get_app(state, name)
        if record is None:
            return None
        found = app_json(state, name, record)
        found["manifest"] = apps.manifest_json(state, name, record.revision)
        return found

    @registry.method("apps_autoscaling", params=["name", "hash?"], unsafe=False)
    def autoscaling(params: Params) -> dict[str, Any] | None:
        """An autoscaled application's range and target, its current replicas (those placed on
        a node) and desired ones, the utilisation last measured and the last changes with their
        reasons; null for an application that is not autoscaled."""
        name = params.required("name", app_name)
        state = store.state_at(resolve(params))
        record = apps.get_app(state, name)
        scaling = app_scaling.get_state(state, name)
        if record is None or scaling is None:
            return None
        return autoscaling_json(record, scaling, apps.placement(state, name))

    @registry.method("apps_retained", params=["name", "hash?"], unsafe=False)
    def retained(params: Params) -> list[dict[str, Any]]:
        """The deleted instances of an application whose volumes are still kept (and billed),
        oldest first, each with the block timestamp (ms) its retention ends at."""
        name = params.required("name", app_name)
        state = store.state_at(resolve(params))
        return [
            {
                "name": t.name,
                "owner": encode_address(t.owner),
                "instance": t.instance,
                "deletedAt": t.deleted_at,
                "retainedUntil": t.retained_until,
            }
            for t in apps.tombstones_of(state, name)
        ]

    @registry.method("apps_list", params=["offset?", "limit?"], unsafe=False)
    def list_apps(params: Params) -> dict[str, Any]:
        offset, limit = _page(params)
        state = store.best_state()
        names = apps.app_names(state)
        listed = []
        for name in names[offset : offset + limit]:
            record = apps.get_app(state, name)
            if record is not None:
                listed.append(app_json(state, name, record))
        return {"total": len(names), "apps": listed}

    @registry.method("apps_forNode", params=["node", "hash?"], unsafe=False)
    def for_node(params: Params) -> list[dict[str, Any]]:
        node_id = params.required("node", account)
        state = store.state_at(resolve(params))
        return [
            {"app": name, **replica_json(entry)}
            for name, entry in apps.assignments_for(state, node_id)
        ]

    @registry.method("usage_report", params=["node", "period", "hash?"], unsafe=False)
    def usage_report(params: Params) -> list[dict[str, Any]] | None:
        node_id = params.required("node", account)
        period = params.required("period", int)
        records = usage.get_report(store.state_at(resolve(params)), node_id, period)
        if records is None:
            return None
        return [
            {
                "app": r.app,
                "replica": r.replica,
                "instance": r.instance,
                "cpuMs": r.cpu_ms,
                "peakMemoryBytes": r.peak_memory_bytes,
                "uptimeMs": r.uptime_ms,
                "diskBytes": r.disk_bytes,
            }
            for r in records
        ]

    @registry.method("apps_events", params=["name"], unsafe=False)
    def app_events(params: Params) -> list[dict[str, Any]]:
        name = params.required("name", str)
        return [
            {"block": number, **event.to_json()}
            for number, _, event in recent_app_events(store, name)
        ]


MAX_PAGE = 1000


def _page(params: Params) -> tuple[int, int]:
    offset = params.optional("offset", int, 0)
    limit = params.optional("limit", int, 100)
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise RpcError(-32602, f"invalid params: offset >= 0 and 1 <= limit <= {MAX_PAGE}")
    return offset, limit


def node_json(state: Any, node_id: AccountId, record: nodes.NodeRecord) -> dict[str, Any]:
    tower = towers.get_tower(state, node_id)
    return {
        "nodeId": encode_address(node_id),
        "operator": encode_address(record.operator),
        "class": record.node_class,
        "capacity": {
            "cores": record.cores,
            "memoryMb": record.memory_mb,
            "diskGb": record.disk_gb,
            "gpus": record.gpus,
        },
        "address": record.address.decode(errors="replace"),
        "bond": str(record.bond),
        "registeredAt": record.registered_at,
        "status": record.status.name.lower(),
        "misses": record.misses,
        "jailedUntilEpoch": record.jailed_until if record.status is NodeStatus.JAILED else None,
        "tower": {
            "height": tower.height,
            "proofsInEpoch": tower.proofs_in_epoch,
            "lastProofBlock": tower.last_proof_block,
        },
    }


def _register_towers(registry: Registry, chain: ChainService, resolve: Any) -> None:
    store = chain.store

    @registry.method("nodes_get", params=["node", "hash?"], unsafe=False)
    def get_node(params: Params) -> dict[str, Any] | None:
        node_id = params.required("node", account)
        state = store.state_at(resolve(params))
        record = nodes.get_node(state, node_id)
        return None if record is None else node_json(state, node_id, record)

    @registry.method("nodes_list", params=["status?", "offset?", "limit?"], unsafe=False)
    def list_nodes(params: Params) -> dict[str, Any]:
        wanted = params.optional("status", str)
        if wanted is not None and wanted.upper() not in NodeStatus.__members__:
            raise RpcError(-32602, "invalid param 'status': active, standby or jailed")
        offset, limit = _page(params)
        state = store.best_state()
        found = []
        for node_id in nodes.node_ids(state):
            record = nodes.get_node(state, node_id)
            if record is not None and (wanted is None or record.status.name == wanted.upper()):
                found.append((node_id, record))
        return {
            "total": len(found),
            "nodes": [node_json(state, n, r) for n, r in found[offset : offset + limit]],
        }

    @registry.method("towers_active", params=["class?", "offset?", "limit?"], unsafe=False)
    def active_towers(params: Params) -> dict[str, Any]:
        node_class = params.optional("class", str)
        offset, limit = _page(params)
        state = store.best_state()
        active = []
        for node_id in nodes.node_ids(state):
            record = nodes.get_node(state, node_id)
            if record is None or record.status is not NodeStatus.ACTIVE:
                continue
            if node_class is None or record.node_class == node_class:
                active.append((towers.get_tower(state, node_id).height, node_id, record))
        active.sort(key=lambda a: (-a[0], a[1]))
        return {
            "total": len(active),
            "nodes": [node_json(state, n, r) for _, n, r in active[offset : offset + limit]],
        }

    @registry.method("epochs_current", params=["hash?"], unsafe=False)
    def current_epoch(params: Params) -> dict[str, Any]:
        at = resolve(params)
        state = store.state_at(at)
        info = epochs.current_epoch(state)
        length = chain.runtime.config.towers.epoch_length
        return {
            "number": info.number,
            "startBlock": info.start_block,
            "length": length,
            "nextTransition": (info.number + 1) * length,
            "bestBlock": store.require_header(at).number,
            "active": info.active,
            "standby": info.standby,
            "jailed": info.jailed,
            "lastChanges": [
                {"node": encode_address(n), "change": c} for n, c in epochs.last_changes(state)
            ],
        }


def _register_offences(registry: Registry, chain: ChainService, resolve: Any) -> None:
    store = chain.store

    @registry.method("offences_list", params=["hash?", "offset?", "limit?"], unsafe=False)
    def list_offences(params: Params) -> dict[str, Any]:
        """The equivocations the chain recorded, oldest first."""
        offset, limit = _page(params)
        state = store.state_at(resolve(params))
        keys = offences.offence_keys(state)
        found = []
        for key in keys[offset : offset + limit]:
            record = offences.get_offence(state, key)
            if record is None:
                continue
            found.append(
                {
                    "kind": key.kind.name.lower(),
                    "offender": encode_address(key.offender),
                    "round" if key.kind is offences.OffenceKind.VOTE else "slot": key.at,
                    "reporter": encode_address(record.reporter),
                    "block": record.block,
                    "conflicting": [_hex(record.first), _hex(record.second)],
                }
            )
        return {"total": len(keys), "offences": found}


def _maybe_hex(value: bytes | None) -> str | None:
    return None if value is None else _hex(value)


def encode_header(header: Header) -> str:
    return dumps(header_json(header))


async def _statuses(receive: trio.MemoryReceiveChannel[TxStatus]) -> AsyncIterator[Any]:
    async with receive:
        async for status in receive:
            yield status
