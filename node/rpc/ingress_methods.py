"""The JSON-RPC methods about routing: the ingress routes this node serves, and where each
replica of an application can be reached (like `kubectl get endpoints`)."""

from __future__ import annotations

from typing import Any

from chain.address import encode_address
from chain.ledger import Ledger
from chain.runtime import apps
from node.rpc.errors import RpcError
from node.rpc.registry import Params, Registry
from node.rpc.workload_methods import UNKNOWN_APP
from orchestrator.endpoints import EndpointService, ReadyReplica


def register_ingress_methods(registry: Registry, chain: Ledger, endpoints: EndpointService) -> None:
    """`ingress_routes` and `app_endpoints`."""
    store = chain.store

    # Safe: app owners read it (`statemesh app endpoints`); it holds what the chain and the
    # peers' advertisements already say, and pod addresses no one outside the node can reach.
    @registry.method("ingress_routes", unsafe=False)
    async def ingress_routes(params: Params) -> list[dict[str, Any]]:
        table = endpoints.routes()
        return [
            {
                "host": host,
                "path": route.path,
                "app": route.app,
                "backends": [str(b) for b in route.backends],
            }
            for host in sorted(table.hosts)
            for route in table.hosts[host]
        ]

    @registry.method("app_endpoints", params=["app"], unsafe=False)
    async def app_endpoints(params: Params) -> list[dict[str, Any]]:
        app = params.required("app", str)
        state = store.state_at(store.finalized_header.hash)
        if apps.get_app(state, app) is None:
            raise RpcError(UNKNOWN_APP, f"no application {app!r} in finalized state")
        ready = endpoints.ready_by_node()
        found = []
        for entry in apps.placement(state, app):
            on = ready.get(entry.node) if entry.node else None
            is_ready = on is not None and ReadyReplica(app, entry.revision, entry.index) in on[1]
            found.append(
                {
                    "replica": entry.index,
                    "revision": entry.revision,
                    "node": encode_address(entry.node) if entry.node else None,
                    "address": on[0] if on is not None else None,
                    "ready": is_ready,
                }
            )
        return found
