"""The ledger: types, keys, state, runtime, transaction pool, block store and import, and the
seams services see it through (`ledger`, `clock`, `broadcast`). The runtime (`chain.runtime`)
is pure; outside it, `db` talks to LevelDB, `clock` reads the system clock, `vdf` calls
chiavdf and `broadcast` fans out on trio."""
