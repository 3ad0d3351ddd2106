"""Containment of failures caused by remote input: a failing stream handler resets its own
stream and is logged and counted, instead of tearing down the host and every connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import INetStream
from libp2p.exceptions import BaseLibp2pError

from p2p.identity import PeerId

logger = logging.getLogger(__name__)

StreamHandler = Callable[[INetStream], Awaitable[None]]
FailureHook = Callable[[PeerId, str, Exception], None]
"""Told (peer, protocol, error) after a handler failed and its stream was reset."""


def stream_peer(stream: INetStream) -> PeerId:
    return PeerId(stream.muxed_conn.peer_id.to_base58())


async def reset_quietly(stream: INetStream) -> None:
    """Reset a stream that may already be broken; a failure to reset is not news."""
    with trio.CancelScope(shield=True):
        try:
            await stream.reset()
        except (BaseLibp2pError, OSError) as error:
            logger.debug("reset of a failed stream failed too: %r", error)


async def close_quietly(stream: INetStream) -> None:
    """End our side of a stream cleanly (the peer reads a clean end of stream); reset it if
    even that fails."""
    with trio.CancelScope(shield=True):
        try:
            await stream.close()
        except (BaseLibp2pError, OSError) as error:
            logger.debug("close of a stream failed; resetting it: %r", error)
            await reset_quietly(stream)


def contained(protocol: str, handler: StreamHandler, on_failure: FailureHook) -> StreamHandler:
    """Wrap a stream handler so any exception resets only that stream.

    libp2p 0.8.1 runs stream handlers in the connection's nursery: an exception escaping one
    tears down the whole host. This wrapper is the boundary where such an exception is caught,
    logged with its traceback, counted by `on_failure`, and turned into a stream reset.
    """

    async def run(stream: INetStream) -> None:
        try:
            await handler(stream)
        except Exception as error:  # the containment boundary, see docstring
            peer = stream_peer(stream)
            logger.warning(
                "handler for %s failed on a stream from %s; resetting that stream only",
                protocol,
                peer,
                exc_info=True,
            )
            await reset_quietly(stream)
            on_failure(peer, protocol, error)

    return run
