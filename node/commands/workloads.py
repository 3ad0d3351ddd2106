"""`statemesh workloads`: the replicas this node runs, their state, and what each has used."""

from __future__ import annotations

import argparse
from typing import Any

from node.commands.client_options import add_client_arguments, emit, rpc_client, rpc_errors

MIB = 1024 * 1024


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("workloads", help="the replicas this node runs", description=__doc__)
    parser.set_defaults(handler=show_workloads)
    add_client_arguments(parser)


def duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.0f}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _row(replica: dict[str, Any]) -> list[str]:
    usage = replica["usage"]
    return [
        replica["app"],
        str(replica["replica"]),
        str(replica["revision"]),
        replica["state"],
        "yes" if replica["ready"] else "no",
        str(replica["restartCount"]),
        f"{usage['cpuSeconds']:.2f}s",
        f"{usage['memoryBytes'] / MIB:.1f}Mi",
        duration(usage["uptimeSeconds"]),
        (replica["containerId"] or "-")[:12],
        replica["reason"] or "",
    ]


def show_workloads(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        found: dict[str, Any] = client.call("node_workloads")
    replicas = found["replicas"]
    lines = [f"node {found['node']}: {len(replicas)} replica(s)"]
    if replicas:
        header = [
            "APP",
            "REPLICA",
            "REVISION",
            "STATE",
            "READY",
            "RESTARTS",
            "CPU",
            "MEMORY",
            "UPTIME",
            "CONTAINER",
            "REASON",
        ]
        rows = [header, *(_row(r) for r in replicas)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines += [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
    emit(args, found, lines)
    return 0
