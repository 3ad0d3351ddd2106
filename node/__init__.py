"""The `statemesh` binary: the CLI, the JSON-RPC server, and the wiring of every package's
services under one trio nursery (`runner`)."""
