"""Which chain a node runs: `dev` (built in), or a chain spec file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from chain.genesis import ChainSpec, dev_spec, load_spec
from chain.keys import DEV_ACCOUNTS, dev_keypair

DEV_AUTHORITY = "alice"
DEV_OPERATOR = "ferdie"
"""The account a `--dev` node registers itself for: not alice, so that the proofs it submits
every block never race a user's own transactions from dev-alice."""


def development_spec() -> ChainSpec:
    """One authority (dev-alice) and every well-known development account endowed.

    Its genesis timestamp stays 0 (the default): a dev node restarted on its base path must find
    the same genesis hash in its database, so the spec cannot hold the time it is built. Slots
    since 1970 open no hole here, since the one authority's blocks are final as they are made,
    and a dev chain is nobody else's."""
    spec = dev_spec(
        authorities=(dev_keypair(DEV_AUTHORITY).public,),
        endowed=tuple(dev_keypair(name).public for name in DEV_ACCOUNTS),
    )
    # One node: its platform wallets' committee is that node alone (1 of 1), so that a dev
    # chain creates wallets and pays from them.
    return replace(spec, runtime=replace(spec.runtime, wallet_committee_size=1, wallet_threshold=1))


def resolve_spec(chain: str) -> ChainSpec:
    """`dev` names the built-in development chain; anything else is a path to a chain spec."""
    if chain == "dev":
        return development_spec()
    return load_spec(Path(chain))
