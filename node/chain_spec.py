"""Which chain a node runs: `dev` (built in), or a chain spec file."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from chain.genesis import ChainSpec, GenesisWallet, dev_spec, load_spec
from chain.keys import DEV_ACCOUNTS, Keypair, dev_keypair
from chain.primitives import AccountId
from p2p.identity import NodeKey
from wallet.frost.dealer import trusted_dealer_keygen
from wallet.frost.group import Scalar
from wallet.shares import StoredShare

DEV_AUTHORITY = "alice"
DEV_OPERATOR = "ferdie"
"""The account a `--dev` node registers itself for: not alice, so that the proofs it submits
every block never race a user's own transactions from dev-alice."""
DEV_WALLET_LOGIN = "alice"
"""The login key of the dev chain's platform wallet: dev-alice deploys applications it pays."""
DEV_WALLET_ENDOWMENT = 10**18
"""What the dev wallet holds at genesis: a million periods of a small application."""

_DEV_DOMAIN = b"statemesh/dev/"


def _dev_secret(name: bytes, size: int) -> bytes:
    return hashlib.blake2b(_DEV_DOMAIN + name, digest_size=size).digest()


DEV_NODE_KEY = NodeKey(_dev_secret(b"node-key", 32))
"""The node key of a `--dev` node that names none: well known, like the dev accounts (never use
it on a live chain), so that the dev chain's genesis can name the node its dev wallet's
committee is."""


def dev_node_id() -> AccountId:
    return AccountId(Keypair.from_seed(DEV_NODE_KEY.seed).public)


def dev_wallet_share() -> StoredShare:
    """The dev wallet's 1-of-1 share, which a `--dev` node keeps (its secret is public)."""
    secret = Scalar.reduce(_dev_secret(b"wallet", 64))
    dealt = trusted_dealer_keygen(1, 1, secret=secret)
    (key_package,) = dealt.key_packages.values()
    return StoredShare(key_package, dealt.public_key_package)


def dev_wallet() -> GenesisWallet:
    """The dev chain's platform wallet: the `--dev` node is its committee (1 of 1)."""
    group_key = dev_wallet_share().public_package.group_public_key.encoding
    login = dev_keypair(DEV_WALLET_LOGIN).public
    return GenesisWallet(AccountId(group_key), (dev_node_id(),), 1, AccountId(login))


def development_spec() -> ChainSpec:
    """One authority (dev-alice), every well-known development account endowed, and a funded
    platform wallet (`dev_wallet`) that pays for what dev-alice deploys with `--wallet`.

    Its genesis timestamp stays 0 (the default): a dev node restarted on its base path must find
    the same genesis hash in its database, so the spec cannot hold the time it is built. Slots
    since 1970 open no hole here, since the one authority's blocks are final as they are made,
    and a dev chain is nobody else's."""
    spec = dev_spec(
        authorities=(dev_keypair(DEV_AUTHORITY).public,),
        endowed=tuple(dev_keypair(name).public for name in DEV_ACCOUNTS),
    )
    wallet = dev_wallet()
    # One node: its platform wallets' committee is that node alone (1 of 1), so that a dev
    # chain creates wallets and pays from them.
    return replace(
        spec,
        runtime=replace(spec.runtime, wallet_committee_size=1, wallet_threshold=1),
        balances=(*spec.balances, (wallet.address, DEV_WALLET_ENDOWMENT)),
        wallets=(wallet,),
    )


def resolve_spec(chain: str) -> ChainSpec:
    """`dev` names the built-in development chain; anything else is a path to a chain spec."""
    if chain == "dev":
        return development_spec()
    return load_spec(Path(chain))
