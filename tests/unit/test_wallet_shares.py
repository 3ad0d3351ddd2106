"""Wallet shares at rest: sealed under a key derived from the operator key, never the node key
that lies beside them; files sealed the old way re-sealed at start, atomically (a crash at any
step leaves the old file or the new one); a wrong key or a damaged file refused with a typed
error and left as it was; no secret in a repr, an error or the log."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from Crypto.Cipher import AES

from chain.keys import Keypair, dev_keypair
from tests.unit.frost_builders import dkg_params, identities, run_dkg, seeded
from wallet.shares import (
    CorruptShareFile,
    SealKey,
    ShareKeyMismatch,
    SharesLocked,
    ShareStore,
    StoredShare,
    legacy_file_key,
    open_share_store,
)

NODE_SEED = bytes(range(32))
"""The node key's seed: in clear in the base path."""
OPERATOR = Keypair.from_seed(b"\x11" * 32)
"""The operator key: in the password-encrypted keystore."""
OTHER_OPERATOR = Keypair.from_seed(b"\x22" * 32)


def three_wallets() -> list[tuple[bytes, StoredShare]]:
    """(group key, one member's share) of three wallets."""
    found = []
    for wallet in range(3):
        keys = identities(3, seed=wallet)
        run = run_dkg(dkg_params(keys, 2, session=bytes([wallet]) * 32), keys, seeded(wallet))
        output = next(iter(run.outputs.values()))
        share = StoredShare(output.key_package, output.public_key_package)
        found.append((output.key_package.group_public_key.encoding, share))
    return found


@pytest.fixture(scope="module")
def shares() -> list[tuple[bytes, StoredShare]]:
    return three_wallets()


def seal_the_old_way(base: Path, group_key: bytes, share: StoredShare) -> Path:
    """A file as the previous version wrote it: under a key derived from the node key."""
    nonce = os.urandom(12)
    cipher = AES.new(legacy_file_key(NODE_SEED), AES.MODE_GCM, nonce=nonce)
    cipher.update(group_key)
    ciphertext, tag = cipher.encrypt_and_digest(share.encode())
    path = base / "wallets" / f"{group_key.hex()}.share"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"SMWS1" + nonce + tag + ciphertext)
    return path


def files(base: Path) -> dict[str, bytes]:
    directory = base / "wallets"
    return (
        {p.name: p.read_bytes() for p in sorted(directory.iterdir())} if directory.exists() else {}
    )


def secrets_of(share: StoredShare) -> list[str]:
    """Forms a share's secret could take in text."""
    secret = share.key_package.encode()
    return [secret.hex(), secret[-32:].hex(), repr(secret[-32:])]


def test_a_share_is_sealed_under_the_operator_key_alone(
    tmp_path: Path, shares: list[tuple[bytes, StoredShare]]
) -> None:
    group, share = shares[0]
    store = ShareStore(tmp_path, OPERATOR.seed)
    store.save(group, share)
    assert store.load(group) == share
    assert store.load(shares[1][0]) is None
    path = store.path(group)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert data.startswith(b"SMWS2")
    assert share.key_package.encode()[-32:] not in data
    # Whoever reads the base path has the node key: it opens nothing.
    with pytest.raises(ShareKeyMismatch):
        ShareStore(tmp_path, NODE_SEED).load(group)


def test_another_operator_key_is_refused_and_changes_nothing(
    tmp_path: Path, shares: list[tuple[bytes, StoredShare]], caplog: pytest.LogCaptureFixture
) -> None:
    for group, share in shares[:2]:
        ShareStore(tmp_path, OPERATOR.seed).save(group, share)
    before = files(tmp_path)
    group = shares[0][0]
    with pytest.raises(ShareKeyMismatch) as raised:
        ShareStore(tmp_path, OTHER_OPERATOR.seed).load(group)
    assert str(raised.value) == (
        f"{tmp_path / 'wallets' / (group.hex() + '.share')} is sealed under another operator key "
        "than this node's: start the node with the --operator key its shares were sealed under"
    )
    with pytest.raises(ShareKeyMismatch) as at_start:
        open_share_store(tmp_path, OTHER_OPERATOR, NODE_SEED)
    assert str(at_start.value) == (
        f"2 wallet share file(s) in {tmp_path / 'wallets'} are sealed under another operator "
        "key than this node's: start the node with the --operator key they were sealed under "
        "(or move them away to give up these shares)"
    )
    assert files(tmp_path) == before
    # The right key still opens them.
    assert open_share_store(tmp_path, OPERATOR, NODE_SEED).load(group) == shares[0][1]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]),
         "was altered or damaged (authentication failed), or does not belong under this name"),
        (lambda data: data[:20], "is not a wallet share file"),
        (lambda data: b"", "is not a wallet share file"),
        (lambda data: b"garbage" * 20, "is not a wallet share file"),
    ],
)  # fmt: skip
def test_a_damaged_file_is_refused_and_left_as_it_is(
    tmp_path: Path,
    shares: list[tuple[bytes, StoredShare]],
    damage: Callable[[bytes], bytes],
    message: str,
) -> None:
    group, share = shares[0]
    store = ShareStore(tmp_path, OPERATOR.seed)
    store.save(group, share)
    path = store.path(group)
    path.write_bytes(damage(path.read_bytes()))
    before = files(tmp_path)
    with pytest.raises(CorruptShareFile) as raised:
        store.load(group)
    assert str(raised.value) == f"{path} {message}"
    open_share_store(tmp_path, OPERATOR, NODE_SEED)  # the node still starts
    assert files(tmp_path) == before


