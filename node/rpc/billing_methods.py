"""The JSON-RPC methods about billing: `billing_prices`, `billing_invoices` (a wallet's open
invoices, or one by id), `billing_statement` (what an application was charged, period by
period) and `billing_earnings` (what an operator was paid). Amounts are decimal strings: they
are u128 on chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chain.address import encode_address
from chain.primitives import AccountId
from chain.runtime import apps, billing, system
from chain.runtime.config import NODE_CLASSES, RuntimeConfig
from chain.state import StateReader
from node.rpc.errors import RpcError
from node.rpc.registry import Params, Registry

MAX_PAGE = 100
INVALID_PARAMS = -32602


def prices_json(prices: Any) -> dict[str, str]:
    return {
        "cpuMillicoreHour": str(prices.cpu_millicore_hour),
        "memoryGibHour": str(prices.memory_gib_hour),
        "diskGibHour": str(prices.disk_gib_hour),
        "gpuHour": str(prices.gpu_hour),
        "replicaHourMinimum": str(prices.replica_hour_minimum),
    }


def invoice_json(invoice: billing.Invoice) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "wallet": encode_address(invoice.wallet),
        "period": invoice.period,
        "lines": [
            {"operator": encode_address(who), "amount": str(amount)}
            for who, amount in invoice.lines
        ],
        "total": str(invoice.total),
        "paid": invoice.paid,
    }


def item_json(item: billing.LineItem) -> dict[str, Any]:
    return {
        "replica": item.replica,
        "node": "0x" + item.node.hex(),
        "operator": encode_address(item.operator),
        "cpuMs": item.cpu_ms,
        "peakMemoryBytes": item.peak_memory_bytes,
        "diskBytes": item.disk_bytes,
        "uptimeMs": item.uptime_ms,
        "assignedMs": item.assigned_ms,
        "gpuMs": item.gpu_ms,
        "amount": str(item.amount),
    }


def timestamp_ms(state: StateReader) -> int:
    """The timestamp of the block whose state this is."""
    data = state.get(system.TIMESTAMP_KEY)
    return 0 if data is None else int.from_bytes(data, "big")


def _page(params: Params) -> tuple[int, int]:
    offset = params.optional("offset", int, 0)
    limit = params.optional("limit", int, MAX_PAGE)
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise RpcError(INVALID_PARAMS, f"invalid params: offset >= 0 and 1 <= limit <= {MAX_PAGE}")
    return offset, limit


def register(
    registry: Registry,
    store: Any,
    resolve: Any,
    account: Callable[[Any], AccountId],
    app_name: Callable[[Any], str],
    config: RuntimeConfig,
) -> None:
    """`resolve(params)`: the block a query reads (the `hash` given, or the best block);
    `account`, `app_name`: the parsers of those parameters; `config`: the chain's runtime
    parameters (genesis prices, periods)."""

    def state_at(params: Params) -> StateReader:
        state: StateReader = store.state_at(resolve(params))
        return state

    # All safe: billing is public chain data.
    @registry.method("billing_prices", params=["hash?"], unsafe=False)
    def billing_prices(params: Params) -> dict[str, Any]:
        """Prices per node class (in the smallest unit), the metering period, grace and
        deletion periods."""
        state = state_at(params)
        return {
            "classes": {
                name: prices_json(billing.prices(state, config.billing, name))
                for name in NODE_CLASSES
            },
            "periodSeconds": config.metering_period_seconds,
            "gracePeriodSeconds": config.billing.grace_seconds,
            "deletionPeriodSeconds": config.billing.deletion_seconds,
        }

    @registry.method(
        "billing_invoices", params=["wallet?", "id?", "offset?", "limit?", "hash?"], unsafe=False
    )
    def billing_invoices(params: Params) -> dict[str, Any]:
        """A wallet's open invoices, oldest first, a page at a time; or the invoice `id`."""
        state = state_at(params)
        invoice_id = params.optional("id", int)
        if invoice_id is not None:
            if invoice_id < 0:
                raise RpcError(INVALID_PARAMS, "invalid params: an invoice id is >= 0")
            found = billing.invoice(state, invoice_id)
            return {
                "total": 0 if found is None else 1,
                "invoices": [] if found is None else [invoice_json(found)],
            }
        wallet = params.optional("wallet", account)
        if wallet is None:
            raise RpcError(INVALID_PARAMS, "invalid params: give a wallet or an invoice id")
        offset, limit = _page(params)
        ids = billing.open_invoice_ids(state, wallet)
        shown = []
        for i in ids[offset : offset + limit]:
            found = billing.invoice(state, i)
            if found is not None:
                shown.append(invoice_json(found))
        return {"total": len(ids), "invoices": shown}

    @registry.method(
        "billing_statement", params=["name", "period?", "offset?", "limit?", "hash?"], unsafe=False
    )
    def billing_statement(params: Params) -> dict[str, Any] | None:
        """What a live application was charged, newest period first (from `period`, by
        default the current one, back over the periods kept): per replica the node, the usage,
        the amount; per period whether the wallet's invoice is paid. Null for an application
        that is not billed."""
        name = params.required("name", app_name)
        state = state_at(params)
        record = apps.get_app(state, name)
        if record is None:
            return None
        wallet = billing.wallet_of(state, record.instance)
        if wallet is None:
            return None
        offset, limit = _page(params)
        newest = params.optional("period", int)
        if newest is None:
            newest = timestamp_ms(state) // (config.metering_period_seconds * 1000)
        periods = billing.line_items(state, record.instance, newest, billing.MAX_ITEMS_KEPT)
        shown = []
        for period, items in periods[offset : offset + limit]:
            invoice = billing.invoice_of(state, wallet, period)
            shown.append(
                {
                    "period": period,
                    "invoice": None if invoice is None else invoice.id,
                    "paid": invoice is not None and invoice.paid,
                    "amount": str(sum(i.amount for i in items)),
                    "items": [item_json(i) for i in items],
                }
            )
        return {
            "app": name,
            "instance": record.instance,
            "wallet": encode_address(wallet),
            "nodeClass": record.node_class,
            "prices": prices_json(billing.prices(state, config.billing, record.node_class)),
            "suspendedSince": billing.suspended_since(state, name),
            "total": len(periods),
            "periods": shown,
        }

    @registry.method(
        "billing_earnings", params=["operator", "offset?", "limit?", "hash?"], unsafe=False
    )
    def billing_earnings(params: Params) -> dict[str, Any]:
        """What an operator was paid, newest period first."""
        operator = params.required("operator", account)
        offset, limit = _page(params)
        kept = list(reversed(billing.earnings(state_at(params), operator)))
        return {
            "operator": encode_address(operator),
            "total": len(kept),
            "earnings": [{"period": p, "amount": str(a)} for p, a in kept[offset : offset + limit]],
        }
