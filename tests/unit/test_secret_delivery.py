"""Secret delivery between vault members and the node that runs a replica: each member checks
the request on its own finalized state (assigned, same owner, the manifest reads the secret,
the current version, the owner's vault) and answers with a partial decryption sealed to the
requester; the requester checks every proof, opens the secret with the first t valid ones,
names a member whose proof fails, and reports clearly when fewer than t answer."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from chain.keys import Keypair
from chain.primitives import AccountId
from chain.runtime import apps, secrets, wallets
from chain.runtime.manifest import validate_manifest
from chain.runtime.scheduler import Resources
from chain.state import StateReader, storage_key
from tests.unit.test_manifest_references import document
from wallet.committee import WalletService, peer_id_of
from wallet.errors import WalletError
from wallet.frost.dealer import trusted_dealer_keygen
from wallet.frost.elgamal import PartialDecryption
from wallet.frost.group import BASE_POINT
from wallet.frost.node_box import seal_for
from wallet.member import CommitteeMember
from wallet.messages import (
    RequestKind,
    WalletRequest,
    decode_answer,
    encode_answer,
)
from wallet.secret_delivery import SecretDelivery, SecretUnavailable
from wallet.secret_partials import BOX_DOMAIN, SecretQuery, box_header, open_answer
from wallet.shares import ShareStore, StoredShare
from wallet.vault import seal

OWNER = Keypair.from_seed(b"\x71" * 32).public
OTHER_OWNER = Keypair.from_seed(b"\x72" * 32).public
MEMBERS = sorted(
    (Keypair.from_seed(bytes([0x80 + i]) * 32) for i in range(3)), key=lambda k: k.public
)
RUNNER = Keypair.from_seed(b"\x90" * 32)
"""The node the chain assigned replica 0 of `web`."""
STRANGER = Keypair.from_seed(b"\x91" * 32)
"""A node that runs nothing of `web`."""
DATA = {"password": b"correct horse battery staple", "id_ed25519": b"-----BEGIN KEY-----"}
SESSION = bytes(range(32))


class DictState:
    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}

    def get(self, raw_key: bytes) -> bytes | None:
        return self.values.get(raw_key)


class FinalizedOnly:
    """The member's ledger, of which secret delivery reads the finalized state only."""

    def __init__(self, state: StateReader, number: int = 10) -> None:
        self.state = state
        self.finalized_number = number

    def finalized_state(self) -> StateReader:
        return self.state


class World:
    """A finalized state with OWNER's 2-of-3 vault, secret `db` (version 2) sealed to it, and
    application `web` of OWNER (its manifest reads `db` and `ssh`), replica 0 on RUNNER."""

    def __init__(self, tmp_path: Path) -> None:
        self.rng = random.Random(5).randbytes
        dealt = trusted_dealer_keygen(3, 2, rng=self.rng)
        self.public = dealt.public_key_package
        self.vault_key = self.public.group_public_key.encoding
        self.state = DictState()
        self.stores = []
        for i, member in enumerate(MEMBERS):
            store = ShareStore(tmp_path / f"m{i}", member.seed)
            store.save(self.vault_key, StoredShare(dealt.key_packages[i + 1], self.public))  # type: ignore[index]
            self.stores.append(store)
        shares = tuple(self.public.verifying_share(i + 1).encoding for i in range(3))  # type: ignore[arg-type]
        vault = wallets.VaultRecord(
            AccountId(self.vault_key), tuple(m.public for m in MEMBERS), 2, shares, 3
        )
        self.state.values[storage_key(wallets.NAME, "vault") + OWNER] = vault.encode()
        self.put_secret("db", 2, self.vault_key)
        self.put_secret("unread", 1, self.vault_key)
        place_web(self.state.values.__setitem__, OWNER, RUNNER.public)
        self.members = [
            CommitteeMember(m, FinalizedOnly(self.state), self.stores[i], rng=self.rng)  # type: ignore[arg-type]
            for i, m in enumerate(MEMBERS)
        ]

    def put_secret(self, name: str, version: int, key: bytes, owner: bytes = OWNER) -> None:
        put_secret(self.state.values.__setitem__, owner, name, version, key, self.rng)

    def ask(self, member: int, requester: bytes, query: SecretQuery, seen_at: int = 10) -> bytes:
        request = WalletRequest(RequestKind.SECRET_PARTIAL, SESSION, query.request_items(seen_at))
        return self.members[member].handle(AccountId(requester), request.encode())


