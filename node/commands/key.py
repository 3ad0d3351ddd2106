"""`statemesh key generate|list|inspect`: the user's view of the encrypted keystore and of
the development accounts, and the `--keystore` option other commands share."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from chain.address import AddressError, decode_address, encode_address
from chain.keys import DEV_ACCOUNTS, dev_keypair
from chain.primitives import AccountId
from node.commands.password import PasswordReader, add_password_argument
from node.errors import CliError
from wallet.keystore import (
    DEV_PREFIX,
    KeyInfo,
    KeyNotFound,
    Keystore,
    KeystoreError,
    dev_signer,
    validate_key_name,
)

KEYSTORE_ENV = "STATEMESH_KEYSTORE"
DEFAULT_KEYSTORE = Path("~/.statemesh/keystore")
KIND_KEYSTORE = "keystore"
KIND_DEV = "development"
_DEV_NOTE = "its seed is public: never hold value with it"

Record = dict[str, str]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    key = subparsers.add_parser(
        "key",
        help="manage account keys",
        description="Manage account keys in the encrypted keystore.",
    )
    commands = key.add_subparsers(dest="key_command", required=True, metavar="SUBCOMMAND")

    generate = commands.add_parser(
        "generate",
        help="create a new key, sealed with a password",
        description="Create a new Ed25519 key and store it encrypted under a name. "
        "The seed is never printed.",
    )
    generate.add_argument("--name", required=True, help="the key's name: a-z, 0-9, '_' and '-'")
    add_keystore_argument(generate)
    add_password_argument(generate)
    _add_json_argument(generate)
    generate.set_defaults(handler=generate_key)

    listing = commands.add_parser(
        "list",
        help="list the keystore's keys and the development accounts",
        description="List every key by name and address; no password is needed.",
    )
    add_keystore_argument(listing)
    _add_json_argument(listing)
    listing.set_defaults(handler=list_keys)

    inspect = commands.add_parser(
        "inspect",
        help="show a key, or decode an address",
        description="Show a keystore key or development account (dev-alice, ...), "
        "or decode an address or 0x-prefixed account id.",
    )
    inspect.add_argument("target", metavar="NAME-OR-ADDRESS")
    add_keystore_argument(inspect)
    _add_json_argument(inspect)
    inspect.set_defaults(handler=inspect_key)


def add_keystore_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keystore",
        type=Path,
        metavar="DIR",
        help=f"the keystore directory (default: ${KEYSTORE_ENV}, else {DEFAULT_KEYSTORE})",
    )


def keystore_dir(option: Path | None, environ: Mapping[str, str]) -> Path:
    """`--keystore`, else `$STATEMESH_KEYSTORE`, else `~/.statemesh/keystore`."""
    if option is not None:
        return option.expanduser()
    configured = environ.get(KEYSTORE_ENV)
    if configured:
        return Path(configured).expanduser()
    return DEFAULT_KEYSTORE.expanduser()


def keystore_from_args(args: argparse.Namespace) -> Keystore:
    return Keystore(keystore_dir(args.keystore, os.environ))


@contextmanager
def keystore_errors() -> Iterator[None]:
    """Reports keystore and address errors to the user with their own message (exit 1)."""
    try:
        yield
    except (KeystoreError, AddressError) as exc:
        raise CliError(str(exc)) from exc


def generate_key(args: argparse.Namespace) -> int:
    keystore = keystore_from_args(args)
    with keystore_errors():
        # Refuse a bad or taken name before asking for a password that would be wasted.
        keystore.check_available(args.name)
        password = PasswordReader.from_args(args).new(args.name)
        info = keystore.create(args.name, password)
    record = _keystore_record(info)
    if args.json:
        _print_json(record)
    else:
        print(f"Generated key {info.name!r}.")
        _print_fields(record, indent="  ", skip=("name", "kind"))
    print("Keep the password safe: without it the key cannot be recovered.", file=sys.stderr)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    keystore = keystore_from_args(args)
    with keystore_errors():
        records = [_keystore_record(info) for info in keystore.list()]
    records += [_dev_record(DEV_PREFIX + name) for name in DEV_ACCOUNTS]
    if args.json:
        _print_json(records)
        return 0
    count = len(records) - len(DEV_ACCOUNTS)
    print(f"Keystore {keystore.path}: {count} key{'' if count == 1 else 's'}")
    width = max(len(r["name"]) for r in records)
    for record in records:
        print(f"{record['name']:<{width}}  {record['address']}  {record['kind']}")
    print(f"{DEV_PREFIX}* are development keys: their seeds are public, never hold value with them")
    return 0


def inspect_key(args: argparse.Namespace) -> int:
    keystore = keystore_from_args(args)
    with keystore_errors():
        record = _inspect(args.target.strip(), keystore)
    if args.json:
        _print_json(record)
    else:
        _print_fields(record, indent="")
    return 0


def _inspect(target: str, keystore: Keystore) -> Record:
    """A development account, a keystore key, or else an address.

    Key names are lowercase and addresses almost surely are not, so a name-shaped target
    that is not in the keystore is decoded as an address only as a last resort."""
    if target.startswith(DEV_PREFIX):
        dev_signer(target)
        return _dev_record(target)
    if target.startswith("0x"):
        return _address_record(decode_address(target))
    try:
        validate_key_name(target)
    except KeystoreError:
        return _address_record(decode_address(target))
    if keystore.has(target):
        return _keystore_record(keystore.info(target))
    try:
        return _address_record(decode_address(target))
    except AddressError:
        raise KeyNotFound(
            f"{target!r} is neither a key in keystore {keystore.path} nor an address"
        ) from None


def _keystore_record(info: KeyInfo) -> Record:
    return {
        "name": info.name,
        "kind": KIND_KEYSTORE,
        "address": info.address,
        "public_key": "0x" + info.public.hex(),
        "file": str(info.path),
    }


def _dev_record(name: str) -> Record:
    keypair = dev_keypair(name.removeprefix(DEV_PREFIX))
    return {
        "name": name,
        "kind": KIND_DEV,
        "address": keypair.address,
        "public_key": "0x" + keypair.public.hex(),
    }


def _address_record(account: AccountId) -> Record:
    return {"address": encode_address(account), "account_id": "0x" + account.hex()}


_LABELS = {
    "name": "name",
    "kind": "kind",
    "address": "address",
    "public_key": "public key",
    "account_id": "account id",
    "file": "file",
}


def _print_fields(record: Record, *, indent: str, skip: tuple[str, ...] = ()) -> None:
    shown = [key for key in record if key not in skip]
    width = max(len(_LABELS[key]) for key in shown) + 1
    for key in shown:
        value = record[key]
        if key == "kind" and value == KIND_DEV:
            value = f"{value} ({_DEV_NOTE})"
        print(f"{indent}{_LABELS[key] + ':':<{width}} {value}")


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def _add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON value")
