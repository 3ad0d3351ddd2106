"""`--rpc-cors` (which web origins may call) and the Host check of a loopback server."""

from __future__ import annotations

import pytest

from node.rpc.origins import CorsError, CorsPolicy, loopback_host_allowed

DEFAULT = CorsPolicy.default()


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # not a browser: the CLI, curl, programs
        ("http://localhost", True),
        ("http://localhost:3000", True),
        ("https://localhost:8443", True),
        ("http://127.0.0.1:9944", True),
        ("https://127.0.0.1", True),
        ("HTTP://LOCALHOST:3000/", True),
        ("http://evil.example", False),
        ("http://localhost.evil.example", False),
        ("http://127.0.0.1.evil.example:80", False),
        ("http://evil.example:3000#localhost", False),
        ("null", False),
        ("file://", False),
        ("http://[::1]:3000", False),
        ("", False),
    ],
)
def test_default_allows_pages_of_this_machine_only(origin: str | None, allowed: bool) -> None:
    assert DEFAULT.allows(origin) is allowed


def test_all_and_lists() -> None:
    assert CorsPolicy.parse("all").allows("http://evil.example")
    assert CorsPolicy.parse(" All ").describe() == "all"
    listed = CorsPolicy.parse("https://app.example.com, http://localhost:*")
    assert listed.allows("https://app.example.com")
    assert listed.allows("https://APP.example.com/")
    assert not listed.allows("https://app.example.com:8443")
    assert not listed.allows("http://app.example.com")
    assert listed.allows("http://localhost:1234")
    assert not listed.allows("http://127.0.0.1:1234")
    assert CorsPolicy.parse("null").allows("null")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "no origin given: expected all, or a comma-separated list"),
        (" , ", "no origin given: expected all, or a comma-separated list"),
        (
            "localhost:3000",
            "'localhost:3000' is not an origin: expected all, or origins like "
            "http://localhost:* or https://app.example.com, separated by commas",
        ),
        (
            "https://app.example.com/path",
            "'https://app.example.com/path' is not an origin: expected all, or origins like "
            "http://localhost:* or https://app.example.com, separated by commas",
        ),
    ],
)
def test_values_that_name_no_origin_are_refused(value: str, message: str) -> None:
    with pytest.raises(CorsError) as caught:
        CorsPolicy.parse(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (None, True),
        ("localhost", True),
        ("localhost:9944", True),
        ("LOCALHOST:9944", True),
        ("127.0.0.1", True),
        ("127.0.0.1:1", True),
        ("[::1]", True),
        ("[::1]:9944", True),
        ("evil.example", False),
        ("evil.example:9944", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io:9944", False),
        ("127.0.0.2:9944", False),
        ("[::1].evil:1", False),
        ("127.0.0.1:", False),
        ("", False),
    ],
)
def test_host_names_this_machine(host: str | None, allowed: bool) -> None:
    assert loopback_host_allowed(host) is allowed
