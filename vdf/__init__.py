"""Proof of time over class groups (chiavdf), the Time Tower chain of presence proofs, the
prover in worker processes, and the presence service that registers the node and grows its
tower (`vdf.presence`)."""
