"""Proof of time over class groups (chiavdf) and the Time Tower chain of presence proofs."""
