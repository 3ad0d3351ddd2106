"""Request/response protocols: framed requests and responses with size limits on both sides, a
timeout, bounded inbound concurrency and typed failures.

Streams carry one exchange after another, as HTTP keep-alive does: opening a stream and
negotiating its protocol cost more than a small exchange. A requester keeps a few idle streams
per peer and protocol (`StreamReuseConfig`) and sends its next request on one of them;
concurrent requests each take a stream of their own, opened when none is idle. A stream that
saw a failure, a timeout, a cancellation or an error answer is reset, never reused.

A server serves request after request on a stream until the requester closes it between two
requests, it idles out, a request fails or times out (the stream is reset) or is answered with
an error (the stream is closed). Only requests being handled hold one of a protocol's
concurrency slots; streams waiting for their next request are bounded per peer and in total.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.host.exceptions import StreamFailure
from libp2p.network.exceptions import SwarmException
from libp2p.network.stream.exceptions import StreamError, StreamReset
from libp2p.protocol_muxer.exceptions import MultiselectClientError, ProtocolNotSupportedError

from p2p.config import ScoringConfig, StreamReuseConfig
from p2p.containment import close_quietly, contained, reset_quietly, stream_peer
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
    StreamEnded,
    TruncatedFrame,
    TruncatedResponse,
)
from p2p.framing import (
    ResponseStatus,
    encode_request,
    encode_response,
    error_payload,
    read_request_body,
    read_request_length,
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
    """Covers a whole exchange: reading, handling and writing on the server (on a kept stream,
    from the request's length prefix on); taking or opening a stream, sending and receiving
    on the client."""
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
    streams_opened: int
    """Requests sent on a stream opened for them."""
    streams_reused: int
    """Requests sent on a stream kept from an earlier exchange."""
    retried: int
    """Requests sent again on a new stream after a kept one turned out closed unanswered."""
    pooled: int
    """Idle streams kept now for our next requests."""
    idle_served: int
    """Peers' streams waiting now for their next request."""
    idle_timeouts: int
    """Peers' streams closed after waiting `server_idle_seconds` for a request."""
    idle_over_limit: int
    """Peers' streams closed after an answer because too many were waiting already."""


@dataclass(slots=True)
class _Registration:
    name: str
    protocol: TProtocol
    handler: Handler
    limits: ProtocolLimits
    slots: trio.Semaphore


@dataclass(slots=True)
class _Idle:
    stream: INetStream
    since: float
    """`trio.current_time()` when its last exchange ended."""


class _Unanswered(Exception):
    """A kept stream ended before our request could have been handled; see `_round_trip`."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _refused_protocol(cause: BaseException | None) -> bool:
    """True only when the peer answered "na" to every protocol offered. libp2p 0.8.1 reports
    that and a stream that died mid-negotiation with the same exception type; only the text
    of the first tells them apart (and `ProtocolNotSupportedError` for a single refusal)."""
    if isinstance(cause, ProtocolNotSupportedError):
        return True
    return isinstance(cause, MultiselectClientError) and str(cause).startswith(
        "protocols not supported"
    )


def _connection_open(stream: INetStream) -> bool:
    """libp2p 0.8.1's yamux marks a dying connection as shutting down before it ends its
    streams: a stream that ended on an open connection was ended by the peer's handler."""
    connection: Any = stream.muxed_conn
    shutting_down = getattr(connection, "event_shutting_down", None)
    if shutting_down is not None and shutting_down.is_set():
        return False
    return not connection.is_closed


def _reset_by_peer(stream: INetStream) -> bool:
    """libp2p 0.8.1 reports a reset stream to its reader as a plain end of stream; only
    yamux's flag tells them apart."""
    return bool(getattr(getattr(stream, "muxed_stream", None), "reset_received", False))


def _closed_by_peer(stream: INetStream) -> bool:
    """The peer closed the stream (a FIN) and did not reset it; False when the muxer keeps no
    such flags, as nothing is proven then."""
    muxed: Any = getattr(stream, "muxed_stream", None)
    return getattr(muxed, "recv_closed", False) and not getattr(muxed, "reset_received", True)


def _looks_open(stream: INetStream) -> bool:
    """Best effort and without I/O: the peer has neither closed nor reset the stream (yamux
    marks it `recv_closed` on a FIN, `closed` on a reset) and the connection stands."""
    muxed: Any = getattr(stream, "muxed_stream", None)
    if getattr(muxed, "recv_closed", False) or getattr(muxed, "closed", False):
        return False
    return _connection_open(stream)


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
        reuse: StreamReuseConfig | None = None,
    ) -> None:
        self._host = host
        self._network_id = network_id
        self._scoring = scoring
        self._penalize = penalize
        self._is_banned = is_banned
        self._default_timeout = default_timeout
        self._default_max_response_bytes = default_max_response_bytes
        self._reuse = reuse or StreamReuseConfig()
        self._registrations: dict[str, _Registration] = {}
        self._pool: dict[tuple[PeerId, str], list[_Idle]] = {}
        """Our idle streams per (peer, protocol id), the most recently used last."""
        self._waiting: dict[tuple[PeerId, str], int] = {}
        """Peers' streams waiting for their next request, per (peer, protocol name)."""
        self._waiting_total = 0
        self._nursery: trio.Nursery | None = None
        self._sent = 0
        self._succeeded = 0
        self._failed = 0
        self._served = 0
        self._refused = 0
        self._busy = 0
        self._handler_errors = 0
        self._streams_opened = 0
        self._streams_reused = 0
        self._retried = 0
        self._idle_timeouts = 0
        self._idle_over_limit = 0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Close our idle streams once they have idled `requester_idle_seconds` (none is
        reused after that anyway), and those of peers that disconnected or were banned."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    await trio.sleep(self._reuse.requester_idle_seconds / 2)
                    for stream in self._take_expired(trio.current_time()):
                        nursery.start_soon(close_quietly, stream)
            finally:
                self._nursery = None

    def drop_peer(self, peer_id: PeerId) -> None:
        """Forget our idle streams to a peer that disconnected or was banned."""
        for key in [key for key in self._pool if key[0] == peer_id]:
            idle = self._pool.pop(key)
            streams = [entry.stream for entry in idle]
            idle.clear()  # a request taking a stream from this list right now finds none
            for stream in streams:
                if self._nursery is not None:
                    self._nursery.start_soon(reset_quietly, stream)

    def _take_expired(self, now: float) -> list[INetStream]:
        expired: list[INetStream] = []
        for key, idle in list(self._pool.items()):
            kept = []
            for entry in idle:
                if now - entry.since < self._reuse.requester_idle_seconds:
                    kept.append(entry)
                else:
                    expired.append(entry.stream)
            idle[:] = kept
            if not idle:
                del self._pool[key]
        return expired

    # -- serving -----------------------------------------------------------------------------

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
        """Serve requests on one stream until it is closed, reset or idles out."""
        peer = stream_peer(stream)
        # A new stream's first request is on its way: it takes a slot at once.
        kept = await self._serve_request(registration, peer, stream, None)
        while kept:
            length = await self._await_request(registration, peer, stream)
            if length is None:
                return
            kept = await self._serve_request(registration, peer, stream, length)

    async def _await_request(
        self, registration: _Registration, peer: PeerId, stream: INetStream
    ) -> int | None:
        """Wait, holding no slot, for the next request on a kept stream: its length, or None
        once the stream is closed or reset."""
        key = (peer, registration.name)
        if (
            self._waiting.get(key, 0) >= self._reuse.idle_per_peer
            or self._waiting_total >= self._reuse.idle_total
        ):
            self._idle_over_limit += 1
            await close_quietly(stream)
            return None
        self._waiting[key] = self._waiting.get(key, 0) + 1
        self._waiting_total += 1
        try:
            with trio.move_on_after(self._reuse.server_idle_seconds):
                return await read_request_length(stream)
            self._idle_timeouts += 1
            await close_quietly(stream)
            return None
        except StreamEnded:
            await close_quietly(stream)  # the requester is done with this stream
            return None
        except TruncatedFrame as error:
            self._refuse(registration, peer, error)
            await reset_quietly(stream)
            return None
        except _STREAM_FAILURES as error:
            logger.debug(
                "%s stream from %s failed between requests: %r", registration.name, peer, error
            )
            await reset_quietly(stream)
            return None
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
            self._waiting_total -= 1

    async def _serve_request(
        self, registration: _Registration, peer: PeerId, stream: INetStream, length: int | None
    ) -> bool:
        """Serve one request (`length`: its length prefix, when already read) holding a slot,
        or answer `busy`. True when the stream may carry another request."""
        limits = registration.limits
        try:
            registration.slots.acquire_nowait()
        except trio.WouldBlock:
            self._busy += 1
            with trio.move_on_after(limits.timeout):
                await self._answer(stream, ResponseStatus.ERROR, error_payload("busy: try again"))
                return False
            await reset_quietly(stream)
            return False
        try:
            with trio.move_on_after(limits.timeout):
                try:
                    status, payload = await self._handle(registration, peer, stream, length)
                except _STREAM_FAILURES as error:
                    logger.debug("%s request from %s cut off: %r", registration.name, peer, error)
                    await reset_quietly(stream)
                    return False
                return await self._answer(stream, status, payload)
            logger.info(
                "%s from %s took over %.1f s; stream reset",
                registration.name,
                peer,
                limits.timeout,
            )
            await reset_quietly(stream)
            return False
        finally:
            registration.slots.release()

    def _refuse(self, registration: _Registration, peer: PeerId, error: Exception) -> None:
        self._refused += 1
        self._penalize(peer, self._scoring.bad_request_penalty, f"{registration.name}: {error}")

    async def _handle(
        self, registration: _Registration, peer: PeerId, stream: INetStream, length: int | None
    ) -> tuple[ResponseStatus, bytes]:
        limits = registration.limits
        try:
            if length is None:
                length = await read_request_length(stream)
            request = await read_request_body(stream, length, limits.max_request_bytes)
        except FrameTooLarge as error:
            self._refuse(registration, peer, error)
            return ResponseStatus.ERROR, error_payload(f"request too large: {error}")
        except TruncatedFrame as error:
            self._refuse(registration, peer, error)
            return ResponseStatus.ERROR, error_payload(f"truncated request: {error}")
        try:
            response = await registration.handler(peer, request)
        except BadRequest as error:
            self._refuse(registration, peer, error)
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

    async def _answer(self, stream: INetStream, status: ResponseStatus, payload: bytes) -> bool:
        """Write an answer. The stream is closed after an error answer (a requester never
        reuses it either); True when it may carry another request."""
        try:
            await stream.write(encode_response(status, payload))
            if status is ResponseStatus.ERROR:
                await stream.close()
                return False
        except _STREAM_FAILURES as error:
            # The requester went away before the answer: nothing left to tell it.
            logger.debug("could not answer on %s: %r", stream.get_protocol(), error)
            await reset_quietly(stream)
            return False
        return True

    # -- requesting --------------------------------------------------------------------------

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
        try:
            with trio.fail_after(timeout):
                status, payload = await self._round_trip(peer_id, protocol, data, limit)
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
        if status is ResponseStatus.ERROR:
            raise RemoteError(peer_id, protocol, payload.decode(errors="replace"))
        return payload

    async def _round_trip(
        self, peer_id: PeerId, protocol: str, data: bytes, limit: int
    ) -> tuple[ResponseStatus, bytes]:
        kept = await self._take_idle(peer_id, protocol)
        if kept is not None:
            self._streams_reused += 1
            try:
                return await self._ask(peer_id, protocol, kept, data, limit)
            except _Unanswered:
                # Sending once more is safe: the peer cannot have handled this request.
                # `_ask` says `_Unanswered` only while the connection stands (so the peer did
                # not die or shut down, which ends streams cleanly too, possibly after
                # handling a request), and only when (a) writing the request failed: yamux
                # checks the stream before each chunk it sends, so the peer never had all of
                # the frame, and a handler only runs on a whole one; or (b) the peer closed
                # the stream (not reset it) before any byte of the answer: a server closes a
                # stream without answering only while it waits for the next request (it
                # idled out, or keeps too many waiting), before it read a byte of one; after
                # the first byte of a request every path ends in an answer or a reset. A
                # reset is never retried: it may come from a handler that acted and then ran
                # out of time.
                self._retried += 1
        stream = await self._open(peer_id, protocol)
        self._streams_opened += 1
        try:
            return await self._ask(peer_id, protocol, stream, data, limit)
        except _Unanswered as unanswered:
            raise unanswered.cause from None

    async def _ask(
        self, peer_id: PeerId, protocol: str, stream: INetStream, data: bytes, limit: int
    ) -> tuple[ResponseStatus, bytes]:
        """One exchange on `stream`. The stream is kept after a complete `OK` answer and reset
        after anything else, cancellation included."""
        reusable = False
        try:
            try:
                await stream.write(encode_request(data))
            except _STREAM_FAILURES as error:
                if _connection_open(stream):
                    raise _Unanswered(error) from None
                raise
            try:
                status, payload = await read_response(stream, limit)
            except StreamEnded as error:
                if _reset_by_peer(stream):
                    raise StreamReset("reset by the peer before any answer") from None
                if _closed_by_peer(stream) and _connection_open(stream):
                    raise _Unanswered(error) from None
                raise
            reusable = status is ResponseStatus.OK
            return status, payload
        finally:
            if reusable:
                await self._keep_idle(peer_id, protocol, stream)
            else:
                await reset_quietly(stream)

    async def _take_idle(self, peer_id: PeerId, protocol: str) -> INetStream | None:
        """The most recently used of our idle streams to the peer that still looks usable."""
        idle = self._pool.get((peer_id, protocol))
        now = trio.current_time()
        while idle:
            entry = idle.pop()
            fresh = now - entry.since < self._reuse.requester_idle_seconds
            if fresh and _looks_open(entry.stream):
                return entry.stream
            await reset_quietly(entry.stream)
        self._pool.pop((peer_id, protocol), None)
        return None

    async def _keep_idle(self, peer_id: PeerId, protocol: str, stream: INetStream) -> None:
        idle = self._pool.setdefault((peer_id, protocol), [])
        if len(idle) >= self._reuse.pooled_per_peer or self._is_banned(peer_id):
            await close_quietly(stream)
            return
        idle.append(_Idle(stream, trio.current_time()))

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
            streams_opened=self._streams_opened,
            streams_reused=self._streams_reused,
            retried=self._retried,
            pooled=sum(len(idle) for idle in self._pool.values()),
            idle_served=self._waiting_total,
            idle_timeouts=self._idle_timeouts,
            idle_over_limit=self._idle_over_limit,
        )