def test_a_file_under_another_wallet_s_name_is_refused(
    tmp_path: Path, shares: list[tuple[bytes, StoredShare]]
) -> None:
    (group, share), (other, _) = shares[:2]
    store = ShareStore(tmp_path, OPERATOR.seed)
    store.save(group, share)
    store.path(group).rename(store.path(other))
    with pytest.raises(CorruptShareFile):
        store.load(other)


def test_files_sealed_the_old_way_are_resealed_at_first_start(
    tmp_path: Path, shares: list[tuple[bytes, StoredShare]], caplog: pytest.LogCaptureFixture
) -> None:
    old = [seal_the_old_way(tmp_path, group, share) for group, share in shares[:2]]
    damaged = seal_the_old_way(tmp_path, *shares[2])
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\x00")
    damaged_bytes = damaged.read_bytes()
    leftover = old[0].with_suffix(".tmp")  # an interrupted write of the old version
    leftover.write_bytes(old[0].read_bytes())
    with caplog.at_level(logging.INFO, logger="statemesh.wallet.shares"):
        store = open_share_store(tmp_path, OPERATOR, NODE_SEED)
    for path, (group, share) in zip(old, shares[:2], strict=True):
        assert path.read_bytes().startswith(b"SMWS2")
        assert store.load(group) == share
    assert not leftover.exists()
    assert damaged.read_bytes() == damaged_bytes  # left for the operator, never deleted
    with pytest.raises(CorruptShareFile):
        store.load(shares[2][0])
    assert [r.getMessage() for r in caplog.records] == [
        f"re-sealed 2 wallet share file(s) in {tmp_path / 'wallets'} under the operator key; "
        "the node key no longer protects any",
        f"wallet share file {damaged} is left as it is and cannot be used: does not decrypt "
        "with this node's key (damaged, or another node's)",
    ]
    # Once is enough: the next start finds nothing to re-seal.
    again = ShareStore(tmp_path, OPERATOR.seed).migrate(NODE_SEED)
    assert (again.resealed, again.foreign) == ((), ())


def test_the_node_key_never_seals_again(
    tmp_path: Path, shares: list[tuple[bytes, StoredShare]]
) -> None:
    seal_the_old_way(tmp_path, *shares[0])
    store = open_share_store(tmp_path, OPERATOR, NODE_SEED)
    store.save(*shares[1])
    for data in files(tmp_path).values():
        assert data.startswith(b"SMWS2" + SealKey.derive(OPERATOR.seed).key_id)
        nonce, tag, ciphertext = data[13:25], data[25:41], data[41:]
        cipher = AES.new(legacy_file_key(NODE_SEED), AES.MODE_GCM, nonce=nonce)
        with pytest.raises(ValueError):
            cipher.decrypt_and_verify(ciphertext, tag)


class SimulatedCrash(BaseException):
    """The process dies here: nothing after this point runs."""


@pytest.fixture
def crash_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int | None], list[str]]]:
    """`crash_at(n)` makes the n-th file-system step (open, write, fsync, close, replace,
    unlink) raise SimulatedCrash; `crash_at(None)` only counts them. Returns the steps seen."""
    steps: list[str] = []
    limit: list[int | None] = [None]

    def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            if limit[0] is not None and len(steps) == limit[0]:
                raise SimulatedCrash(name)
            steps.append(name)
            return real(*args, **kwargs)

        return step

    for name in ("open", "write", "fsync", "close", "replace", "unlink"):
        monkeypatch.setattr(os, name, wrap(name, getattr(os, name)))
    monkeypatch.setattr(Path, "unlink", wrap("unlink", Path.unlink))

    def arm(n: int | None) -> list[str]:
        steps.clear()
        limit[0] = n
        return steps

    yield arm


def test_a_crash_at_any_step_of_the_reseal_leaves_each_share_old_or_new(
    tmp_path: Path,
    shares: list[tuple[bytes, StoredShare]],
    crash_at: Callable[[int | None], list[str]],
) -> None:
    def old_base(name: str) -> Path:
        base = tmp_path / name
        for group, share in shares:
            seal_the_old_way(base, group, share)
        # An interrupted write of the previous version, to be removed.
        (base / "wallets" / "leftover.tmp").write_bytes(b"SMWS1" + b"\x00" * 60)
        return base

    steps = crash_at(None)
    open_share_store(old_base("count"), OPERATOR, NODE_SEED)
    total = len(steps)
    assert {"write", "fsync", "replace", "unlink"} <= set(steps)
    for n in range(total):
        base = old_base(f"crash{n}")
        crash_at(n)
        with pytest.raises(SimulatedCrash):
            open_share_store(base, OPERATOR, NODE_SEED)
        crash_at(None)
        # Every share is there, the old way or the new: none lost, none half-written.
        for group, share in shares:
            data = (base / "wallets" / f"{group.hex()}.share").read_bytes()
            if data.startswith(b"SMWS1"):
                legacy = ShareStore(base, None)
                assert legacy.migrate(NODE_SEED).waiting  # still the old file, whole
            else:
                assert ShareStore(base, OPERATOR.seed).load(group) == share
        # The next start finishes the work.
        store = open_share_store(base, OPERATOR, NODE_SEED)
        for group, share in shares:
            assert store.load(group) == share
        assert sorted(p.suffix for p in (base / "wallets").iterdir()) == [".share"] * 3


