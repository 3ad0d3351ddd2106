"""Harnesses the tests and the benchmarks share: real node processes on loopback, a private
Docker engine and registry, p2p node processes, hostile peers and RPC clients, a built chain.
Test code (`tests/`) and benchmarks (`bench/`) import these; the project's packages never do."""
