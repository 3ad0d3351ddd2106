"""`statemesh app …`: validate a manifest, deploy, update, scale and delete applications, and
see where their replicas run."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from contextlib import aclosing
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from chain.runtime.manifest import Manifest, ManifestError
from node.commands.client_options import add_client_arguments, emit, rpc_client, rpc_errors
from node.commands.manifest_file import parse_manifest
from node.commands.owner_access import access_errors, add_owner_arguments, owner_auth
from node.commands.tx import add_signing_arguments, submit_call
from node.errors import CliError, UsageError
from node.rpc.client import RpcClient
from orchestrator.disk import shown


class InvalidManifest(CliError):
    """A manifest with problems; every problem is listed with its path."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    app = sub.add_parser("app", help="deploy and manage applications", description=__doc__)
    actions = app.add_subparsers(dest="app_command", required=True, metavar="ACTION")

    validate = actions.add_parser("validate", help="check a manifest (YAML or JSON)")
    validate.add_argument("manifest", type=Path)
    validate.add_argument("--json", action="store_true", help="print the canonical form")
    validate.set_defaults(handler=_validate)

    deploy = actions.add_parser("deploy", help="create an application from a manifest")
    deploy.add_argument("manifest", type=Path)
    deploy.add_argument(
        "--wallet",
        metavar="ADDRESS",
        help="the platform wallet (whose login key is --from) that pays for the application "
        "each period; without it the application is not billed",
    )
    deploy.set_defaults(handler=_deploy)

    update = actions.add_parser("update", help="roll out a new revision of an application")
    update.add_argument("manifest", type=Path)
    update.set_defaults(handler=_update)

    scale = actions.add_parser("scale", help="set an application's number of replicas")
    scale.add_argument("name")
    scale.add_argument("--replicas", type=int, required=True)
    scale.set_defaults(handler=_scale)

    delete = actions.add_parser("delete", help="remove an application and its replicas")
    delete.add_argument("name")
    delete.set_defaults(handler=_delete)

    for parser in (deploy, update, scale, delete):
        add_signing_arguments(parser)

    status = actions.add_parser("status", help="an application's replicas and recent events")
    status.add_argument("name")
    status.set_defaults(handler=_status)
    add_client_arguments(status)

    logs = actions.add_parser("logs", help="what an application's containers on this node wrote")
    logs.add_argument("name")
    logs.add_argument("--replica", type=int, metavar="N", help="only replica N")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each")
    logs.add_argument("--follow", "-f", action="store_true", help="then print new lines as written")
    logs.set_defaults(handler=_logs)
    add_client_arguments(logs)
    add_owner_arguments(logs)

    events = actions.add_parser(
        "events",
        help="an application's events: the chain's, and (to its owner) this node's for its "
        "replicas",
    )
    events.add_argument("name")
    events.set_defaults(handler=_events)
    add_client_arguments(events)
    add_owner_arguments(events)

    metrics = actions.add_parser(
        "metrics",
        help="CPU, memory and restarts of an application's replicas on this node, and its "
        "requests, errors and latency through this node's ingress (to its owner)",
    )
    metrics.add_argument("name")
    metrics.set_defaults(handler=_metrics)
    add_client_arguments(metrics)
    add_owner_arguments(metrics)

    endpoints = actions.add_parser(
        "endpoints", help="where an application's replicas run and which of them are ready"
    )
    endpoints.add_argument("name")
    endpoints.set_defaults(handler=_endpoints)
    add_client_arguments(endpoints)


def load_manifest(path: Path) -> Manifest:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse_manifest(text)
    except ManifestError as exc:
        raise InvalidManifest(f"{path}: {exc}") from None


def _validate(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest)
    spec = manifest.spec
    if args.json:
        print(manifest.canonical_json().decode())
        return 0
    resources = manifest.replica_resources()
    print(f"{args.manifest}: valid application {manifest.name!r}")
    print(
        f"  replicas {spec.replicas} of class {spec.node_class.value}, each {resources.describe()}"
    )
    print(f"  manifest hash 0x{manifest.hash().hex()}")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest)
    if args.wallet:
        return submit_call(
            args,
            "apps",
            "create_paid",
            {"manifest": manifest.canonical_json(), "wallet": args.wallet},
        )
    return submit_call(args, "apps", "create", {"manifest": manifest.canonical_json()})


def _update(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest)
    return submit_call(args, "apps", "update", {"manifest": manifest.canonical_json()})