QUERY = SecretQuery(AccountId(OWNER), "db", 2, "web", 0)


def place_web(put: Callable[[bytes, bytes], None], owner: bytes, node: bytes) -> None:
    """Application `web` of `owner` (its manifest reads secrets `db` and `ssh`), its replica 0
    on `node`, as the apps module stores them."""
    manifest = validate_manifest(document())
    record = apps.AppRecord(
        AccountId(owner), 1, bytes(32), 1, "standard", Resources(100, 64, 0, 0), 1, 0, 1, 1, 1
    )
    put(storage_key(apps.NAME, "app") + b"web", record.encode())
    put(
        storage_key(apps.NAME, "manifest") + b"web/" + (1).to_bytes(8, "big"),
        manifest.canonical_json(),
    )
    entries = [apps.ReplicaEntry(0, 1, node, 2)]
    put(storage_key(apps.NAME, "placement") + b"web", apps._encode_entries(entries))


def put_secret(
    put: Callable[[bytes, bytes], None],
    owner: bytes,
    name: str,
    version: int,
    key: bytes,
    rng: Callable[[int], bytes],
) -> None:
    """`owner`'s secret `name` at `version`, DATA sealed to `key`, as the secrets module stores
    it."""
    envelope = seal(key, owner, name, version, DATA, rng)
    keys = tuple((k, len(v)) for k, v in DATA.items())
    put(secrets.secret_key(owner, name), secrets.SecretRecord(version, 1, keys, envelope).encode())


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def refusal(answer: bytes) -> str:
    with pytest.raises(WalletError) as caught:
        decode_answer(answer)
    return str(caught.value)


def test_an_assigned_node_gets_each_members_sealed_partial_decryption(world: World) -> None:
    for i, member in enumerate(MEMBERS):
        box = decode_answer(world.ask(i, RUNNER.public, QUERY))
        assert isinstance(box, bytes)
        partial = open_answer(RUNNER, member.public, SESSION, QUERY, box)
        assert partial.identifier == i + 1
        with pytest.raises(WalletError):  # sealed to the runner only
            open_answer(STRANGER, member.public, SESSION, QUERY, box)


@pytest.mark.parametrize(
    ("requester", "query", "expected"),
    [
        (
            STRANGER.public,
            QUERY,
            "NotAssigned: replica 0 of 'web' is not assigned to the requesting node",
        ),
        (
            RUNNER.public,
            SecretQuery(AccountId(OWNER), "db", 2, "web", 1),
            "NotAssigned: replica 1 of 'web' is not assigned to the requesting node",
        ),
        (
            RUNNER.public,
            SecretQuery(AccountId(OWNER), "db", 2, "api", 0),
            "NotAssigned: no application 'api' is finalized",
        ),
        (
            RUNNER.public,
            SecretQuery(AccountId(OTHER_OWNER), "db", 2, "web", 0),
            f"ForeignSecret: application 'web' is not owned by 0x{OTHER_OWNER.hex()}",
        ),
        (
            RUNNER.public,
            SecretQuery(AccountId(OWNER), "unread", 1, "web", 0),
            "ForeignSecret: the manifest of 'web' does not read secret 'unread'",
        ),
        (
            RUNNER.public,
            SecretQuery(AccountId(OWNER), "db", 3, "web", 0),
            "UnknownSecret: secret 'db' is at version 2, not 3",
        ),
        (
            RUNNER.public,
            SecretQuery(AccountId(OWNER), "ssh", 1, "web", 0),
            "UnknownSecret: no secret 'ssh' is finalized",
        ),
    ],
)
def test_a_member_refuses_what_its_finalized_state_does_not_allow(
    world: World, requester: bytes, query: SecretQuery, expected: str
) -> None:
    assert refusal(world.ask(0, requester, query)) == expected


def test_a_secret_sealed_to_another_key_than_the_vault_is_refused(world: World) -> None:
    # The owner's signing wallet (or any other key) never decrypts: only the vault's shares do.
    other = trusted_dealer_keygen(3, 2, rng=world.rng).public_key_package.group_public_key
    world.put_secret("db", 2, other.encoding)
    assert refusal(world.ask(0, RUNNER.public, QUERY)) == (
        "WrongPurpose: the secret is sealed to another key than its vault's"
    )


