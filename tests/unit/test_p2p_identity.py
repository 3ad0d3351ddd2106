"""Node keys: `--node-key`, key files created 0600 and reused, peer ids and multiaddrs."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from p2p.addresses import node_multiaddr, parse_bootnode
from p2p.errors import InvalidConfig, InvalidNodeKey
from p2p.identity import (
    NODE_KEY_FILE,
    NodeKey,
    PeerId,
    load_or_create_node_key,
    read_node_key_file,
    resolve_node_key,
)

SEED = bytes(range(32))


def test_the_key_file_is_created_private_on_first_start_and_reused_after(tmp_path: Path) -> None:
    first = load_or_create_node_key(tmp_path)
    path = tmp_path / NODE_KEY_FILE
    assert path == tmp_path / "network" / "secret_ed25519"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == first.seed
    assert [p.name for p in path.parent.iterdir()] == ["secret_ed25519"]  # no temporary left

    second = load_or_create_node_key(tmp_path)
    assert second == first
    assert second.peer_id == first.peer_id


def test_the_peer_id_derives_from_the_seed_alone() -> None:
    key = NodeKey(SEED)
    assert key.peer_id == NodeKey(SEED).peer_id
    assert key.peer_id.startswith("12D3KooW")  # Ed25519, identity multihash
    assert key.peer_id != NodeKey(bytes(32)).peer_id


def test_node_key_hex_wins_over_the_key_file(tmp_path: Path) -> None:
    load_or_create_node_key(tmp_path)
    key = resolve_node_key(tmp_path, node_key_hex=SEED.hex())
    assert key == NodeKey(SEED)
    assert resolve_node_key(tmp_path, node_key_hex="0x" + SEED.hex()) == key


def test_a_node_key_file_may_hold_raw_or_hex_seed(tmp_path: Path) -> None:
    raw, text = tmp_path / "raw", tmp_path / "hex"
    raw.write_bytes(SEED)
    text.write_text(SEED.hex() + "\n")
    assert read_node_key_file(raw) == read_node_key_file(text) == NodeKey(SEED)
    assert resolve_node_key(tmp_path / "unused", node_key_file=text) == NodeKey(SEED)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abcd", "--node-key must be 64 hex characters (a 32-byte seed), got 4 characters"),
        ("zz" * 32, "--node-key must be hexadecimal"),
    ],
)
def test_a_bad_node_key_is_refused_with_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(InvalidNodeKey) as caught:
        NodeKey.from_hex(text)
    assert str(caught.value) == message


def test_a_damaged_key_file_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "network" / "secret_ed25519"
    path.parent.mkdir()
    path.write_bytes(b"\x01" * 5)
    with pytest.raises(InvalidNodeKey) as caught:
        load_or_create_node_key(tmp_path)
    assert str(caught.value) == (
        f"node key file {path} holds 5 bytes; expected 32 raw bytes or 64 hex characters"
    )


def test_the_seed_never_shows_in_repr_or_str() -> None:
    key = NodeKey(SEED)
    for shown in (repr(key), str(key)):
        assert SEED.hex() not in shown
        assert repr(SEED) not in shown
    assert str(key) == f"NodeKey({key.peer_id})"


def test_a_seed_must_be_32_bytes() -> None:
    with pytest.raises(InvalidNodeKey) as caught:
        NodeKey(b"short")
    assert str(caught.value) == "an Ed25519 node key seed is 32 bytes"


def test_node_multiaddr_and_bootnode_parsing_round_trip() -> None:
    peer = NodeKey(SEED).peer_id
    text = node_multiaddr("127.0.0.1", 30333, peer)
    assert text == f"/ip4/127.0.0.1/tcp/30333/p2p/{peer}"
    bootnode = parse_bootnode(text)
    assert (bootnode.peer_id, bootnode.transport) == (peer, "/ip4/127.0.0.1/tcp/30333")
    assert str(bootnode) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "/ip4/127.0.0.1/tcp/30333",
            "bootnode '/ip4/127.0.0.1/tcp/30333' must end in /p2p/<peer id>",
        ),
        (
            f"/ip4/127.0.0.1/udp/1/p2p/{NodeKey(SEED).peer_id}",
            f"bootnode '/ip4/127.0.0.1/udp/1/p2p/{NodeKey(SEED).peer_id}' must name a TCP port",
        ),
    ],
)
def test_bad_bootnodes_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidConfig) as caught:
        parse_bootnode(text)
    assert str(caught.value) == message


def test_a_bootnode_that_is_not_a_multiaddr_names_itself() -> None:
    with pytest.raises(InvalidConfig) as caught:
        parse_bootnode("localhost:30333")
    assert str(caught.value).startswith("bootnode 'localhost:30333' is not a multiaddr: ")


def test_peer_id_is_plain_text() -> None:
    assert PeerId("12D3KooWabc") == "12D3KooWabc"
