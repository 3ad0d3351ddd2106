"""What a node says when the engine it started exits: the line of dockerd's output that gives
the reason, even when routine notices were logged after it."""

from __future__ import annotations

from orchestrator.dockerd import why_it_exited

FATAL = "failed to start daemon: error initializing graphdriver: driver not supported"


def test_the_reason_is_the_last_line_that_is_not_a_routine_notice() -> None:
    tail = "\n".join(
        [
            'time="2026-12-04T13:21:54Z" level=info msg="Starting up"',
            FATAL,
            'time="2026-12-04T13:21:54Z" level=info msg="[core] Subchannel Connectivity change '
            'to TRANSIENT_FAILURE" module=grpc',
            'time="2026-12-04T13:21:54Z" level=warning msg="grpc: addrConn.createTransport"',
        ]
    )
    assert why_it_exited(tail) == FATAL


def test_an_error_logged_by_level_counts_and_otherwise_the_last_line_does() -> None:
    error = 'time="t" level=error msg="no such storage driver"'
    assert why_it_exited(f'{error}\ntime="t" level=info msg="done"') == error
    assert why_it_exited('time="t" level=info msg="a"\ntime="t" level=info msg="b"') == (
        'time="t" level=info msg="b"'
    )
    assert why_it_exited("") == "no output"
