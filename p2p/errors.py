"""The p2p layer's errors: configuration, node keys, gossip and request/response failures."""

from __future__ import annotations


class P2PError(Exception):
    """Base of every error the p2p layer raises on purpose."""


class InvalidConfig(P2PError):
    """A configuration value, name or multiaddr is malformed or out of range."""


class InvalidNodeKey(P2PError):
    """A node key (hex string or key file) cannot be used. Never carries key material."""


class InvalidPeerId(P2PError):
    """A string that is not a base58 peer id."""


class DuplicateRegistration(P2PError):
    """A topic was subscribed, or a protocol registered, twice."""


class NotRunning(P2PError):
    """The operation needs the running service (inside `P2PService.run`)."""


class ListenFailed(P2PError):
    """The host could not open its TCP listener."""


class DialFailed(P2PError):
    """An explicit `connect` to a multiaddr did not produce a connection."""


class MessageTooLarge(P2PError):
    """A gossip payload is over the size limit; send big payloads by request/response."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(
            f"gossip message of {size} bytes on topic {topic!r} exceeds the {limit}-byte limit; "
            "send large payloads over request/response"
        )
        self.topic = topic
        self.size = size
        self.limit = limit


class BadRequest(P2PError):
    """Raised by a request handler to refuse a request; the caller is told and penalized."""


class FrameError(P2PError):
    """A length-prefixed frame on a stream is malformed, too large or cut short."""


class FrameTooLarge(FrameError):
    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds the {limit}-byte limit")
        self.length = length
        self.limit = limit


class TruncatedFrame(FrameError):
    def __init__(self, expected: int, received: int) -> None:
        super().__init__(
            f"stream ended after {received} of {expected} bytes (peer closed mid-frame)"
        )
        self.expected = expected
        self.received = received


class StreamEnded(TruncatedFrame):
    """The stream ended cleanly where a frame should begin: between frames, not inside one."""

    def __init__(self, expected: int) -> None:
        FrameError.__init__(self, "stream ended before the next frame (peer closed it)")
        self.expected = expected
        self.received = 0


class MalformedFrame(FrameError):
    """The frame's header holds a value the protocol does not define."""


class RequestFailed(P2PError):
    """A request to a peer did not produce a response. Subclasses say why."""

    def __init__(self, peer_id: str, protocol: str, detail: str) -> None:
        super().__init__(f"request {protocol} to {peer_id}: {detail}")
        self.peer_id = peer_id
        self.protocol = protocol
        self.detail = detail


class RequestTooLarge(RequestFailed):
    """The request is over the protocol's request limit; nothing was sent."""


class RequestTimeout(RequestFailed):
    """No complete response within the timeout."""


class PeerUnreachable(RequestFailed):
    """No connection to the peer could be used (dial failed, banned, or connection lost)."""


class ProtocolUnsupported(RequestFailed):
    """The peer does not speak this protocol (or is on another network id)."""


class ResponseTooLarge(RequestFailed):
    """The response header announced more bytes than the protocol allows."""


class TruncatedResponse(RequestFailed):
    """The stream ended before the announced response length arrived."""


class MalformedResponse(RequestFailed):
    """The response frame is not one the protocol defines."""


class StreamAborted(RequestFailed):
    """The peer reset the stream before answering (it may have timed out or refused)."""


class RemoteError(RequestFailed):
    """The peer answered with an error message instead of a response."""

    def __init__(self, peer_id: str, protocol: str, message: str) -> None:
        super().__init__(peer_id, protocol, f"peer answered with an error: {message}")
        self.remote_message = message
