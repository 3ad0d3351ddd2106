"""The CLI's signed request for an application's logs: signed by the key that owns the
application, found by its address among the development accounts and in the keystore (whose
password is asked then), or by --from; and a clear error when no key at hand owns it."""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chain.address import decode_address, encode_address
from chain.keys import Keypair, dev_keypair
from node.commands.owner_access import NodeIdentityUnproven, NoOwnerKey, owner_auth
from node.workload_access import (
    LIFETIME_SECONDS,
    AccessGrant,
    check_access,
    identity_message,
    prove_identity,
)
from tests.factories import ALICE, BOB
from wallet.keystore import Keystore, ScryptParams

PASSWORD = "correct horse battery"
GENESIS = b"\x05" * 32
NODE = BOB.public
CHARLIE = dev_keypair("charlie")
"""Another node's key."""


class FakeNode:
    """Answers the calls `owner_auth` makes, for one application and its owner, as the node
    whose node key is `BOB`; `identity` replaces its answer to `node_identity`."""

    url = "http://127.0.0.1:9944"

    def __init__(self, owner: bytes | None, identity: Callable[[bytes], Any] | None = None) -> None:
        self.owner = owner
        self.identity = identity or proof_by(BOB)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def call(self, method: str, *params: Any) -> Any:
        self.calls.append((method, params))
        if method == "apps_get":
            return None if self.owner is None else {"owner": encode_address(self.owner)}
        if method == "node_identity":
            (challenge,) = params
            return self.identity(bytes.fromhex(challenge.removeprefix("0x")))
        raise AssertionError(f"unexpected call {method}")


def proof_by(node_key: Keypair) -> Callable[[bytes], Any]:
    """The answer of the node whose key is `node_key`, on the test chain."""
    return lambda challenge: prove_identity(
        node_key, genesis=GENESIS, challenge=challenge
    ).to_json()


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


def test_each_request_asks_the_node_to_prove_its_id_anew(keystore: Keystore) -> None:
    node = FakeNode(ALICE.public)
    for _ in range(2):
        accepted(owner_auth(args(keystore), node, "web", required=True), ALICE)  # type: ignore[arg-type]
    challenges = [params[0] for method, params in node.calls if method == "node_identity"]
    assert len(challenges) == 2
    assert len(set(challenges)) == 2
    assert all(len(bytes.fromhex(c.removeprefix("0x"))) == 32 for c in challenges)


def another_nodes_id(challenge: bytes) -> Any:
    """A node (key CHARLIE) that names BOB's id, to obtain a request it could use on BOB."""
    return {**proof_by(CHARLIE)(challenge), "node": encode_address(BOB.public)}


def bobs_earlier_answer(challenge: bytes) -> Any:
    """BOB's genuine answer, to another challenge than this request's."""
    return proof_by(BOB)(b"\x07" * 32)


def bobs_message_signed_by_another(challenge: bytes) -> Any:
    """BOB's id, with another key's signature of the message BOB's would sign."""
    signature = CHARLIE.sign(identity_message(GENESIS, challenge, BOB.public))
    return {**proof_by(BOB)(challenge), "signature": "0x" + signature.hex()}


UNPROVEN = (
    "the node at http://127.0.0.1:9944 did not prove its node id: its answer is not signed by "
    f"the key of the node id it claims ({BOB.address}) for this request's challenge; not "
    "signing a request for it"
)


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        (another_nodes_id, UNPROVEN),
        (bobs_earlier_answer, UNPROVEN),
        (bobs_message_signed_by_another, UNPROVEN),
        (
            lambda challenge: {"node": encode_address(BOB.public)},
            "the node at http://127.0.0.1:9944 did not prove its node id: expected an object "
            "{node, genesis, signature}; not signing a request for it",
        ),
    ],
)
def test_a_node_that_does_not_prove_the_id_it_names_gets_nothing_signed(
    keystore: Keystore, identity: Callable[[bytes], Any], message: str
) -> None:
    node = FakeNode(ALICE.public, identity)
    with pytest.raises(NodeIdentityUnproven) as raised:
        owner_auth(args(keystore), node, "web", required=True)  # type: ignore[arg-type]
    assert str(raised.value) == message
    assert [method for method, _ in node.calls] == ["apps_get", "node_identity"]
