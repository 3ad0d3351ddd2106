"""`configs_list`, `configs_get` and `secrets_list` on a real chain database, and what the
`config` and `secret` commands read from their arguments: never a secret's value shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.address import encode_address
from chain.runtime.configs import Configs, encode_data
from chain.runtime.secrets import SecretRecord
from chain.state import TrieState
from chain.trie import BLANK_ROOT
from node.commands.config import read_data
from node.errors import UsageError
from node.rpc.errors import RpcError
from node.rpc.secret_methods import secret_json
from tests.factories import ALICE, BOB
from tests.unit.test_apps_rpc import Chain
from tests.unit.test_wallet_rpc import call

CONFIG_CREATE, CONFIG_UPDATE, _ = Configs().calls()


def test_configs_are_listed_and_read_by_owner(tmp_path: Path) -> None:
    chain = Chain(tmp_path / "db")
    registry = chain.registry
    alice = encode_address(ALICE.public)
    chain.send(ALICE, CONFIG_CREATE.call(name=b"site", data=encode_data({"A": b"1"})))
    chain.send(
        ALICE, CONFIG_UPDATE.call(name=b"site", data=encode_data({"A": b"hi", "B": b"\xff"}))
    )
    listed = call(registry, "configs_list", alice)
    assert listed == [
        {
            "owner": alice,
            "name": "site",
            "version": 2,
            "updatedAt": chain.slot,
            "keys": [{"key": "A", "size": 2}, {"key": "B", "size": 1}],
            "usedBy": [],
        }
    ]
    got = call(registry, "configs_get", alice, "site")
    assert got["data"] == {"A": "hi", "B": "0xff"}
    assert call(registry, "configs_get", encode_address(BOB.public), "site") is None
    assert call(registry, "configs_list", encode_address(BOB.public)) == []
    assert call(registry, "secrets_list", alice) == []
    with pytest.raises(RpcError) as info:
        call(registry, "configs_get", alice, "x" * 64)
    assert info.value.message == (
        "invalid param 'name': expected a config or secret name (a DNS label)"
    )


def test_a_secret_is_shown_without_values_or_envelope() -> None:
    envelope = b"\x01" * 120
    record = SecretRecord(3, 9, (("password", 12),), envelope)
    shown = secret_json(TrieState({}, BLANK_ROOT), ALICE.public, "db", record)
    assert shown == {
        "owner": encode_address(ALICE.public),
        "name": "db",
        "version": 3,
        "updatedAt": 9,
        "keys": [{"key": "password", "size": 12}],
        "usedBy": [],
    }


def test_data_from_literals_and_files(tmp_path: Path) -> None:
    (tmp_path / "site.conf").write_bytes(b"listen 80\n")
    (tmp_path / "id").write_bytes(b"\x00key")
    assert read_data(
        ["GREETING=hello=world"], [str(tmp_path / "site.conf"), f"ssh_key={tmp_path / 'id'}"]
    ) == {"GREETING": b"hello=world", "site.conf": b"listen 80\n", "ssh_key": b"\x00key"}
    for literals, files, message in (
        ([], [], "give at least one --from-literal or --from-file"),
        (["A"], [], "--from-literal takes KEY=VALUE, got 'A'"),
        (["A=1", "A=2"], [], "key 'A' is given twice"),
        (["a b=1"], [], "key 'a b' is not 1 to 253 letters, digits, '-', '_' and '.'"),
        (
            [],
            [str(tmp_path / "none")],
            f"cannot read {tmp_path / 'none'}: No such file or directory",
        ),
    ):
        with pytest.raises(UsageError) as caught:
            read_data(literals, files)
        assert str(caught.value) == message