def _scale(args: argparse.Namespace) -> int:
    if args.replicas < 0:
        raise UsageError("--replicas must not be negative")
    return submit_call(args, "apps", "scale", {"app": args.name, "replicas": args.replicas})


def _delete(args: argparse.Namespace) -> int:
    return submit_call(args, "apps", "delete", {"app": args.name})


def _status(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        info: dict[str, Any] | None = client.call("apps_get", args.name)
        events = client.call("apps_events", args.name) if info else []
        retained: list[dict[str, Any]] = client.call("apps_retained", args.name)
        scaling: dict[str, Any] | None = (
            client.call("apps_autoscaling", args.name) if info else None
        )
    if info is None:
        lines = [f"no application {args.name!r}"]
        lines += [_retained_line(r) for r in retained]
        emit(args, {"retained": retained} if retained else None, lines)
        return 1
    lines = [
        f"application {info['name']}  revision {info['revision']}  replicas {info['replicas']}"
        f"  class {info['nodeClass']}",
        f"  owner {info['owner']}  instance {info['instance']}  manifest {info['manifestHash']}",
    ]
    if scaling is not None:
        lines += autoscaling_lines(scaling)
    for replica in info["placement"]:
        where = replica["node"] or f"pending: {replica['reason']}"
        lines.append(
            f"  replica {replica['replica']} (revision {replica['revision']})  {where}"
            f"  since #{replica['since']}"
        )
    for event in events[-10:]:
        data = ", ".join(f"{k}={v}" for k, v in event["data"].items() if k != "app")
        lines.append(f"  #{event['block']} {event['name']}({data})")
    lines += [_retained_line(r) for r in retained]
    emit(args, {**info, "autoscaling": scaling, "events": events, "retained": retained}, lines)
    return 0


def autoscaling_lines(scaling: dict[str, Any]) -> list[str]:
    """An autoscaled application's current and desired replicas, the utilisation measured and
    the last scaling decisions with their reasons."""
    measured = scaling["utilisation"]
    shown = "not measured yet" if measured is None else f"{measured}%"
    lines = [
        f"  autoscaling {scaling['minReplicas']} to {scaling['maxReplicas']} replicas at"
        f" {scaling['targetCPUUtilizationPercentage']}% CPU: current {scaling['currentReplicas']}"
        f"  desired {scaling['desiredReplicas']}  utilisation {shown}",
    ]
    if scaling["reason"]:
        lines.append(f"    last decision (period {scaling['lastPeriod']}): {scaling['reason']}")
    for d in scaling["decisions"]:
        lines.append(f"    period {d['period']}: {d['from']} -> {d['to']}  {d['reason']}")
    return lines


def _retained_line(kept: dict[str, Any]) -> str:
    """A deleted instance of the name whose volumes the nodes still keep."""
    until = datetime.fromtimestamp(kept["retainedUntil"] / 1000).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"  deleted instance {kept['instance']} of {kept['owner']} (#{kept['deletedAt']}):"
        f" its volumes are kept until {until}"
    )


def _log_prefix(entry: dict[str, Any], prefixed: bool) -> str:
    return f"[{entry['replica']}/{entry['container']}] " if prefixed else ""


