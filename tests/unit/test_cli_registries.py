"""`statemesh node --allow-private-registries`: off by default, and passed to the engine adapter
that refuses tenants' images from registries only the node reaches."""

from __future__ import annotations

from types import SimpleNamespace

from node.cli import build_parser
from node.runner import NodeConfig
from orchestrator.docker_engine import DockerAdapter


def test_private_registries_are_refused_unless_the_operator_allows_them() -> None:
    assert build_parser().parse_args(["node"]).allow_private_registries is False
    args = build_parser().parse_args(["node", "--allow-private-registries"])
    assert args.allow_private_registries is True
    assert NodeConfig.__dataclass_fields__["allow_private_registries"].default is False
    adapter = DockerAdapter(SimpleNamespace(api=None), "fake://engine")  # type: ignore[arg-type]
    assert adapter.allow_private_registries is False
