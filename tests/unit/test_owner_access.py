"""The CLI's signed request for an application's logs: signed by the key that owns the
application, found by its address among the development accounts and in the keystore (whose
password is asked then), or by --from; and a clear error when no key at hand owns it."""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chain.address import decode_address, encode_address
from node.commands.owner_access import NoOwnerKey, owner_auth
from node.workload_access import LIFETIME_SECONDS, AccessGrant, check_access
from tests.factories import ALICE, BOB
from wallet.keys import Keypair
from wallet.keystore import Keystore, ScryptParams

PASSWORD = "correct horse battery"
GENESIS = b"\x05" * 32
NODE = BOB.public


class FakeNode:
    """Answers the calls `owner_auth` makes, for one application and its owner."""

    def __init__(self, owner: bytes | None) -> None:
        self.owner = owner
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def call(self, method: str, *params: Any) -> Any:
        self.calls.append((method, params))
        if method == "apps_get":
            return None if self.owner is None else {"owner": encode_address(self.owner)}
        if method == "node_identity":
            return {"node": encode_address(NODE)}
        if method == "chain_getBlockHash":
            return "0x" + GENESIS.hex()
        raise AssertionError(f"unexpected call {method}")


@pytest.fixture
def keystore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Keystore:
    """A keystore whose password comes from the environment; no terminal."""
    monkeypatch.setenv("STATEMESH_PASSWORD", PASSWORD)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return Keystore(tmp_path / "keystore", scrypt_params=ScryptParams(n=2))


def args(keystore: Keystore, owner_key: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(owner_key=owner_key, keystore=keystore.path, password_file=None)


def accepted(auth: dict[str, Any] | None, owner: Keypair, app: str = "web") -> None:
    """`auth` is a request the node accepts for `app`, owned by `owner`."""
    grant = AccessGrant.from_json(auth)
    now = time.time()
    assert now + LIFETIME_SECONDS - 5 <= grant.expires <= now + LIFETIME_SECONDS
    check_access(grant, genesis=GENESIS, app=app, node=NODE, owner=owner.public, now=now)


def test_the_development_account_that_owns_the_app_signs(keystore: Keystore) -> None:
    accepted(owner_auth(args(keystore), FakeNode(ALICE.public), "web", required=True), ALICE)  # type: ignore[arg-type]


def test_the_keystore_key_that_owns_the_app_signs(keystore: Keystore) -> None:
    keystore.create("other", PASSWORD)
    info = keystore.create("ops", PASSWORD)
    owner = keystore.unlock("ops", PASSWORD)
    auth = owner_auth(args(keystore), FakeNode(info.public), "web", required=True)  # type: ignore[arg-type]
    accepted(auth, owner)
    assert auth is not None
    assert PASSWORD not in str(auth)
    assert owner.seed.hex() not in str(auth)


def test_from_names_the_key_to_sign_with(keystore: Keystore) -> None:
    node = FakeNode(ALICE.public)
    auth = owner_auth(args(keystore, "dev-bob"), node, "web", required=True)  # type: ignore[arg-type]
    assert auth is not None
    assert decode_address(auth["owner"]) == BOB.public  # the node will say BOB is not the owner
    assert "apps_get" not in [m for m, _ in node.calls]


def test_an_app_no_key_at_hand_owns_is_refused_before_asking_the_node(
    keystore: Keystore,
) -> None:
    stranger = Keypair.from_seed(b"\x09" * 32)
    node = FakeNode(stranger.public)
    with pytest.raises(NoOwnerKey) as raised:
        owner_auth(args(keystore), node, "web", required=True)  # type: ignore[arg-type]
    assert str(raised.value) == (
        f"'web' is owned by {stranger.address}, whose key is neither in keystore "
        f"{keystore.path} nor a development account: its logs are served to its owner only "
        "(pass --from KEY)"
    )
    # For the events, the node then serves the chain's alone.
    assert owner_auth(args(keystore), node, "web", required=False) is None  # type: ignore[arg-type]


def test_a_missing_app_is_left_to_the_node(keystore: Keystore) -> None:
    assert owner_auth(args(keystore), FakeNode(None), "web", required=True) is None  # type: ignore[arg-type]
