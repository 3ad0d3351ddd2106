"""The `statemesh` binary: CLI, configuration, service wiring under one trio nursery, JSON-RPC."""
