"""The libp2p host: gossip topics with validators, framed request/response protocols, peer
scores and bans, bootnodes. It carries bytes: what they mean is its users' business."""
