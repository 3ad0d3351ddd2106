"""The encrypted keystore: sealing and opening keys, integrity checks, names, files, signers."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.address import encode_address
from chain.keys import DEV_ACCOUNTS, Keypair, dev_keypair
from wallet.keystore import (
    CorruptKeyFile,
    InvalidKeyName,
    KeyExists,
    KeyInfo,
    KeyNotFound,
    Keystore,
    ScryptParams,
    WrongPassword,
    _write_new_file,
    dev_signer,
    resolve_signer,
    validate_key_name,
)

FAST = ScryptParams(n=16)
PASSWORD = "correct horse battery"
SEED_A = bytes(range(32))
SEED_B = bytes(range(100, 132))

# Written once by `Keystore.create` with n=16, salt 0x11.., nonce 0x22.. and SEED_A, and
# kept here so that a change of the file format or its cryptography is noticed.
VECTOR_PASSWORD = "vector-password"
VECTOR = {
    "version": 1,
    "name": "vector",
    "address": "5C9TqVEs5Q51zUdjvp6tSsjHAfLseJKq1Dq6ULcuSLqEuaAG",
    "public": "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
    "kdf": {
        "name": "scrypt",
        "n": 16,
        "r": 8,
        "p": 1,
        "salt": "11111111111111111111111111111111",
        "check": "d3a068e7ff3cfb6bc6dfea1acef98baa",
    },
    "cipher": {
        "name": "aes-256-gcm",
        "nonce": "222222222222222222222222",
        "ciphertext": "63b04d81fccbf9bc2e24c19b5b51c840837dc79399c281911f5539dc0bfc8cfa",
        "tag": "17cd8f5ab187e2fb1cca38f232477783",
    },
}


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "keystore", scrypt_params=FAST)


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def _save(path: Path, document: object) -> None:
    path.write_text(json.dumps(document))


def test_round_trip(keystore: Keystore) -> None:
    info = keystore.create("alice", PASSWORD)
    keypair = keystore.unlock("alice", PASSWORD)
    assert info == KeyInfo(
        name="alice",
        address=encode_address(keypair.public),
        public=keypair.public,
        path=keystore.path / "alice.json",
    )
    assert keystore.info("alice") == info
    assert keypair.sign(b"message") == Keypair.from_seed(keypair.seed).sign(b"message")


def test_create_stores_the_given_keypair(keystore: Keystore) -> None:
    given_pair = Keypair.from_seed(SEED_A)
    info = keystore.create("imported", PASSWORD, keypair=given_pair)
    assert info.public == given_pair.public
    assert keystore.unlock("imported", PASSWORD).seed == SEED_A


def test_each_key_gets_a_fresh_salt_and_nonce(keystore: Keystore) -> None:
    keystore.create("one", PASSWORD, keypair=Keypair.from_seed(SEED_A))
    keystore.create("two", PASSWORD, keypair=Keypair.from_seed(SEED_A))
    one, two = _load(keystore.path / "one.json"), _load(keystore.path / "two.json")
    assert one["kdf"]["salt"] != two["kdf"]["salt"]
    assert one["cipher"]["nonce"] != two["cipher"]["nonce"]
    assert one["cipher"]["ciphertext"] != two["cipher"]["ciphertext"]


def test_default_cost_is_scrypt_n_2_15(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    store.create("alice", PASSWORD)
    document = _load(tmp_path / "alice.json")
    assert (document["kdf"]["name"], document["kdf"]["n"]) == ("scrypt", 2**15)
    assert (document["kdf"]["r"], document["kdf"]["p"]) == (8, 1)
    assert document["cipher"]["name"] == "aes-256-gcm"
    assert store.unlock("alice", PASSWORD).public == store.info("alice").public


def test_format_vector_opens(tmp_path: Path) -> None:
    _save(tmp_path / "vector.json", VECTOR)
    keypair = Keystore(tmp_path).unlock("vector", VECTOR_PASSWORD)
    assert keypair.seed == SEED_A
    assert keypair.address == VECTOR["address"]


def test_format_vector_is_reproduced(tmp_path: Path) -> None:
    fills = iter([b"\x11" * 16, b"\x22" * 12])
    store = Keystore(tmp_path, scrypt_params=FAST, random_bytes=lambda n: next(fills))
    store.create("vector", VECTOR_PASSWORD, keypair=Keypair.from_seed(SEED_A))
    assert _load(tmp_path / "vector.json") == VECTOR


def test_existing_name_is_refused_and_kept(keystore: Keystore) -> None:
    keystore.create("alice", PASSWORD, keypair=Keypair.from_seed(SEED_A))
    before = (keystore.path / "alice.json").read_bytes()
    with pytest.raises(KeyExists) as caught:
        keystore.create("alice", "another password", keypair=Keypair.from_seed(SEED_B))
    assert str(caught.value) == f"key 'alice' already exists ({keystore.path / 'alice.json'})"
    assert (keystore.path / "alice.json").read_bytes() == before


def test_a_file_appearing_while_writing_is_not_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "alice.json"
    target.write_text("first")
    with pytest.raises(KeyExists) as caught:
        _write_new_file(target, b"second", "alice")
    assert str(caught.value) == f"key 'alice' already exists ({target})"
    assert target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.json"]


def test_wrong_password(keystore: Keystore) -> None:
    keystore.create("alice", PASSWORD)
    with pytest.raises(WrongPassword) as caught:
        keystore.unlock("alice", "not the password")
    assert str(caught.value) == f"wrong password for key 'alice' ({keystore.path / 'alice.json'})"


def test_password_is_unicode_normalized(keystore: Keystore) -> None:
    keystore.create("alice", "caf\u00e9 au lait", keypair=Keypair.from_seed(SEED_A))
    assert keystore.unlock("alice", "cafe\u0301 au lait").seed == SEED_A


def test_unknown_key(keystore: Keystore) -> None:
    with pytest.raises(KeyNotFound) as caught:
        keystore.unlock("nobody", PASSWORD)
    assert str(caught.value) == f"no key named 'nobody' in keystore {keystore.path}"
    with pytest.raises(KeyNotFound):
        keystore.info("nobody")


def _flip_ciphertext(doc: dict[str, Any]) -> None:
    raw = bytearray.fromhex(doc["cipher"]["ciphertext"])
    raw[5] ^= 0x01
    doc["cipher"]["ciphertext"] = raw.hex()


def _swap_public(doc: dict[str, Any]) -> None:
    doc["public"] = Keypair.from_seed(SEED_B).public.hex()


def _swap_header(doc: dict[str, Any]) -> None:
    # A consistent header from another account: only the authenticated data catches it.
    other = Keypair.from_seed(SEED_B)
    doc["public"], doc["address"] = other.public.hex(), other.address


Mutation = Callable[[dict[str, Any]], None]
CORRUPTIONS: list[tuple[str, Mutation, str, bool]] = [
    # (case, mutation, reason in the message, found before the password is needed)
    (
        "flipped ciphertext",
        _flip_ciphertext,
        "the encrypted seed or its header was altered (authentication failed)",
        False,
    ),
    (
        "flipped tag",
        lambda d: d["cipher"].update(tag="00" * 16),
        "the encrypted seed or its header was altered (authentication failed)",
        False,
    ),
    (
        "swapped header",
        _swap_header,
        "the encrypted seed or its header was altered (authentication failed)",
        False,
    ),
    ("swapped public key", _swap_public, "the address does not match the public key", True),
    (
        "unsupported kdf",
        lambda d: d["kdf"].update(name="pbkdf2"),
        "unsupported kdf 'pbkdf2' (expected 'scrypt')",
        True,
    ),
    (
        "unsupported cipher",
        lambda d: d["cipher"].update(name="aes-128-ctr"),
        "unsupported cipher 'aes-128-ctr' (expected 'aes-256-gcm')",
        True,
    ),
    (
        "unsupported version",
        lambda d: d.update(version=2),
        "unsupported version 2 (this build reads 1)",
        True,
    ),
    ("missing field", lambda d: d["cipher"].pop("nonce"), "missing field 'cipher.nonce'", True),
    ("missing section", lambda d: d.pop("kdf"), "missing field 'kdf'", True),
    ("section not an object", lambda d: d.update(kdf=[]), "field 'kdf' is not a JSON object", True),
    (
        "short salt",
        lambda d: d["kdf"].update(salt="11" * 8),
        "field 'kdf.salt' is 8 bytes, expected 16",
        True,
    ),
    (
        "long ciphertext",
        lambda d: d["cipher"].update(ciphertext="00" * 33),
        "field 'cipher.ciphertext' is 33 bytes, expected 32",
        True,
    ),
    (
        "not hex",
        lambda d: d["cipher"].update(nonce="zz" * 12),
        "field 'cipher.nonce' is not hex",
        True,
    ),
    ("string version", lambda d: d.update(version="1"), "field 'version' is not an integer", True),
    ("boolean cost", lambda d: d["kdf"].update(r=True), "field 'kdf.r' is not an integer", True),
    ("numeric address", lambda d: d.update(address=5), "field 'address' is not a string", True),
    ("other name", lambda d: d.update(name="bob"), "it holds key 'bob', not 'alice'", True),
    (
        "cost not a power of two",
        lambda d: d["kdf"].update(n=1000),
        "scrypt n must be a power of two of at least 2, got 1000",
        True,
    ),
    (
        "cost too high",
        lambda d: d["kdf"].update(n=2**24),
        "scrypt n=16777216, r=8 would need more than 1024 MiB",
        True,
    ),
]


@pytest.mark.parametrize(
    ("mutate", "reason", "before_password"),
    [case[1:] for case in CORRUPTIONS],
    ids=[case[0] for case in CORRUPTIONS],
)
def test_corrupt_key_file(
    keystore: Keystore, mutate: Mutation, reason: str, before_password: bool
) -> None:
    keystore.create("alice", PASSWORD, keypair=Keypair.from_seed(SEED_A))
    path = keystore.path / "alice.json"
    document = _load(path)
    mutate(document)
    _save(path, document)
    expected = f"corrupt key file {path}: {reason}"
    with pytest.raises(CorruptKeyFile) as caught:
        keystore.unlock("alice", PASSWORD)
    assert str(caught.value) == expected
    if before_password:
        with pytest.raises(CorruptKeyFile) as caught:
            keystore.info("alice")
        assert str(caught.value) == expected
    else:
        assert keystore.info("alice").name == "alice"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b'{"version": 1, "name": "al',
            "not valid JSON (Unterminated string starting at: line 1 column 24 (char 23))",
        ),
        (b"", "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
        (
            b"\xff\xfe",
            "not valid JSON ('utf-8' codec can't decode byte 0xff in position 0: "
            "invalid start byte)",
        ),
        (b"[1, 2]", "the file is not a JSON object"),
        (b" " * (64 * 1024 + 1), "larger than 65536 bytes"),
    ],
    ids=["truncated", "empty", "not utf-8", "array", "oversize"],
)
def test_unreadable_key_file(keystore: Keystore, content: bytes, reason: str) -> None:
    keystore.path.mkdir()
    path = keystore.path / "alice.json"
    path.write_bytes(content)
    with pytest.raises(CorruptKeyFile) as caught:
        keystore.unlock("alice", PASSWORD)
    assert str(caught.value) == f"corrupt key file {path}: {reason}"


def test_truncated_real_file(keystore: Keystore) -> None:
    keystore.create("alice", PASSWORD)
    path = keystore.path / "alice.json"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptKeyFile) as caught:
        keystore.info("alice")
    assert str(caught.value).startswith(f"corrupt key file {path}: not valid JSON (")


def test_public_key_not_matching_the_seed(keystore: Keystore) -> None:
    # A pair whose public half belongs to another seed: sealed consistently, caught on opening.
    real, other = Keypair.from_seed(SEED_A), Keypair.from_seed(SEED_B)
    mismatched = Keypair(seed=real.seed, public=other.public, _secret=real._secret)
    keystore.create("alice", PASSWORD, keypair=mismatched)
    with pytest.raises(CorruptKeyFile) as caught:
        keystore.unlock("alice", PASSWORD)
    assert str(caught.value) == (
        f"corrupt key file {keystore.path / 'alice.json'}: "
        "the public key does not match the decrypted seed"
    )


def test_errors_never_show_the_password_or_seed(keystore: Keystore) -> None:
    keystore.create("alice", PASSWORD, keypair=Keypair.from_seed(SEED_A))
    path = keystore.path / "alice.json"
    messages = []
    for attempt in (
        lambda: keystore.unlock("alice", PASSWORD + "!"),
        lambda: keystore.create("alice", PASSWORD),
    ):
        with pytest.raises(Exception) as caught:
            attempt()
        messages.append(str(caught.value) + repr(caught.value))
    document = _load(path)
    _flip_ciphertext(document)
    _save(path, document)
    with pytest.raises(CorruptKeyFile) as caught:
        keystore.unlock("alice", PASSWORD)
    messages.append(str(caught.value) + repr(caught.value))
    for message in messages:
        assert PASSWORD not in message
        assert SEED_A.hex() not in message
    assert PASSWORD not in repr(keystore)
    assert SEED_A.hex() not in repr(keystore.unlock)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "invalid key name '': use 1 to 64 characters from a-z, 0-9, '_' and '-'"),
        ("Alice", "invalid key name 'Alice': use 1 to 64 characters from a-z, 0-9, '_' and '-'"),
        (
            "a" * 65,
            f"invalid key name '{'a' * 65}': use 1 to 64 characters from a-z, 0-9, '_' and '-'",
        ),
        ("../etc", "invalid key name '../etc': use 1 to 64 characters from a-z, 0-9, '_' and '-'"),
        ("a b", "invalid key name 'a b': use 1 to 64 characters from a-z, 0-9, '_' and '-'"),
        (
            "al\u00efce",
            "invalid key name 'al\u00efce': use 1 to 64 characters from a-z, 0-9, '_' and '-'",
        ),
        (
            "alice\n",
            "invalid key name 'alice\\n': use 1 to 64 characters from a-z, 0-9, '_' and '-'",
        ),
        ("dev-alice", "invalid key name 'dev-alice': names starting with 'dev-' are reserved"),
        ("0xabc", "invalid key name '0xabc': names starting with '0x' are reserved"),
    ],
)
def test_invalid_names(keystore: Keystore, name: str, message: str) -> None:
    for operation in (
        lambda: keystore.create(name, PASSWORD),
        lambda: keystore.info(name),
        lambda: keystore.unlock(name, PASSWORD),
    ):
        with pytest.raises(InvalidKeyName) as caught:
            operation()
        assert str(caught.value) == message
    assert not keystore.path.exists()


@given(st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True))
def test_names_of_the_allowed_alphabet_are_accepted(name: str) -> None:
    if name.startswith(("dev-", "0x")):
        with pytest.raises(InvalidKeyName):
            validate_key_name(name)
    else:
        assert validate_key_name(name) == name


@given(
    st.text(min_size=1, max_size=64).filter(
        lambda s: any(c not in "abcdefghijklmnopqrstuvwxyz0123456789_-" for c in s)
    )
)
def test_names_outside_the_alphabet_are_refused(name: str) -> None:
    with pytest.raises(InvalidKeyName):
        validate_key_name(name)


@settings(max_examples=25, deadline=None)
@given(password=st.text(min_size=1, max_size=40), other=st.text(min_size=1, max_size=40))
def test_any_password_round_trips_and_no_other_opens(
    tmp_path_factory: pytest.TempPathFactory, password: str, other: str
) -> None:
    import unicodedata

    store = Keystore(tmp_path_factory.mktemp("ks"), scrypt_params=ScryptParams(n=2, r=1))
    info = store.create("key", password)
    assert store.unlock("key", password).public == info.public
    if unicodedata.normalize("NFKC", other) != unicodedata.normalize("NFKC", password):
        with pytest.raises(WrongPassword):
            store.unlock("key", other)


def test_file_and_directory_modes(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        store = Keystore(tmp_path / "nested" / "keystore", scrypt_params=FAST)
        store.create("alice", PASSWORD)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(store.path / "alice.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o700
    assert sorted(p.name for p in store.path.iterdir()) == ["alice.json"]


def test_listing(keystore: Keystore) -> None:
    assert keystore.list() == []
    assert not keystore.path.exists()
    bob = keystore.create("bob", PASSWORD)
    alice = keystore.create("alice", PASSWORD)
    # Files that cannot be keys are not listed: temporary files, other names, other suffixes.
    (keystore.path / ".carol.json.x1.tmp").write_text("partial")
    (keystore.path / ".hidden.json").write_text("{}")
    (keystore.path / "Upper.json").write_text("{}")
    (keystore.path / "notes.txt").write_text("hello")
    (keystore.path / "sub.json").mkdir()
    assert keystore.list() == [alice, bob]


def test_listing_reports_a_corrupt_file(keystore: Keystore) -> None:
    keystore.create("alice", PASSWORD)
    (keystore.path / "broken.json").write_text("{")
    with pytest.raises(CorruptKeyFile) as caught:
        keystore.list()
    assert str(caught.value) == (
        f"corrupt key file {keystore.path / 'broken.json'}: "
        "not valid JSON (Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1))"
    )


def test_scrypt_params_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^scrypt n must be a power of two of at least 2, got 3$"):
        ScryptParams(n=3)
    with pytest.raises(
        ValueError, match=r"^scrypt r must be in 1..32 and p in 1..16, got r=0, p=1$"
    ):
        ScryptParams(r=0)


def test_dev_signers() -> None:
    for name in DEV_ACCOUNTS:
        assert dev_signer(f"dev-{name}").seed == dev_keypair(name).seed
    with pytest.raises(KeyNotFound) as caught:
        dev_signer("dev-mallory")
    assert str(caught.value) == (
        "no development account 'dev-mallory' "
        "(known: dev-alice, dev-bob, dev-charlie, dev-dave, dev-eve, dev-ferdie)"
    )


class FakeKeySource:
    """Records what `resolve_signer` asks of a keystore."""

    def __init__(self, keys: dict[str, tuple[str, Keypair]]) -> None:
        self.keys = keys
        self.calls: list[str] = []

    def info(self, name: str) -> KeyInfo:
        self.calls.append(f"info {name}")
        if name not in self.keys:
            raise KeyNotFound(f"no key named {name!r}")
        keypair = self.keys[name][1]
        return KeyInfo(name, keypair.address, keypair.public, Path(f"/fake/{name}.json"))

    def unlock(self, name: str, password: str) -> Keypair:
        self.calls.append(f"unlock {name}")
        expected, keypair = self.keys[name]
        if password != expected:
            raise WrongPassword(f"wrong password for key {name!r}")
        return keypair


class FakePasswords:
    def __init__(self, password: str) -> None:
        self.password = password
        self.asked: list[str] = []

    def __call__(self, name: str) -> str:
        self.asked.append(name)
        return self.password


def test_resolve_signer_dev_account_needs_no_file_or_password() -> None:
    source, passwords = FakeKeySource({}), FakePasswords(PASSWORD)
    assert resolve_signer("dev-bob", source, passwords).seed == dev_keypair("bob").seed
    assert (source.calls, passwords.asked) == ([], [])


def test_resolve_signer_keystore_key() -> None:
    pair = Keypair.from_seed(SEED_A)
    source, passwords = FakeKeySource({"alice": (PASSWORD, pair)}), FakePasswords(PASSWORD)
    assert resolve_signer("alice", source, passwords) == pair
    assert source.calls == ["info alice", "unlock alice"]
    assert passwords.asked == ["alice"]


def test_resolve_signer_asks_no_password_for_a_missing_key() -> None:
    source, passwords = FakeKeySource({}), FakePasswords(PASSWORD)
    with pytest.raises(KeyNotFound) as caught:
        resolve_signer("nobody", source, passwords)
    assert str(caught.value) == "no key named 'nobody'"
    assert passwords.asked == []


def test_resolve_signer_with_the_real_keystore(keystore: Keystore) -> None:
    keystore.create("alice", PASSWORD, keypair=Keypair.from_seed(SEED_A))
    assert resolve_signer("alice", keystore, FakePasswords(PASSWORD)).seed == SEED_A
    with pytest.raises(WrongPassword):
        resolve_signer("alice", keystore, FakePasswords("wrong password"))
    with pytest.raises(KeyNotFound):
        resolve_signer("dev-zed", keystore, FakePasswords(PASSWORD))
