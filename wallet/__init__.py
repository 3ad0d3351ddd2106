"""Keys at rest and the platform wallet: the password-encrypted keystore, FROST threshold
signatures (`wallet.frost`), and the wallet committee that runs key generation and signing
among nodes (`committee`, `member`, `messages`, `shares`). Account keys themselves are
`chain.keys`."""
