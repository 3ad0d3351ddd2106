"""`statemesh key generate|list|inspect`, through the CLI entry point and the console script."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from chain.address import encode_address
from chain.keys import DEV_ACCOUNTS, Keypair, dev_keypair
from node.cli import main
from node.commands.key import keystore_dir
from wallet.keystore import Keystore

PASSWORD = "correct horse battery"
CONSOLE_SCRIPT = Path(sys.executable).with_name("statemesh")


@pytest.fixture
def keystore_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private keystore and home; the password comes from the environment; no terminal."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = tmp_path / "keystore"
    monkeypatch.setenv("STATEMESH_KEYSTORE", str(path))
    monkeypatch.setenv("STATEMESH_PASSWORD", PASSWORD)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _seed_forms(seed: bytes) -> list[str]:
    return [seed.hex(), seed.hex().upper(), "0x" + seed.hex(), str(list(seed))]


def test_generate_prints_name_address_and_public_key_but_never_the_seed(
    keystore_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "key", "generate", "--name", "alice")
    assert code == 0
    keypair = Keystore(keystore_path).unlock("alice", PASSWORD)
    assert out == (
        "Generated key 'alice'.\n"
        f"  address:    {keypair.address}\n"
        f"  public key: 0x{keypair.public.hex()}\n"
        f"  file:       {keystore_path / 'alice.json'}\n"
    )
    assert err == "Keep the password safe: without it the key cannot be recovered.\n"
    for form in [*_seed_forms(keypair.seed), PASSWORD]:
        assert form not in out + err
    assert stat.S_IMODE(os.stat(keystore_path / "alice.json").st_mode) == 0o600


def test_generate_json(keystore_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "key", "generate", "--name", "bob", "--json")
    assert code == 0
    public = Keystore(keystore_path).info("bob").public
    assert json.loads(out) == {
        "name": "bob",
        "kind": "keystore",
        "address": encode_address(public),
        "public_key": "0x" + public.hex(),
        "file": str(keystore_path / "bob.json"),
    }


def test_generate_with_password_file_and_keystore_option(
    keystore_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("from the file\nignored\n")
    other = tmp_path / "other-keystore"
    argv = ["key", "generate", "--name", "carol", "--keystore", str(other)]
    code, _, _ = run(capsys, *argv, "--password-file", str(password_file))
    assert code == 0
    assert not keystore_path.exists()
    Keystore(other).unlock("carol", "from the file")


@pytest.mark.parametrize(
    ("argv", "env_password", "message"),
    [
        (
            ["--name", "Alice"],
            PASSWORD,
            "invalid key name 'Alice': use 1 to 64 characters from a-z, 0-9, '_' and '-'",
        ),
        (
            ["--name", "dev-alice"],
            PASSWORD,
            "invalid key name 'dev-alice': names starting with 'dev-' are reserved",
        ),
        (["--name", "alice"], "short", "the password is too short: use at least 8 characters"),
        (
            ["--name", "alice"],
            None,
            "a password is needed but there is no terminal to ask "
            "for it: pass --password-file FILE or set STATEMESH_PASSWORD",
        ),
    ],
    ids=["bad name", "reserved name", "short password", "no password source"],
)
def test_generate_refusals_write_nothing(
    keystore_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env_password: str | None,
    message: str,
) -> None:
    if env_password is None:
        monkeypatch.delenv("STATEMESH_PASSWORD")
    else:
        monkeypatch.setenv("STATEMESH_PASSWORD", env_password)
    assert run(capsys, "key", "generate", *argv) == (1, "", f"error: {message}\n")
    assert not keystore_path.exists()


def test_generate_refuses_an_existing_name_before_asking_a_password(
    keystore_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(capsys, "key", "generate", "--name", "alice")
    before = (keystore_path / "alice.json").read_bytes()
    monkeypatch.delenv("STATEMESH_PASSWORD")
    path = keystore_path / "alice.json"
    assert run(capsys, "key", "generate", "--name", "alice") == (
        1,
        "",
        f"error: key 'alice' already exists ({path})\n",
    )
    assert path.read_bytes() == before


def test_list_shows_keys_and_dev_accounts(
    keystore_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "key", "generate", "--name", "zed")
    run(capsys, "key", "generate", "--name", "amy")
    store = Keystore(keystore_path)
    code, out, _ = run(capsys, "key", "list")
    assert code == 0
    rows = [
        ("amy", store.info("amy").address, "keystore"),
        ("zed", store.info("zed").address, "keystore"),
    ]
    rows += [(f"dev-{n}", dev_keypair(n).address, "development") for n in DEV_ACCOUNTS]
    assert out.splitlines() == [
        f"Keystore {keystore_path}: 2 keys",
        *(f"{name:<11}  {address}  {kind}" for name, address, kind in rows),
        "dev-* are development keys: their seeds are public, never hold value with them",
    ]


def test_list_json(keystore_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "key", "generate", "--name", "amy")
    code, out, _ = run(capsys, "key", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [(k["name"], k["kind"]) for k in listed] == [("amy", "keystore")] + [
        (f"dev-{n}", "development") for n in DEV_ACCOUNTS
    ]
    assert listed[1] == {
        "name": "dev-alice",
        "kind": "development",
        "address": dev_keypair("alice").address,
        "public_key": "0x" + dev_keypair("alice").public.hex(),
    }
    for name in DEV_ACCOUNTS:
        for form in _seed_forms(dev_keypair(name).seed):
            assert form not in out


def test_list_of_a_missing_keystore_creates_nothing(
    keystore_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "key", "list")
    assert (code, out.splitlines()[0]) == (0, f"Keystore {keystore_path}: 0 keys")
    assert not keystore_path.exists()


def test_list_reports_a_corrupt_key_file(
    keystore_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keystore_path.mkdir()
    (keystore_path / "broken.json").write_text("{")
    assert run(capsys, "key", "list") == (
        1,
        "",
        f"error: corrupt key file {keystore_path / 'broken.json'}: not valid JSON (Expecting "
        "property name enclosed in double quotes: line 1 column 2 (char 1))\n",
    )


def test_inspect_keystore_key(keystore_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "key", "generate", "--name", "alice")
    info = Keystore(keystore_path).info("alice")
    code, out, _ = run(capsys, "key", "inspect", "alice")
    assert code == 0
    assert out == (
        "name:       alice\n"
        "kind:       keystore\n"
        f"address:    {info.address}\n"
        f"public key: 0x{info.public.hex()}\n"
        f"file:       {info.path}\n"
    )
    code, out, _ = run(capsys, "key", "inspect", "alice", "--json")
    assert json.loads(out)["file"] == str(info.path)


def test_inspect_dev_account(keystore_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pair = dev_keypair("ferdie")
    code, out, _ = run(capsys, "key", "inspect", "dev-ferdie")
    assert code == 0
    assert out == (
        "name:       dev-ferdie\n"
        "kind:       development (its seed is public: never hold value with it)\n"
        f"address:    {pair.address}\n"
        f"public key: 0x{pair.public.hex()}\n"
    )
    assert pair.seed.hex() not in out


@pytest.mark.parametrize("form", ["address", "hex"])
def test_inspect_address(
    keystore_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    pair = Keypair.from_seed(bytes(range(32)))
    target = pair.address if form == "address" else "0x" + pair.public.hex()
    code, out, _ = run(capsys, "key", "inspect", target)
    assert code == 0
    assert out == f"address:    {pair.address}\naccount id: 0x{pair.public.hex()}\n"
    code, out, _ = run(capsys, "key", "inspect", target, "--json")
    assert json.loads(out) == {"address": pair.address, "account_id": "0x" + pair.public.hex()}


def test_inspect_address_with_a_bad_checksum(
    keystore_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = Keypair.from_seed(bytes(range(32))).address
    mistyped = address[:-1] + ("z" if address[-1] != "z" else "y")
    assert run(capsys, "key", "inspect", mistyped) == (
        1,
        "",
        f"error: {mistyped!r} has a bad checksum (mistyped?)\n",
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nobody", "'nobody' is neither a key in keystore {keystore} nor an address"),
        ("0x1234", "a hex account id is 32 bytes, got 2"),
        (
            "dev-mallory",
            "no development account 'dev-mallory' (known: dev-alice, dev-bob, "
            "dev-charlie, dev-dave, dev-eve, dev-ferdie)",
        ),
    ],
)
def test_inspect_unknown(
    keystore_path: Path, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    expected = f"error: {message.format(keystore=keystore_path)}\n"
    assert run(capsys, "key", "inspect", target) == (1, "", expected)


def test_inspect_corrupt_key_file(keystore_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "key", "generate", "--name", "alice")
    path = keystore_path / "alice.json"
    document = json.loads(path.read_text())
    document["kdf"]["name"] = "argon2id"
    path.write_text(json.dumps(document))
    assert run(capsys, "key", "inspect", "alice") == (
        1,
        "",
        f"error: corrupt key file {path}: unsupported kdf 'argon2id' (expected 'scrypt')\n",
    )


def test_keystore_directory_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keystore_dir(None, {}) == tmp_path / ".statemesh" / "keystore"
    assert keystore_dir(None, {"STATEMESH_KEYSTORE": "~/ks"}) == tmp_path / "ks"
    assert keystore_dir(Path("/opt/ks"), {"STATEMESH_KEYSTORE": "~/ks"}) == Path("/opt/ks")


def test_console_script_generates_a_key(tmp_path: Path) -> None:
    keystore = tmp_path / "keystore"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "STATEMESH_PASSWORD": PASSWORD,
    }
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "key", "generate", "--name", "ops", "--keystore", str(keystore)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (
        0,
        "Keep the password safe: without it the key cannot be recovered.\n",
    )
    keypair = Keystore(keystore).unlock("ops", PASSWORD)
    assert f"  address:    {keypair.address}\n" in result.stdout
    for form in [*_seed_forms(keypair.seed), PASSWORD]:
        assert form not in result.stdout + result.stderr
    assert stat.S_IMODE(os.stat(keystore / "ops.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keystore).st_mode) == 0o700
