"""The client commands start without the node's networking: `statemesh query …`, `tx …`,
`app …` and `wallet …` parse their arguments in the same program as `statemesh node`, and
importing libp2p alone took most of a second of every command's start."""

from __future__ import annotations

import subprocess
import sys

import pytest

NOT_FOR_CLIENTS = ("libp2p", "consensus.network_service", "node.runner")


def test_the_command_line_imports_no_networking_until_a_node_runs() -> None:
    probe = (
        "import sys\n"
        "import node.cli\n"
        f"print(','.join(m for m in {NOT_FOR_CLIENTS!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "", f"imported at start: {done.stdout.strip()}"


@pytest.mark.parametrize("command", [["node", "--help"], ["wallet", "--help"], ["app", "--help"]])
def test_the_commands_still_parse_their_arguments(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "node.cli", *command], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage: statemesh" in done.stdout
