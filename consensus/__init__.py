"""Consensus: the rules (Aura slot authoring and header checks, fork choice, the finality gadget,
block proposal) and the services that run them on a node: the chain service (the one writer of
the chain), finality, block sync, gossip of blocks, transactions and votes, and equivocation
evidence. Services that only read the chain and submit take a `chain.ledger.Ledger`; those that
import blocks or finalize them take the chain service. Errors derive from `ConsensusError`."""
