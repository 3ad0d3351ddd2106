"""`statemesh billing …`: what resources cost per node class, and what an application was
charged period by period (replica, node, usage, amount, paid)."""

from __future__ import annotations

import argparse
from typing import Any

from node.commands.client_options import add_client_arguments, emit, rpc_client, rpc_errors

_PRICE_NAMES = (
    ("cpuMillicoreHour", "CPU millicore-hour"),
    ("memoryGibHour", "memory GiB-hour"),
    ("diskGibHour", "disk GiB-hour"),
    ("gpuHour", "GPU-hour"),
    ("replicaHourMinimum", "replica-hour minimum"),
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    billing = sub.add_parser("billing", help="prices and what applications were charged")
    what = billing.add_subparsers(dest="billing_command", required=True, metavar="WHAT")

    prices = what.add_parser("prices", help="what an hour of each resource costs, per class")
    prices.set_defaults(handler=_prices)

    show = what.add_parser("show", help="an application's charges per period, and if paid")
    show.add_argument("name")
    show.add_argument("--offset", type=int, default=0)
    show.add_argument("--limit", type=int, default=24, help="periods, newest first")
    show.set_defaults(handler=_show)

    for parser in (prices, show):
        add_client_arguments(parser)


def price_lines(found: dict[str, Any]) -> list[str]:
    lines = [
        f"period {found['periodSeconds']} s, grace {found['gracePeriodSeconds']} s, deletion "
        f"after {found['deletionPeriodSeconds']} s of suspension",
    ]
    for name, prices in found["classes"].items():
        lines.append(f"{name}:")
        lines += [f"  {label:<22} {prices[key]}" for key, label in _PRICE_NAMES]
    return lines


def _prices(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        found = client.call("billing_prices")
    emit(args, found, price_lines(found))
    return 0


def statement_lines(found: dict[str, Any]) -> list[str]:
    lines = [
        f"{found['app']} (instance {found['instance']}), paid by {found['wallet']}, class "
        f"{found['nodeClass']}",
    ]
    if found["suspendedSince"] is not None:
        lines.append(f"  suspended since {found['suspendedSince']} ms: an invoice is unpaid")
    prices = found["prices"]
    lines.append("  prices: " + ", ".join(f"{label} {prices[key]}" for key, label in _PRICE_NAMES))
    for period in found["periods"]:
        state = "paid" if period["paid"] else "open" if period["invoice"] is not None else "due"
        lines.append(f"  period {period['period']}: {period['amount']} ({state})")
        for item in period["items"]:
            lines.append(
                f"    replica {item['replica']} on {item['node'][:18]}…  cpu {item['cpuMs']} ms"
                f"  memory {item['peakMemoryBytes']} B  disk {item['diskBytes']} B"
                f"  placed {item['assignedMs']} ms  amount {item['amount']}"
            )
    if not found["periods"]:
        lines.append("  nothing charged yet")
    return lines


def _show(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        found = client.call("billing_statement", args.name, None, args.offset, args.limit)
    if found is None:
        emit(args, None, [f"{args.name} is not an application paid by a wallet"])
        return 1
    emit(args, found, statement_lines(found))
    return 0


def earnings_command(args: argparse.Namespace) -> int:
    """`statemesh query earnings OPERATOR`."""
    client = rpc_client(args)
    with rpc_errors():
        found = client.call("billing_earnings", args.operator, args.offset, args.limit)
    lines = [f"{found['operator']}: paid in {found['total']} period(s)"]
    lines += [f"  period {e['period']}: {e['amount']}" for e in found["earnings"]]
    emit(args, found, lines)
    return 0
