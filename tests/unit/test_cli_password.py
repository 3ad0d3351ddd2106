"""Where a command's password comes from: file, then environment, then a prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.commands.password import PasswordError, PasswordReader

NO_TERMINAL = (
    "a password is needed but there is no terminal to ask for it: "
    "pass --password-file FILE or set STATEMESH_PASSWORD"
)


class FakeTerminal:
    """Answers prompts from a script and records the questions."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.questions: list[str] = []

    def __call__(self, question: str) -> str:
        self.questions.append(question)
        answer = self.answers.pop(0)
        if answer is None:
            raise EOFError
        return answer


def _reader(
    *,
    file: Path | None = None,
    env: dict[str, str] | None = None,
    terminal: FakeTerminal | None = None,
) -> PasswordReader:
    return PasswordReader(
        password_file=file,
        environ=env or {},
        prompt=terminal or FakeTerminal(),
        interactive=lambda: terminal is not None,
    )


def test_file_comes_first_and_only_its_first_line_counts(tmp_path: Path) -> None:
    file = tmp_path / "password"
    file.write_text("  spaced secret \r\nsecond line\n")
    terminal = FakeTerminal()
    reader = _reader(file=file, env={"STATEMESH_PASSWORD": "from the env"}, terminal=terminal)
    assert reader.existing("alice") == "  spaced secret "
    assert reader.new("alice") == "  spaced secret "
    assert terminal.questions == []


@pytest.mark.parametrize("content", ["", "\n", "\nsecret\n"])
def test_empty_first_line_is_refused(tmp_path: Path, content: str) -> None:
    file = tmp_path / "password"
    file.write_text(content)
    with pytest.raises(PasswordError) as caught:
        _reader(file=file).existing("alice")
    assert str(caught.value) == f"password file {file} has an empty first line"


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(PasswordError) as caught:
        _reader(file=missing).existing("alice")
    assert str(caught.value) == f"cannot read password file {missing}: No such file or directory"
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(PasswordError) as caught:
        _reader(file=binary).existing("alice")
    assert str(caught.value) == f"password file {binary} is not UTF-8 text"


def test_environment_comes_next() -> None:
    terminal = FakeTerminal()
    reader = _reader(env={"STATEMESH_PASSWORD": "from the env"}, terminal=terminal)
    assert reader.existing("alice") == "from the env"
    assert reader.new("alice") == "from the env"
    assert terminal.questions == []


def test_prompt_for_an_existing_key_asks_once() -> None:
    terminal = FakeTerminal("typed secret")
    assert _reader(terminal=terminal).existing("alice") == "typed secret"
    assert terminal.questions == ["Password for key 'alice': "]


def test_an_empty_environment_variable_falls_through_to_the_prompt() -> None:
    reader = _reader(env={"STATEMESH_PASSWORD": ""}, terminal=FakeTerminal("typed secret"))
    assert reader.existing("alice") == "typed secret"


def test_prompt_for_a_new_key_asks_twice() -> None:
    terminal = FakeTerminal("typed secret", "typed secret")
    assert _reader(terminal=terminal).new("alice") == "typed secret"
    assert terminal.questions == ["Password for new key 'alice': ", "Repeat the password: "]


def test_prompted_passwords_that_differ() -> None:
    with pytest.raises(PasswordError) as caught:
        _reader(terminal=FakeTerminal("typed secret", "typed secreT")).new("alice")
    assert str(caught.value) == "the two passwords differ; nothing was written"


@pytest.mark.parametrize(
    "reader",
    [
        _reader(terminal=FakeTerminal("short", "short")),
        _reader(env={"STATEMESH_PASSWORD": "1234567"}),
    ],
    ids=["prompt", "env"],
)
def test_new_password_too_short(reader: PasswordReader) -> None:
    with pytest.raises(PasswordError) as caught:
        reader.new("alice")
    assert str(caught.value) == "the password is too short: use at least 8 characters"


def test_short_password_still_opens_an_existing_key() -> None:
    # The length rule is for new keys; an existing key's password is whatever it was.
    assert _reader(env={"STATEMESH_PASSWORD": "short"}).existing("alice") == "short"


def test_no_terminal_and_no_other_source() -> None:
    for ask in (_reader().existing, _reader().new):
        with pytest.raises(PasswordError) as caught:
            ask("alice")
        assert str(caught.value) == NO_TERMINAL


def test_end_of_input_at_the_prompt() -> None:
    with pytest.raises(PasswordError) as caught:
        _reader(terminal=FakeTerminal(None)).existing("alice")
    assert str(caught.value) == "no password was entered"


def test_repr_shows_no_password() -> None:
    reader = _reader(env={"STATEMESH_PASSWORD": "from the env"})
    assert "from the env" not in repr(reader)
