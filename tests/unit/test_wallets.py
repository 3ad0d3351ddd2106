"""The `wallets` runtime module: committee selection and wallet registration."""

from __future__ import annotations

import pytest

from chain.blocks import Call
from chain.runtime import wallets
from chain.runtime.executive import Runtime, default_modules
from chain.runtime.nodes import NodeStatus
from chain.runtime.wallets import (
    CommitteeUnavailable,
    Wallets,
    confirmation_payload,
    encode_committee,
    encode_confirmations,
    select_committee,
)
from tests.factories import ALICE
from tests.unit.test_towers import NODE_KEYS, TowerChain, tower_spec
from wallet.keys import Keypair

(REGISTER,) = Wallets().calls()
GROUP = Keypair.from_seed(b"\x51" * 32).public
LOGIN = Keypair.from_seed(b"\x52" * 32).public


def wallet_chain() -> TowerChain:
    """Nodes 0, 1 and 2 active (towers of 2), node 3 standby (one proof is not enough)."""
    chain = TowerChain(tower_spec(active=3))
    chain.runtime = Runtime(
        chain.spec.runtime, chain.genesis_hash, modules=(*default_modules(), Wallets())
    )
    for i in range(4):
        chain.register(i)
    for i, proofs in enumerate((2, 2, 2, 1)):
        for _ in range(proofs):
            chain.prove(i)
    chain.skip_to_epoch_end()
    chain.execute([])
    assert [chain.status(i) for i in range(4)] == [NodeStatus.ACTIVE] * 3 + [NodeStatus.STANDBY]
    return chain


@pytest.fixture(scope="module")
def chain() -> TowerChain:
    return wallet_chain()


def members(*indices: int) -> list[bytes]:
    return sorted(NODE_KEYS[i].public for i in indices)


def registration(
    committee: list[bytes],
    signers: list[int],
    *,
    threshold: int = 2,
    group: bytes = GROUP,
    signed_login: bytes = LOGIN,
) -> Call:
    encoded = encode_committee(committee)
    payload = confirmation_payload(group, encoded, threshold, signed_login)
    confirmations = [(NODE_KEYS[i].public, NODE_KEYS[i].sign(payload)) for i in signers]
    return REGISTER.call(
        group_key=group,
        committee=encoded,
        threshold=threshold,
        login_key=LOGIN,
        confirmations=encode_confirmations(confirmations),
    )


def test_committee_is_the_highest_active_towers(chain: TowerChain) -> None:
    committee = select_committee(chain.state)
    assert committee == wallets.Committee(tuple(members(0, 1, 2)), 2)  # type: ignore[arg-type]
    two = select_committee(chain.state, size=2, threshold=2)
    assert list(two.members) == members(0, 1, 2)[:2]  # equal towers: the lowest ids
    with pytest.raises(CommitteeUnavailable) as info:
        select_committee(chain.state, size=4, threshold=3)
    assert str(info.value) == "a wallet committee needs 4 active nodes, 3 are active"
    with pytest.raises(ValueError) as bad:
        select_committee(chain.state, size=3, threshold=1)
    assert str(bad.value) == ("committee parameters must satisfy 2 <= t <= n <= 64, got t=1, n=3")


def test_register_with_threshold_confirmations() -> None:
    chain = wallet_chain()
    committee = members(0, 1, 2)
    execution = chain.send(ALICE, registration(committee, [0, 2]))
    record = wallets.get_wallet(chain.state, GROUP)
    assert record == wallets.WalletRecord(tuple(committee), 2, LOGIN, chain.number)  # type: ignore[arg-type]
    names = [(e.module, e.name) for e in execution.events]  # type: ignore[attr-defined]
    assert ("wallets", "WalletRegistered") in names
    assert chain.refuse(ALICE, registration(committee, [0, 1])) == (
        f"wallets.WalletExists: wallet 0x{GROUP.hex()} is registered"
    )


def test_register_refusals(chain: TowerChain) -> None:
    committee = members(0, 1, 2)
    stranger = Keypair.from_seed(b"\x77" * 32).public
    assert chain.refuse(ALICE, registration(committee, [0])) == (
        "wallets.NotEnoughConfirmations: 1 committee members confirmed, the threshold is 2"
    )
    assert chain.refuse(ALICE, registration(committee, [0, 1], threshold=4)) == (
        "wallets.BadCommittee: threshold 4 is not between 2 and the committee size 3"
    )
    assert chain.refuse(ALICE, registration(list(reversed(committee)), [0, 1])) == (
        "wallets.BadCommittee: committee: committee members must be distinct and in ascending order"
    )
    assert chain.refuse(ALICE, registration(sorted([*committee[:2], stranger]), [0, 1])) == (
        f"wallets.BadCommittee: member 0x{stranger.hex()} is not a registered node"
    )
    outsider = NODE_KEYS[3].public
    assert chain.refuse(ALICE, registration(committee, [0, 3])) == (
        f"wallets.BadConfirmation: node 0x{outsider.hex()} confirmed but is not a committee member"
    )
    assert chain.refuse(ALICE, registration(committee, [0, 0])) == (
        f"wallets.BadConfirmation: node 0x{NODE_KEYS[0].public.hex()} confirmed twice"
    )
    other_login = Keypair.from_seed(b"\x53" * 32).public
    assert chain.refuse(ALICE, registration(committee, [0, 1], signed_login=other_login)) == (
        f"wallets.BadConfirmation: the confirmation of node 0x{NODE_KEYS[0].public.hex()} is "
        "not its node key's signature of this wallet"
    )
    assert wallets.get_wallet(chain.state, GROUP) is None
