"""Request/response protocols: one framed request and one framed response per stream, with
size limits on both sides, a timeout, bounded inbound concurrency and typed failures.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.host.exceptions import StreamFailure
from libp2p.network.exceptions import SwarmException
from libp2p.network.stream.exceptions import StreamError
from libp2p.protocol_muxer.exceptions import MultiselectClientError, ProtocolNotSupportedError

from p2p.config import ScoringConfig
from p2p.containment import contained, reset_quietly, stream_peer
from p2p.errors import (
    BadRequest,
    DuplicateRegistration,
    FrameTooLarge,
    InvalidConfig,
    MalformedFrame,
    MalformedResponse,
    PeerUnreachable,
    ProtocolUnsupported,
    RemoteError,
    RequestTimeout,
    RequestTooLarge,
    ResponseTooLarge,
    StreamAborted,
    TruncatedFrame,
    TruncatedResponse,
)
from p2p.framing import (
    ResponseStatus,
    encode_request,
    encode_response,
    error_payload,
    read_request,
    read_response,
)
from p2p.identity import PeerId, libp2p_id
from p2p.names import check_name, protocol_id
from p2p.scoring import Penalizer

logger = logging.getLogger(__name__)

Handler = Callable[[PeerId, bytes], Awaitable[bytes]]
"""Answers (requesting peer, request) with response bytes; raise `BadRequest` to refuse and
penalize the caller. Any other exception answers `internal error` and is logged."""

_STREAM_FAILURES = (StreamError, BaseLibp2pError, OSError)


@dataclass(frozen=True, slots=True)
class ProtocolLimits:
    max_request_bytes: int
    max_response_bytes: int
    timeout: float
    """Covers a whole exchange: reading, handling and writing on the server; opening the
    stream, sending and receiving on the client."""
    max_concurrent: int
    """Requests served at once; more are answered `busy` straight away."""

    def __post_init__(self) -> None:
        for name in ("max_request_bytes", "max_response_bytes", "timeout", "max_concurrent"):
            if getattr(self, name) <= 0:
                raise InvalidConfig(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class RequestStatistics:
    protocols: int
    sent: int
    succeeded: int
    failed: int
    served: int
    refused: int
    busy: int
    handler_errors: int


@dataclass(slots=True)
class _Registration:
    name: str
    protocol: TProtocol
    handler: Handler
    limits: ProtocolLimits
    slots: trio.Semaphore


def _refused_protocol(cause: BaseException | None) -> bool:
    """True only when the peer answered "na" to every protocol offered. libp2p 0.8.1 reports
    that and a stream that died mid-negotiation with the same exception type; only the text
    of the first tells them apart (and `ProtocolNotSupportedError` for a single refusal)."""
    if isinstance(cause, ProtocolNotSupportedError):
        return True
    return isinstance(cause, MultiselectClientError) and str(cause).startswith(
        "protocols not supported"
    )


class RequestResponse:
    def __init__(
        self,
        host: IHost,
        network_id: str,
        scoring: ScoringConfig,
        penalize: Penalizer,
        is_banned: Callable[[PeerId], bool],
        *,
        default_timeout: float,
        default_max_response_bytes: int,
    ) -> None:
        self._host = host
        self._network_id = network_id
        self._scoring = scoring
        self._penalize = penalize
        self._is_banned = is_banned
        self._default_timeout = default_timeout
        self._default_max_response_bytes = default_max_response_bytes
        self._registrations: dict[str, _Registration] = {}
        self._sent = 0
        self._succeeded = 0
        self._failed = 0
        self._served = 0
        self._refused = 0
        self._busy = 0
        self._handler_errors = 0

    def register(self, name: str, handler: Handler, limits: ProtocolLimits) -> None:
        check_name("protocol name", name)
        if name in self._registrations:
            raise DuplicateRegistration(f"protocol {name!r} is already registered")
        protocol = TProtocol(protocol_id(self._network_id, name))
        registration = _Registration(
            name, protocol, handler, limits, trio.Semaphore(limits.max_concurrent)
        )
        self._registrations[name] = registration

        async def serve(stream: INetStream) -> None:
            await self._serve(registration, stream)

        self._host.set_stream_handler(protocol, contained(protocol, serve, self._serve_failed))

    def _serve_failed(self, peer: PeerId, protocol: str, error: Exception) -> None:
        self._handler_errors += 1

    async def _serve(self, registration: _Registration, stream: INetStream) -> None:
        peer = stream_peer(stream)
        try:
            registration.slots.acquire_nowait()
        except trio.WouldBlock:
            self._busy += 1
            with trio.move_on_after(registration.limits.timeout):
                await self._answer(stream, ResponseStatus.ERROR, error_payload("busy: try again"))
            return
        try:
            with trio.move_on_after(registration.limits.timeout) as scope:
                status, payload = await self._handle(registration, peer, stream)
                await self._answer(stream, status, payload)
            if scope.cancelled_caught:
                logger.info(
                    "%s from %s took over %.1f s; stream reset",
                    registration.name,
                    peer,
                    registration.limits.timeout,
                )
                await reset_quietly(stream)
        finally:
            registration.slots.release()

    async def _handle(
        self, registration: _Registration, peer: PeerId, stream: INetStream
    ) -> tuple[ResponseStatus, bytes]:
        limits = registration.limits
        try:
            request = await read_request(stream, limits.max_request_bytes)
        except FrameTooLarge as error:
            self._refused += 1
            self._penalize(peer, self._scoring.bad_request_penalty, f"{registration.name}: {error}")
            return ResponseStatus.ERROR, error_payload(f"request too large: {error}")
        except TruncatedFrame as error:
            self._refused += 1
            self._penalize(peer, self._scoring.bad_request_penalty, f"{registration.name}: {error}")
            return ResponseStatus.ERROR, error_payload(f"truncated request: {error}")
        try:
            response = await registration.handler(peer, request)
        except BadRequest as error:
            self._refused += 1
            self._penalize(peer, self._scoring.bad_request_penalty, f"{registration.name}: {error}")
            return ResponseStatus.ERROR, error_payload(f"bad request: {error}")
        except Exception:  # the handler is the node's code: log it, answer, keep serving
            self._handler_errors += 1
            logger.exception("handler for %s failed on a request from %s", registration.name, peer)
            return ResponseStatus.ERROR, error_payload("internal error")
        if len(response) > limits.max_response_bytes:
            self._handler_errors += 1
            logger.error(
                "handler for %s returned %d bytes, over its %d-byte response limit",
                registration.name,
                len(response),
                limits.max_response_bytes,
            )
            return ResponseStatus.ERROR, error_payload("internal error: response too large")
        self._served += 1
        return ResponseStatus.OK, response

    async def _answer(self, stream: INetStream, status: ResponseStatus, payload: bytes) -> None:
        try:
            await stream.write(encode_response(status, payload))
            await stream.close()
        except _STREAM_FAILURES as error:
            # The requester went away before the answer: nothing left to tell it.
            logger.debug("could not answer on %s: %r", stream.get_protocol(), error)
            await reset_quietly(stream)

    async def request(
        self,
        peer_id: PeerId,
        name: str,
        data: bytes,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - expiry resets the stream, typed error
        max_response_bytes: int | None = None,
    ) -> bytes:
        """Send `data` to `peer_id` on protocol `name` and return the response bytes.

        Limits default to this node's own registration of `name` (peers run the same protocols
        with the same limits), else to the service defaults.
        """
        registration = self._registrations.get(name)
        protocol = protocol_id(self._network_id, name)
        if timeout is None:
            timeout = registration.limits.timeout if registration else self._default_timeout
        if max_response_bytes is None:
            max_response_bytes = (
                registration.limits.max_response_bytes
                if registration
                else self._default_max_response_bytes
            )
        if registration is not None and len(data) > registration.limits.max_request_bytes:
            raise RequestTooLarge(
                peer_id,
                protocol,
                f"request of {len(data)} bytes exceeds the "
                f"{registration.limits.max_request_bytes}-byte limit",
            )
        if self._is_banned(peer_id):
            raise PeerUnreachable(peer_id, protocol, "peer is banned")
        self._sent += 1
        succeeded = False
        try:
            response = await self._exchange(peer_id, protocol, data, timeout, max_response_bytes)
            succeeded = True
        finally:
            if succeeded:
                self._succeeded += 1
            else:
                self._failed += 1
        return response

    async def _exchange(
        self,
        peer_id: PeerId,
        protocol: str,
        data: bytes,
        timeout: float,  # noqa: ASYNC109 - see `request`
        limit: int,
    ) -> bytes:
        stream: INetStream | None = None
        complete = False
        try:
            with trio.fail_after(timeout):
                stream = await self._open(peer_id, protocol)
                await stream.write(encode_request(data))
                status, payload = await read_response(stream, limit)
                complete = True
        except trio.TooSlowError:
            raise RequestTimeout(peer_id, protocol, f"no response within {timeout} s") from None
        except FrameTooLarge as error:
            self._penalize(peer_id, self._scoring.bad_response_penalty, f"{protocol}: {error}")
            raise ResponseTooLarge(peer_id, protocol, str(error)) from None
        except TruncatedFrame as error:
            raise TruncatedResponse(peer_id, protocol, str(error)) from None
        except MalformedFrame as error:
            self._penalize(peer_id, self._scoring.bad_response_penalty, f"{protocol}: {error}")
            raise MalformedResponse(peer_id, protocol, str(error)) from None
        except _STREAM_FAILURES as error:
            raise StreamAborted(peer_id, protocol, f"stream failed: {error!r}") from None
        finally:
            if stream is not None:
                await self._finish(stream, complete)
        if status is ResponseStatus.ERROR:
            raise RemoteError(peer_id, protocol, payload.decode(errors="replace"))
        return payload

    async def _open(self, peer_id: PeerId, protocol: str) -> INetStream:
        peer = libp2p_id(peer_id)
        # libp2p would dial an unconnected peer here; requests only use live connections,
        # so nothing dials a peer behind the back of bans and the bootnode loop.
        if not self._host.get_network().get_connections(peer):
            raise PeerUnreachable(peer_id, protocol, "not connected")
        try:
            return await self._host.new_stream(peer, [TProtocol(protocol)])
        except StreamFailure as error:
            if _refused_protocol(error.__cause__):
                raise ProtocolUnsupported(
                    peer_id, protocol, "peer does not speak this protocol (another network?)"
                ) from None
            raise PeerUnreachable(peer_id, protocol, f"{error}: {error.__cause__}") from None
        except (SwarmException, OSError) as error:
            raise PeerUnreachable(peer_id, protocol, f"cannot reach peer: {error}") from None

    async def _finish(self, stream: INetStream, complete: bool) -> None:
        """Close after a full answer; reset otherwise so the peer stops writing."""
        if not complete:
            await reset_quietly(stream)
            return
        with trio.CancelScope(shield=True):
            try:
                await stream.close()
            except _STREAM_FAILURES:
                await reset_quietly(stream)

    def statistics(self) -> RequestStatistics:
        return RequestStatistics(
            protocols=len(self._registrations),
            sent=self._sent,
            succeeded=self._succeeded,
            failed=self._failed,
            served=self._served,
            refused=self._refused,
            busy=self._busy,
            handler_errors=self._handler_errors,
        )
