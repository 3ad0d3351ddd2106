"""Errors the CLI reports to its user as one line on stderr, with an exit code."""

from __future__ import annotations


class CliError(Exception):
    exit_code = 1


class UsageError(CliError):
    """The command line asks for something impossible (exit 2, like argparse)."""

    exit_code = 2