def test_a_malformed_query_is_refused(world: World) -> None:
    request = WalletRequest(RequestKind.SECRET_PARTIAL, SESSION, (OWNER, b"db"))
    answer = world.members[0].handle(AccountId(RUNNER.public), request.encode())
    assert refusal(answer) == (
        "Malformed: secret-partial takes an owner, a name, a version, an app, a replica and a "
        "finalized block"
    )


class FakeP2P:
    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}
        self.penalties: list[tuple[str, float, str]] = []

    def register_protocol(self, name: str, handler: Any, **_: Any) -> None:
        self.handlers[name] = handler

    def penalize(self, peer: str, amount: float, reason: str) -> None:
        self.penalties.append((peer, amount, reason))


def test_a_node_asking_for_a_replica_it_does_not_run_loses_score(world: World) -> None:
    service = WalletService(
        identity=MEMBERS[0],
        ledger=FinalizedOnly(world.state),  # type: ignore[arg-type]
        shares=world.stores[0],
        transport=None,  # type: ignore[arg-type]
        payer=None,
    )
    p2p = FakeP2P()
    service.register(p2p)  # type: ignore[arg-type]
    request = WalletRequest(RequestKind.SECRET_PARTIAL, SESSION, QUERY.request_items(10)).encode()
    stranger = peer_id_of(STRANGER.public)
    answer = trio.run(service.serve, stranger, request)
    assert refusal(answer).startswith("NotAssigned: ")
    assert [(p, reason) for p, _, reason in p2p.penalties] == [
        (stranger, "wallet: replica 0 of 'web' is not assigned to the requesting node")
    ]
    runner = peer_id_of(RUNNER.public)
    assert isinstance(decode_answer(trio.run(service.serve, runner, request)), bytes)
    late = WalletRequest(
        RequestKind.SECRET_PARTIAL,
        SESSION,
        SecretQuery(AccountId(OWNER), "db", 3, "web", 0).request_items(10),
    ).encode()
    assert refusal(trio.run(service.serve, runner, late)).startswith("UnknownSecret: ")
    assert len(p2p.penalties) == 1  # a version not final at the member yet is no offence
    ahead = WalletRequest(RequestKind.SECRET_PARTIAL, SESSION, QUERY.request_items(11)).encode()
    assert refusal(trio.run(service.serve, stranger, ahead)) == (
        "NotFinalYet: this member has finalized block 10, the requester 11: replica 0 of 'web' "
        "is not assigned to the requesting node"
    )
    assert len(p2p.penalties) == 1  # a requester ahead of the member is not punished for it
    behind = WalletRequest(RequestKind.SECRET_PARTIAL, SESSION, QUERY.request_items(9)).encode()
    assert refusal(trio.run(service.serve, stranger, behind)) == (
        "StaleView: this member has finalized block 10, the requester 9: replica 0 of 'web' is "
        "not assigned to the requesting node"
    )
    assert len(p2p.penalties) == 1  # nor one behind, which may see an assignment since moved


