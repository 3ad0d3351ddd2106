"""The libp2p host: gossip topics, request/response block sync and peer scoring."""
