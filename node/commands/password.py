"""How a command obtains a key password: `--password-file`, then `$STATEMESH_PASSWORD`,
then an interactive prompt. There is deliberately no `--password` flag: a literal password
would leak into shell history and the process list."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from node.errors import CliError

PASSWORD_ENV = "STATEMESH_PASSWORD"
MIN_PASSWORD_LENGTH = 8


class PasswordError(CliError):
    """No password could be obtained, or the one given is not acceptable."""


def add_password_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help=f"read the key password from the first line of FILE "
        f"(otherwise ${PASSWORD_ENV}, otherwise a prompt)",
    )


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):  # a closed or replaced stdin
        return False


@dataclass(frozen=True, slots=True)
class PasswordReader:
    """Reads passwords from the sources of one command line, in order of precedence."""

    password_file: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)
    """Holds `STATEMESH_PASSWORD`, so it is kept out of `repr`."""
    prompt: Callable[[str], str] = field(default=getpass.getpass, repr=False)
    """Asks without echo; `getpass.getpass` outside tests."""
    interactive: Callable[[], bool] = field(default=_stdin_is_tty, repr=False)
    """Whether a person can answer `prompt`."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PasswordReader:
        return cls(password_file=getattr(args, "password_file", None))

    def existing(self, key_name: str) -> str:
        """The password of an existing key (a `wallet.keystore.PasswordSource`)."""
        given = self._given()
        if given is not None:
            return given
        return self._ask(f"Password for key '{key_name}': ")

    def new(self, key_name: str) -> str:
        """A password for a new key: typed twice when prompted, and long enough."""
        password = self._given()
        if password is None:
            password = self._ask(f"Password for new key '{key_name}': ")
            if self._ask("Repeat the password: ") != password:
                raise PasswordError("the two passwords differ; nothing was written")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise PasswordError(
                f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters"
            )
        return password

    def _given(self) -> str | None:
        if self.password_file is not None:
            return _first_line(self.password_file)
        # An empty variable counts as unset, as with most tools' environment settings.
        return self.environ.get(PASSWORD_ENV) or None

    def _ask(self, question: str) -> str:
        if not self.interactive():
            raise PasswordError(
                f"a password is needed but there is no terminal to ask for it: "
                f"pass --password-file FILE or set {PASSWORD_ENV}"
            )
        try:
            return self.prompt(question)
        except EOFError:
            raise PasswordError("no password was entered") from None


def _first_line(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PasswordError(f"cannot read password file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PasswordError(f"password file {path} is not UTF-8 text") from None
    # Only the line ending is removed: spaces may be part of the password.
    line = text.split("\n", 1)[0].removesuffix("\r")
    if not line:
        raise PasswordError(f"password file {path} has an empty first line")
    return line
