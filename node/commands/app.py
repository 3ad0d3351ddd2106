"""`statemesh app …`: validate a manifest, deploy, update, scale and delete applications, and
see where their replicas run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from chain.runtime.manifest import Manifest, ManifestError, parse_manifest
from node.commands.client_options import add_client_arguments, emit, rpc_client, rpc_errors
from node.commands.tx import add_signing_arguments, submit_call
from node.errors import CliError, UsageError


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
    if info is None:
        emit(args, None, [f"no application {args.name!r}"])
        return 1
    lines = [
        f"application {info['name']}  revision {info['revision']}  replicas {info['replicas']}"
        f"  class {info['nodeClass']}",
        f"  owner {info['owner']}  manifest {info['manifestHash']}",
    ]
    for replica in info["placement"]:
        where = replica["node"] or f"pending: {replica['reason']}"
        lines.append(
            f"  replica {replica['replica']} (revision {replica['revision']})  {where}"
            f"  since #{replica['since']}"
        )
    for event in events[-10:]:
        data = ", ".join(f"{k}={v}" for k, v in event["data"].items() if k != "app")
        lines.append(f"  #{event['block']} {event['name']}({data})")
    emit(args, {**info, "events": events}, lines)
    return 0
