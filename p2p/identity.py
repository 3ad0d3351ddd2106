"""Node identity: the Ed25519 node key, where it is kept on disk, the peer id derived from it."""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NewType

from p2p.errors import InvalidNodeKey, InvalidPeerId

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair
    from libp2p.peer.id import ID

# libp2p is imported where a key pair or a peer id is made: importing it takes most of a second,
# and the client commands, which read the dev chain's spec and so this module, never need it.

PeerId = NewType("PeerId", str)
"""A peer id in its base58 text form (`12D3KooW...` for Ed25519 keys)."""


def libp2p_id(peer_id: PeerId) -> ID:
    from libp2p.peer.id import ID

    try:
        return ID.from_base58(peer_id)
    except ValueError:
        raise InvalidPeerId(f"{peer_id!r} is not a base58 peer id") from None


SEED_BYTES = 32
NODE_KEY_FILE = Path("network") / "secret_ed25519"
"""Where a node keeps its key under its base path, as Substrate does."""


@dataclass(frozen=True, slots=True)
class NodeKey:
    """An Ed25519 node key. The seed never appears in `repr`, `str` or error messages."""

    seed: bytes = field(repr=False)
    """32 secret bytes; the key pair and peer id derive from them."""

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_BYTES:
            raise InvalidNodeKey(f"an Ed25519 node key seed is {SEED_BYTES} bytes")

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(secrets.token_bytes(SEED_BYTES))

    @classmethod
    def from_hex(cls, text: str) -> NodeKey:
        """Parse `--node-key HEX`: 64 hex characters, with or without a `0x` prefix."""
        digits = text.strip().removeprefix("0x")
        if len(digits) != 2 * SEED_BYTES:
            raise InvalidNodeKey(
                f"--node-key must be {2 * SEED_BYTES} hex characters (a {SEED_BYTES}-byte seed), "
                f"got {len(digits)} characters"
            )
        try:
            return cls(bytes.fromhex(digits))
        except ValueError:
            raise InvalidNodeKey("--node-key must be hexadecimal") from None

    def keypair(self) -> KeyPair:
        from libp2p.crypto.ed25519 import create_new_key_pair

        try:
            return create_new_key_pair(self.seed)
        except ValueError:
            # Only reachable for seeds whose public key is not a valid curve point.
            raise InvalidNodeKey("the node key seed does not give a usable Ed25519 key") from None

    @property
    def libp2p_id(self) -> ID:
        from libp2p.peer.id import ID

        return ID.from_pubkey(self.keypair().public_key)

    @property
    def peer_id(self) -> PeerId:
        return PeerId(self.libp2p_id.to_base58())

    def __str__(self) -> str:
        return f"NodeKey({self.peer_id})"


def read_node_key_file(path: Path) -> NodeKey:
    """Read a key file holding the 32 raw seed bytes or their 64-character hex form."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InvalidNodeKey(f"cannot read node key file {path}: {error.strerror}") from None
    if len(raw) == SEED_BYTES:
        return NodeKey(raw)
    text = raw.strip()
    if len(text) in (2 * SEED_BYTES, 2 * SEED_BYTES + 2):
        try:
            return NodeKey.from_hex(text.decode("ascii"))
        except (UnicodeDecodeError, InvalidNodeKey):
            pass
    raise InvalidNodeKey(
        f"node key file {path} holds {len(raw)} bytes; expected {SEED_BYTES} raw bytes "
        f"or {2 * SEED_BYTES} hex characters"
    )


def write_node_key_file(path: Path, key: NodeKey) -> None:
    """Create `path` (mode 0600) holding the raw seed, atomically and never overwriting.

    The seed goes to a private temporary file first and is then hard-linked into place, so a
    crash leaves either no key file or a complete one, and a concurrent writer loses cleanly.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(key.seed)
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def load_or_create_node_key(base_path: Path) -> NodeKey:
    """The key in `<base>/network/secret_ed25519`, created with a fresh seed on first start."""
    path = base_path / NODE_KEY_FILE
    if not path.exists():
        try:
            write_node_key_file(path, NodeKey.generate())
        except FileExistsError:
            pass  # another process created it first: use theirs
    return read_node_key_file(path)


def resolve_node_key(
    base_path: Path, *, node_key_hex: str | None = None, node_key_file: Path | None = None
) -> NodeKey:
    """`--node-key` wins, then `--node-key-file`, then the key file under the base path."""
    if node_key_hex is not None:
        return NodeKey.from_hex(node_key_hex)
    if node_key_file is not None:
        return read_node_key_file(node_key_file)
    return load_or_create_node_key(base_path)
