"""The ledger: types, state, runtime, transaction pool and block import. Synchronous and I/O-free
except for the database adapter in `chain.db`."""
