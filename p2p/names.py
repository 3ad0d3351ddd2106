"""Protocol ids and topic names, every one scoped by the network id so chains never mix."""

from __future__ import annotations

import re

from p2p.errors import InvalidConfig

_NAME = re.compile(r"^[0-9A-Za-z_-]{1,64}$")

STATUS_PROTOCOL = "status"
"""The handshake every pair of peers runs on connect: status bytes in, status bytes out."""


def check_name(kind: str, value: str) -> str:
    """Network ids, topic and protocol names: 1-64 of `[0-9A-Za-z_-]`, so ids parse cleanly."""
    if not _NAME.fullmatch(value):
        raise InvalidConfig(
            f"{kind} {value!r} must be 1-64 characters of letters, digits, '-' or '_'"
        )
    return value


def protocol_id(network_id: str, name: str, version: int = 1) -> str:
    """`/statemesh/<network id>/<name>/<version>`, e.g. `/statemesh/3fa9c1d2/sync/1`."""
    check_name("network id", network_id)
    check_name("protocol name", name)
    if version < 1:
        raise InvalidConfig(f"protocol version must be >= 1, got {version}")
    return f"/statemesh/{network_id}/{name}/{version}"


def topic_id(network_id: str, name: str, version: int = 1) -> str:
    """`/statemesh/<network id>/<name>/<version>`, e.g. `/statemesh/3fa9c1d2/blocks/1`."""
    check_name("network id", network_id)
    check_name("topic name", name)
    if version < 1:
        raise InvalidConfig(f"topic version must be >= 1, got {version}")
    return f"/statemesh/{network_id}/{name}/{version}"
