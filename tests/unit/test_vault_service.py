"""Vault keys end to end in one process (the wallet services of test_wallet_service over one
in-memory chain): the committee's DKG registers the owner's vault with verifying shares that
match the members' shares, and a vault key never signs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from chain.address import encode_address
from chain.runtime import wallets
from chain.state import Overlay
from node.rpc.registry import Registry
from node.rpc.wallet_methods import register
from tests.unit.test_secret_delivery import DATA, place_web, put_secret
from tests.unit.test_towers import NODE_KEYS
from tests.unit.test_wallet_rpc import call
from tests.unit.test_wallet_service import LOGIN, STRANGER, Network, run
from wallet.committee import REQUEST_VAULT, TooFewMembersAnswered
from wallet.frost.identifier import as_identifier
from wallet.secret_delivery import SecretDelivery, SecretUnavailable
from wallet.secret_partials import SecretQuery
from wallet.shares import ShareStore


@pytest.fixture
def net(tmp_path: Path) -> Network:
    return Network(tmp_path)


def create_vault(net: Network) -> wallets.VaultRecord:
    request_id = wallets.next_request_id(net.chain.state)
    net.ledger.submit_signed(LOGIN, REQUEST_VAULT.call())
    run(lambda: net.service(net.coordinator(request_id)).create(request_id))
    vault = wallets.vault_of(net.chain.state, LOGIN.public)
    assert vault is not None
    return vault


def test_the_dkg_registers_the_vault_with_the_members_verifying_shares(net: Network) -> None:
    vault = create_vault(net)
    assert vault.committee == tuple(net.committee)
    assert vault.threshold == 2
    for position, member in enumerate(vault.committee):
        i = next(n for n, key in enumerate(NODE_KEYS) if key.public == member)
        stored = ShareStore(net.paths[i], NODE_KEYS[i].seed).load(vault.group_key)
        assert stored is not None
        assert stored.key_package.identifier == as_identifier(position + 1)
        assert vault.verifying_shares[position] == stored.key_package.verifying_share.encoding
        assert stored.public_package.group_public_key.encoding == vault.group_key
    record = wallets.get_wallet(net.chain.state, vault.group_key)
    assert record is not None
    assert record.purpose is wallets.Purpose.ENCRYPTION


def test_a_vault_key_never_signs(net: Network) -> None:
    vault = create_vault(net)
    net.fund(vault.group_key)
    signature = net.login_signature(vault.group_key, 1000)
    member = net.node(vault.committee[0])
    with pytest.raises(TooFewMembersAnswered) as caught:
        run(
            lambda: net.service(member).transfer(
                vault.group_key, NODE_KEYS[3].public, 1000, signature
            )
        )
    assert "a vault key never signs" in str(caught.value)


def test_the_vault_over_rpc_shows_its_key_and_verifying_shares(net: Network) -> None:
    registry = Registry()
    register(registry, net.service(0), net.ledger)
    assert call(registry, "wallet_vault", LOGIN.address) is None
    vault = create_vault(net)
    shown = call(registry, "wallet_vault", LOGIN.address)
    assert shown == {
        "owner": LOGIN.address,
        "vaultKey": "0x" + vault.group_key.hex(),
        "committee": [encode_address(m) for m in vault.committee],
        "threshold": 2,
        "verifyingShares": ["0x" + s.hex() for s in vault.verifying_shares],
        "registeredAt": vault.registered_at,
    }
    wallet = call(registry, "wallet_show", encode_address(vault.group_key))
    assert wallet["purpose"] == "encryption"


def test_a_secret_reaches_the_node_that_runs_its_replica_over_the_wallet_protocol(
    net: Network,
) -> None:
    """The vault made by the DKG, the members' real `serve` over the in-memory network: node 3
    (no member) runs the replica and opens the secret; a member that does not run it gets
    nothing from the others and loses score with them."""
    vault = create_vault(net)
    state = Overlay(net.chain.state)
    runner = NODE_KEYS[STRANGER]
    put_secret(state.put, LOGIN.public, "db", 2, vault.group_key, random.Random(3).randbytes)
    place_web(state.put, LOGIN.public, runner.public)
    net.ledger.finalized_state = lambda: state  # type: ignore[method-assign]
    query = SecretQuery(LOGIN.public, "db", 2, "web", 0)

    def delivery(i: int) -> SecretDelivery:
        key = NODE_KEYS[i]
        return SecretDelivery(
            identity=key,
            ledger=net.ledger,
            link=net.router.transport(key.public),
            local=net.service(i).member.handle,
            timeout=5.0,
        )

    penalties: list[tuple[int, str]] = []
    for i in range(4):
        net.service(i)._penalize = lambda peer, amount, why, i=i: penalties.append((i, why))  # type: ignore[misc]
    delivered = run(lambda: delivery(STRANGER).fetch(query))
    assert delivered.values == DATA
    assert len(delivered.members) == 2
    member = net.node(vault.committee[0])
    with pytest.raises(SecretUnavailable) as caught:
        run(lambda: delivery(member).fetch(query))
    assert caught.value.reason.count("NotAssigned: replica 0 of 'web'") == 3
    # Its own member answered in process; the two others refused and penalized its node.
    assert sorted(penalties) == [
        (i, "wallet: replica 0 of 'web' is not assigned to the requesting node")
        for i in sorted({0, 1, 2} - {member})
    ]
