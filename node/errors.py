"""The node's error root, and the errors the CLI reports to its user as one line on stderr, with
an exit code."""

from __future__ import annotations


class NodeError(Exception):
    """Base of every error the node's own code raises: its services, the RPC server and client,
    the CLI. (Errors of the layers below keep their own roots: `chain.errors.ChainError`, ...)"""


class CliError(NodeError):
    """An error the CLI reports to its user as one line on stderr, exiting with `exit_code`."""

    exit_code = 1


class UsageError(CliError):
    """The command line asks for something impossible (exit 2, like argparse)."""

    exit_code = 2


def sole_cause(exc: BaseException) -> BaseException:
    """The exception inside (nested) groups of one exception each, as trio's nurseries wrap
    what a service raised while starting; else `exc` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
