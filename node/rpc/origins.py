"""Which web pages may talk to the server (`--rpc-cors`, Substrate's default: pages served from
localhost and 127.0.0.1 only) and which Host names it answers while it listens on loopback
(so a DNS name rebound to 127.0.0.1 cannot reach it from a browser)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from node.errors import NodeError

ANY_PORT = ":*"

DEFAULT_ORIGINS = (
    "http://localhost:*",
    "http://127.0.0.1:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
)
"""Substrate's default `--rpc-cors` (without its polkadot.js.org entry): `:*` is any port or
none."""

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


class CorsError(NodeError, ValueError):
    """A `--rpc-cors` value that names no usable origin."""


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """Origins allowed to call; requests without an Origin header (curl, the CLI, other
    programs) are never a browser's and are always allowed."""

    origins: frozenset[str] | None
    """Allowed origins (lower case, `:*` for any port); None allows every origin."""

    @classmethod
    def default(cls) -> CorsPolicy:
        return cls(frozenset(DEFAULT_ORIGINS))

    @classmethod
    def parse(cls, value: str) -> CorsPolicy:
        """`all`, or a comma-separated list of origins such as `http://localhost:*` or
        `https://app.example.com`."""
        text = value.strip()
        if text.lower() == "all":
            return cls(None)
        origins = set()
        for entry in text.split(","):
            origin = entry.strip().lower().rstrip("/")
            if not origin:
                continue
            if origin != "null":
                parts = urlsplit(origin.removesuffix(ANY_PORT))
                if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
                    raise CorsError(
                        f"{entry.strip()!r} is not an origin: expected all, or origins like "
                        "http://localhost:* or https://app.example.com, separated by commas"
                    )
            origins.add(origin)
        if not origins:
            raise CorsError("no origin given: expected all, or a comma-separated list")
        return cls(frozenset(origins))

    def allows(self, origin: str | None) -> bool:
        if origin is None or self.origins is None:
            return True
        wanted = origin.strip().lower().rstrip("/")
        if wanted in self.origins:
            return True
        # `scheme://host:*` matches the origin with or without a port.
        scheme, _, rest = wanted.partition("://")
        host = _without_port(rest)
        return f"{scheme}://{host}{ANY_PORT}" in self.origins

    def describe(self) -> str:
        return "all" if self.origins is None else ",".join(sorted(self.origins))


def loopback_host_allowed(host: str | None) -> bool:
    """Whether a request's Host header names this machine: localhost, 127.0.0.1 or [::1], any
    port. A request without one (HTTP/1.0) did not come from a browser."""
    if host is None:
        return True
    return _without_port(host.strip().lower()) in LOOPBACK_HOSTS


def _without_port(netloc: str) -> str:
    if netloc.startswith("["):
        host, bracket, rest = netloc.partition("]")
        if bracket and (not rest or (rest[:1] == ":" and rest[1:].isdigit())):
            return host + bracket
        return netloc
    host, sep, port = netloc.rpartition(":")
    return host if sep and port.isdigit() else netloc