class Link:
    """Members reached in memory, each answer as its member gives it unless `rewrite` says."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.down: set[bytes] = set()
        self.rewrite: dict[bytes, Callable[[bytes], bytes]] = {}
        self.slow: set[bytes] = set()
        """Members that answer a second late (by the test's mock clock)."""
        self.asked: list[bytes] = []

    async def request(self, node_id: AccountId, data: bytes, *, timeout: float) -> bytes:  # noqa: ASYNC109
        await trio.sleep(1.0 if node_id in self.slow else 0.0)
        self.asked.append(node_id)
        if node_id in self.down:
            raise WalletError("connection refused")
        i = [m.public for m in MEMBERS].index(node_id)
        answer = self.world.members[i].handle(AccountId(RUNNER.public), data)
        change = self.rewrite.get(node_id)
        return answer if change is None else change(answer)


def tampered_by(member: Keypair) -> Callable[[bytes], bytes]:
    """The member's answer with its partial decryption moved off s_i * c1 (the proof kept)."""

    def change(answer: bytes) -> bytes:
        box = decode_answer(answer)
        assert isinstance(box, bytes)
        request = WalletRequest.decode(
            WalletRequest(RequestKind.SECRET_PARTIAL, SESSION, QUERY.request_items(10)).encode()
        )
        session = request.session
        honest = open_answer(RUNNER, member.public, session, QUERY, box)
        bad = PartialDecryption(honest.identifier, honest.share + BASE_POINT, honest.proof)
        header = box_header(session, member.public, QUERY)
        return encode_answer(
            seal_for(
                RUNNER.public,
                bad.encode(),
                domain=BOX_DOMAIN,
                header=header,
                rng=random.Random(1).randbytes,
            )
        )

    return change


def delivery(world: World, link: Link) -> SecretDelivery:
    return SecretDelivery(
        identity=RUNNER,
        ledger=FinalizedOnly(world.state),
        link=link,
        rng=lambda n: SESSION[:n] if n == 32 else world.rng(n),
        timeout=5.0,
    )


def fetch(service: SecretDelivery, query: SecretQuery = QUERY) -> Any:
    async def main() -> Any:
        return await service.fetch(query)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_t_valid_answers_open_the_secret_in_memory_only(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    delivered = fetch(delivery(world, Link(world)))
    assert delivered.values == DATA
    assert len(delivered.members) == 2
    assert delivered.faulty == ()
    assert "correct horse" not in repr(delivered)
    assert "correct horse" not in caplog.text


def test_a_tampered_partial_is_caught_named_and_the_others_suffice(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    link = Link(world)
    cheat = MEMBERS[1]
    link.rewrite[cheat.public] = tampered_by(cheat)
    link.slow = {MEMBERS[2].public}  # the cheat answers before the second honest member
    delivered = fetch(delivery(world, link))
    assert delivered.values == DATA
    assert delivered.faulty == (cheat.public,)
    assert cheat.public not in delivered.members
    assert f"member 0x{cheat.public.hex()} sent a bad partial decryption" in caplog.text
    assert "correct horse" not in caplog.text


def test_fewer_than_t_valid_answers_is_a_clear_reason_naming_the_cheat(world: World) -> None:
    link = Link(world)
    cheat, down = MEMBERS[0], MEMBERS[2]
    link.rewrite[cheat.public] = tampered_by(cheat)
    link.down.add(down.public)
    with pytest.raises(SecretUnavailable) as caught:
        fetch(delivery(world, link))
    reason = caught.value.reason
    assert reason.startswith(
        "1 of 3 members gave a valid partial decryption of secret 'db' version 2 of "
        f"0x{OWNER.hex()} for replica 0 of 'web', 2 needed: "
    )
    assert f"member 0x{cheat.public.hex()}: bad partial decryption: " in reason
    assert f"member 0x{down.public.hex()}: unreachable: connection refused" in reason
    assert isinstance(caught.value, WalletError)


class AsStranger(Link):
    async def request(self, node_id: AccountId, data: bytes, *, timeout: float) -> bytes:  # noqa: ASYNC109
        i = [m.public for m in MEMBERS].index(node_id)
        return self.world.members[i].handle(AccountId(STRANGER.public), data)


def test_a_node_not_assigned_gets_nothing(world: World) -> None:
    service = SecretDelivery(
        identity=STRANGER, ledger=FinalizedOnly(world.state), link=AsStranger(world), timeout=5.0
    )
    with pytest.raises(SecretUnavailable) as caught:
        fetch(service)
    assert caught.value.reason.startswith("0 of 3 members gave a valid partial decryption")
    assert caught.value.reason.count("NotAssigned: replica 0 of 'web' is not assigned") == 3


def test_no_vault_or_another_version_is_unavailable_before_any_member_is_asked(
    world: World,
) -> None:
    link = Link(world)
    with pytest.raises(SecretUnavailable) as stale:
        fetch(delivery(world, link), SecretQuery(AccountId(OWNER), "db", 1, "web", 0))
    assert "is not finalized here" in stale.value.reason
    with pytest.raises(SecretUnavailable) as no_vault:
        fetch(delivery(world, link), SecretQuery(AccountId(OTHER_OWNER), "db", 1, "web", 0))
    assert no_vault.value.reason == f"0x{OTHER_OWNER.hex()} has no vault key yet"
    assert link.asked == []
