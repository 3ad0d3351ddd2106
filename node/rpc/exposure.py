"""Who may call the unsafe methods: Substrate's `--rpc-methods auto|safe|unsafe`.

A method is unsafe when it reveals this node's own network (peers, addresses to dial), acts
for the node's operator (spends its accounts, touches its keystore) or administers the node.
`auto` serves them only while the server listens on loopback, where only this machine can
call; listening on any other address, `auto` means `safe`."""

from __future__ import annotations

import enum
import ipaddress

from node.rpc.errors import METHOD_NOT_FOUND, RpcError

UNSAFE_MESSAGE = "RPC call is unsafe to be called externally"
"""Substrate's words for the refusal (code -32601): tools that recognise it keep working."""


class RpcMethods(enum.Enum):
    AUTO = "auto"
    SAFE = "safe"
    UNSAFE = "unsafe"

    def allows_unsafe(self, host: str) -> bool:
        """Whether a server listening on `host` serves unsafe methods."""
        if self is RpcMethods.AUTO:
            return is_loopback(host)
        return self is RpcMethods.UNSAFE


def is_loopback(host: str) -> bool:
    """A listen address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def unsafe_method_error(method: str) -> RpcError:
    """Substrate's error, word for word (tools compare the message), with the explanation in
    `data`."""
    return RpcError(
        METHOD_NOT_FOUND,
        UNSAFE_MESSAGE,
        f"{method} is an unsafe method, which this server does not serve (start the node with "
        "--rpc-methods unsafe to serve it, only where no stranger can reach the RPC port)",
    )
