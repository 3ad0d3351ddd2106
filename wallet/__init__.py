"""Keys, the encrypted keystore, transaction signing and (later) the threshold signer."""