def _logs(args: argparse.Namespace) -> int:
    for flag in ("replica", "tail"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            raise UsageError(f"--{flag} must not be negative")
    client = rpc_client(args)
    with rpc_errors(), access_errors():
        # Logs are served to the application's owner only: the request is signed by its key.
        auth = owner_auth(args, client, args.name, required=True)
        # With --follow, this call checks the request and learns how many containers answer.
        found: list[dict[str, Any]] = client.call(
            "app_logs", args.name, args.replica, 0 if args.follow else args.tail, auth
        )
    prefixed = len(found) > 1
    if args.follow:
        return _follow_logs(args, client.url, prefixed, auth)
    if args.json:
        emit(args, found, [])
        return 0
    for entry in found:
        if entry["truncated"]:
            print(
                f"({entry['replica']}/{entry['container']}: older lines left out)", file=sys.stderr
            )
        if prefixed:
            for line in entry["text"].splitlines():
                print(_log_prefix(entry, prefixed) + line)
        else:
            sys.stdout.write(entry["text"])
    sys.stdout.flush()
    return 0


def _follow_logs(
    args: argparse.Namespace, url: str, prefixed: bool, auth: dict[str, Any] | None
) -> int:
    # No deadline between notifications: a quiet container is not a lost node.
    follower = RpcClient(url, timeout=math.inf)
    tail = "all" if args.tail is None else args.tail

    interrupted = False

    async def follow() -> None:
        batches = follower.watch("app_subscribeLogs", args.name, args.replica, tail, auth)
        # Ctrl-C ends the follow as a cancellation of this task: left to trio's default (a
        # KeyboardInterrupt raised in whichever task runs), it can land in the WebSocket's
        # reader task and leave the generator's tasks running past the end of the run.
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def on_interrupt() -> None:
                    nonlocal interrupted
                    async for _ in signals:
                        interrupted = True
                        nursery.cancel_scope.cancel()

                nursery.start_soon(on_interrupt)
                async with aclosing(batches):
                    async for batch in batches:
                        for line in batch:
                            if args.json:
                                print(json.dumps(line))
                            else:
                                print(_log_prefix(line, prefixed) + line["text"])
                        sys.stdout.flush()
                nursery.cancel_scope.cancel()

    with rpc_errors():
        trio.run(follow)
    if interrupted:
        raise KeyboardInterrupt
    return 0


def _events(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors(), access_errors():
        # The chain's events are anyone's; the node's, of the containers, its owner's only.
        auth = owner_auth(args, client, args.name, required=False)
        events: list[dict[str, Any]] = client.call("app_events", args.name, auth)
    if auth is None:
        print(
            "(the chain's events only: this node's events of the containers are shown to the "
            "application's owner, with its key)",
            file=sys.stderr,
        )
    lines = [] if events else [f"no events of application {args.name!r}"]
    for event in events:
        when = datetime.fromtimestamp(event["time"]).strftime("%Y-%m-%d %H:%M:%S")
        where = "node" if event["block"] is None else f"#{event['block']}"
        replica = "" if event["replica"] is None else f"replica {event['replica']}"
        if event["revision"] is not None:
            replica += f" (revision {event['revision']})"
        if event["container"]:
            replica += f" {event['container']}"
        detail = ": ".join(x for x in (event["reason"], event["message"]) if x)
        lines.append(f"{when}  {where:<7} {event['kind']:<16} {replica:<24} {detail}".rstrip())
    emit(args, events, lines)
    return 0


def _metrics(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors(), access_errors():
        # An application's metrics are its owner's: the request is signed by its key.
        auth = owner_auth(args, client, args.name, required=True)
        found: dict[str, Any] = client.call("app_metrics", args.name, auth)
    emit(args, found, metrics_lines(found))
    return 0


def metrics_lines(found: dict[str, Any]) -> list[str]:
    """`app_metrics`'s answer as a table of replicas, then the ingress traffic."""
    rows = [("REPLICA", "STATE", "READY", "RESTARTS", "CPU", "MEMORY", "PEAK", "UPTIME")]
    for r in found["replicas"]:
        rows.append(
            (
                str(r["replica"]),
                r["state"],
                "yes" if r["ready"] else "no",
                str(r["restarts"]),
                f"{r['cpuSeconds']:.2f} s",
                shown(r["memoryBytes"]),
                shown(r["peakMemoryBytes"]),
                f"{r['uptimeSeconds']:.0f} s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"application {found['app']} on node {found['node']}"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]  # fmt: skip
    ingress = found["ingress"]
    if ingress is None:
        lines.append("ingress: this node serves none")
        return lines
    lines.append(
        f"ingress (this node): {ingress['requests']} requests, {ingress['errors']} errors (5xx),"
        f" latency p50 {_latency(ingress['latencyP50Seconds'])},"
        f" p95 {_latency(ingress['latencyP95Seconds'])}"
    )
    if ingress["byCode"]:
        codes = ", ".join(f"{code} {n}" for code, n in ingress["byCode"].items())
        lines.append(f"  by status: {codes}")
    return lines


def _latency(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _endpoints(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        found: list[dict[str, Any]] = client.call("app_endpoints", args.name)
        routes: list[dict[str, Any]] = client.call("ingress_routes")
    mine = [r for r in routes if r["app"] == args.name]
    lines = []
    for route in mine:
        backends = ", ".join(route["backends"]) or "no ready replica"
        lines.append(f"http://{route['host']}{route['path']} -> {backends}")
    for entry in found:
        where = entry["node"] or "pending"
        state = "ready" if entry["ready"] else "not ready"
        address = f" at {entry['address']}" if entry["address"] else ""
        replica = f"replica {entry['replica']} (revision {entry['revision']})"
        lines.append(f"  {replica}  {where}{address}  {state}")
    emit(args, {"routes": mine, "replicas": found}, lines)
    return 0