def test_a_crash_while_saving_leaves_the_previous_share(
    tmp_path: Path,
    shares: list[tuple[bytes, StoredShare]],
    crash_at: Callable[[int | None], list[str]],
) -> None:
    group, share = shares[0]
    store = ShareStore(tmp_path, OPERATOR.seed)
    store.save(group, share)
    before = store.path(group).read_bytes()
    steps = crash_at(None)
    store.save(group, share)
    total = len(steps)
    for n in range(total):
        store.path(group).write_bytes(before)
        crash_at(n)
        with pytest.raises(SimulatedCrash):
            store.save(group, share)
        crash_at(None)
        assert store.load(group) == share


def test_without_an_operator_key_nothing_is_sealed_or_touched(
    tmp_path: Path, shares: list[tuple[bytes, StoredShare]], caplog: pytest.LogCaptureFixture
) -> None:
    seal_the_old_way(tmp_path, *shares[0])
    before = files(tmp_path)
    with caplog.at_level(logging.WARNING, logger="statemesh.wallet.shares"):
        store = open_share_store(tmp_path, None, NODE_SEED)
    assert files(tmp_path) == before
    assert caplog.records[0].getMessage() == (
        f"this node has no operator key: its 1 wallet share file(s) in {tmp_path / 'wallets'} "
        "can neither be used nor re-sealed until it starts with --operator"
    )
    with pytest.raises(SharesLocked) as raised:
        store.save(*shares[1])
    assert str(raised.value) == (
        f"wallet shares in {tmp_path / 'wallets'} cannot be sealed or opened: this node has no "
        "operator key (start it with --operator)"
    )
    assert store.load(shares[1][0]) is None  # no share of that wallet either way
    assert files(tmp_path) == before


def test_a_development_operator_on_a_live_chain_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="statemesh.wallet.shares"):
        open_share_store(tmp_path / "dev", dev_keypair("ferdie"), NODE_SEED)
        open_share_store(tmp_path / "mine", OPERATOR, NODE_SEED, live_chain=True)
        assert caplog.records == []
        open_share_store(tmp_path / "live", dev_keypair("ferdie"), NODE_SEED, live_chain=True)
    assert [r.getMessage() for r in caplog.records] == [
        "the operator is a development account, whose seed is public: "
        "wallet shares sealed under its key are not protected at rest"
    ]


def test_no_secret_in_a_repr_an_error_or_the_log(
    tmp_path: Path, shares: list[tuple[bytes, StoredShare]], caplog: pytest.LogCaptureFixture
) -> None:
    seal_the_old_way(tmp_path, *shares[0])
    damaged = seal_the_old_way(tmp_path, *shares[1])
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\x00")
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        store = open_share_store(tmp_path, OPERATOR, NODE_SEED)
        for group, _ in shares[1:]:
            try:
                store.load(group)
            except CorruptShareFile as error:
                texts.append(str(error))
        try:
            ShareStore(tmp_path, OTHER_OPERATOR.seed).load(shares[0][0])
        except ShareKeyMismatch as error:
            texts.append(str(error))
    seal = SealKey.derive(OPERATOR.seed)
    texts += [repr(store), repr(seal), repr(shares[0][1]), caplog.text]
    forbidden = [OPERATOR.seed.hex(), NODE_SEED.hex(), seal.key.hex(), repr(seal.key),
                 legacy_file_key(NODE_SEED).hex()]  # fmt: skip
    for _, share in shares:
        forbidden += secrets_of(share)
    for text in texts:
        for secret in forbidden:
            assert secret not in text


def test_a_file_the_node_cannot_read_is_named_and_the_others_resealed(
    tmp_path: Path,
    shares: list[tuple[bytes, StoredShare]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unreadable = seal_the_old_way(tmp_path, *shares[0])
    seal_the_old_way(tmp_path, *shares[1])
    read = Path.read_bytes

    def refuse(path: Path) -> bytes:
        if path == unreadable:
            raise PermissionError(13, "Permission denied")
        return read(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    store = open_share_store(tmp_path, OPERATOR, NODE_SEED)
    assert store.load(shares[1][0]) == shares[1][1]
    assert caplog.messages[-1] == (
        f"wallet share file {unreadable} is left as it is and cannot be used: "
        "cannot be read (Permission denied)"
    )
    monkeypatch.undo()
    assert unreadable.read_bytes().startswith(b"SMWS1")
