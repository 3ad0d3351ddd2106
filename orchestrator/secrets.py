"""What a replica reads of its owner's secrets and configurations, put where its containers see
it: the `SecretSource` the node's secret delivery satisfies, and the files the node writes for
`secret` and `configMap` volumes on a tmpfs (never on disk), 0400 unless the manifest says
otherwise, bind-mounted read-only, removed with the container. Secret values are held in memory
only for the time of a container's creation, and never logged, labelled or put in an event."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Protocol

import trio

from chain.address import AddressError, decode_address
from orchestrator.engine import Bind, CreateRequest
from orchestrator.errors import EngineFailure
from orchestrator.pull_auth import auth_for
from orchestrator.spec import EnvVar, FilesVolume, ReplicaKey, ReplicaSpec, SourceKind, SourceRef

log = logging.getLogger("statemesh.orchestrator.secrets")

TMPFS_TYPES = frozenset({"tmpfs", "ramfs"})


class SecretUnavailable(EngineFailure):
    """A secret this node cannot have yet (its delivery failed, too few members answered, the
    assignment is not yet final where members read it): the container waits with this reason
    and is created again after the failure back-off."""

    reason = "SecretUnavailable"


class SecretSource(Protocol):
    """The plaintext of one version of an owner's secret, for one replica assigned to this node.
    Raises SecretUnavailable (with a reason, never a value) when it cannot be had now."""

    async def secret_data(
        self, owner: bytes, name: str, version: int, app: str, replica: int
    ) -> Mapping[str, bytes]: ...


class NoSecretSource:
    """A node without secret delivery: replicas that read a secret wait, saying so."""

    async def secret_data(
        self, owner: bytes, name: str, version: int, app: str, replica: int
    ) -> Mapping[str, bytes]:
        raise SecretUnavailable(f"secret {name!r}: this node has no secret delivery")


def is_tmpfs(path: Path, mounts: str | None = None) -> bool:
    """Whether `path` lies on a filesystem held in memory, by the longest mount point above it
    in /proc/self/mounts (`mounts` given: that text instead)."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return False
    resolved = str(path.resolve())
    best, kind = "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind in TMPFS_TYPES


class FileStore:
    """The folders of secret and configMap files, one per container (its replica, container
    name and digest), under `root`, which must be a tmpfs: files are refused elsewhere."""

    def __init__(self, root: Path, *, mounts: str | None = None) -> None:
        self.root = root
        self._mounts = mounts

    def folder(self, replica: ReplicaKey, container: str, spec_hash: str) -> Path:
        name = hashlib.blake2b(
            f"{replica.chain}/{replica.app}/{replica.replica}/{container}/{spec_hash}".encode(),
            digest_size=12,
        ).hexdigest()
        return self.root / name

    def check(self) -> None:
        if not is_tmpfs(self.root.parent if not self.root.exists() else self.root, self._mounts):
            raise SecretUnavailable(
                f"{self.root} is not on a tmpfs: this node writes no secret file to disk"
            )

    def write(
        self,
        folder: Path,
        volume: FilesVolume,
        values: Mapping[str, bytes],
        owner: tuple[int, int] | None,
    ) -> Path:
        """The volume's files under `folder`, each of its mode; their owner `owner` (uid, gid)
        where the node may change it. Returns the folder to bind at the mount path."""
        self.check()
        # Only the node (and root) may look into the folders of other replicas' files.
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = folder / volume.name
        target.mkdir(parents=True, exist_ok=True, mode=0o755)
        for item in volume.items:
            path = target / item.path
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, values[item.key])
                if owner is not None:
                    try:
                        os.fchown(fd, owner[0], owner[1])
                    except PermissionError:
                        pass  # a node that is not root keeps them its own
                os.fchmod(fd, item.mode)
            finally:
                os.close(fd)
        return target

    def remove(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def keep_only(self, folders: Collection[Path]) -> None:
        """Remove every folder but `folders` (those of containers that exist or are wanted)."""
        if not self.root.is_dir():
            return
        kept = {f.name for f in folders}
        try:
            entries = list(self.root.iterdir())
        except OSError as exc:
            log.warning("cannot list %s: %s", self.root, exc.strerror)
            return
        for entry in entries:
            if entry.name not in kept:
                shutil.rmtree(entry, ignore_errors=True)


def default_file_root(node_id: bytes) -> Path:
    """Where a node keeps its replicas' secret and configMap files: a folder of its own in
    /dev/shm, a tmpfs on Linux hosts (checked before every write)."""
    return Path("/dev/shm/statemesh") / hashlib.blake2b(node_id, digest_size=6).hexdigest()


def owner_bytes(spec: ReplicaSpec) -> bytes:
    try:
        return decode_address(spec.owner)
    except AddressError:
        raise SecretUnavailable(f"the owner {spec.owner!r} is not an address") from None


async def secret_values(
    source: SecretSource, spec: ReplicaSpec, refs: Collection[SourceRef]
) -> dict[SourceRef, Mapping[str, bytes]]:
    owner = owner_bytes(spec)
    found: dict[SourceRef, Mapping[str, bytes]] = {}
    for ref in refs:
        found[ref] = await source.secret_data(owner, ref.name, ref.version, spec.app, spec.replica)
    return found


def _env_value(var: EnvVar, values: Mapping[str, bytes]) -> EnvVar:
    """`var` with its secret's value for its key."""
    if var.source is None:
        return var
    raw = values.get(var.key)
    if raw is None:
        raise SecretUnavailable(f"secret {var.source.name!r} has no key {var.key!r}")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise SecretUnavailable(
            f"key {var.key!r} of secret {var.source.name!r} is not UTF-8 text: mount it as a file"
        ) from None
    if "\x00" in text:
        raise SecretUnavailable(
            f"key {var.key!r} of secret {var.source.name!r} holds a NUL character"
        )
    return dataclasses.replace(var, value=text)


async def project(
    request: CreateRequest,
    spec: ReplicaSpec,
    container: str,
    spec_hash: str,
    source: SecretSource,
    store: FileStore | None,
) -> CreateRequest:
    """`request` with its secret environment values filled in and its files written and bound
    (read-only) at their mount paths. Raises SecretUnavailable, leaving nothing written."""
    mounted = [f for f in spec.files if f.mounted_in(container)]
    refs = {e.source for e in request.env if e.source and e.source.kind is SourceKind.SECRET}
    refs |= {f.source for f in mounted if f.source.kind is SourceKind.SECRET}
    refs |= set(spec.pull_secrets)
    if not refs and not mounted:
        return request
    values = await secret_values(source, spec, sorted(refs, key=lambda r: (r.name, r.version)))
    if spec.pull_secrets:
        # Parsed before anything is written: a malformed one leaves nothing behind.
        login = auth_for(request.image, {r.name: values[r] for r in spec.pull_secrets})
        request = dataclasses.replace(request, registry_auth=login)
    env = tuple(
        _env_value(e, values[e.source])
        if e.source is not None and e.source.kind is SourceKind.SECRET
        else e
        for e in request.env
    )
    binds: list[Bind] = []
    if mounted:
        if store is None:
            raise SecretUnavailable("this node has no folder for secret and config files")
        folder = store.folder(spec.key, container, spec_hash)
        owner = None
        if request.security.run_as_user is not None:
            group = request.security.run_as_group
            owner = (request.security.run_as_user, group if group is not None else -1)

        def write() -> list[Bind]:
            written: list[Bind] = []
            try:
                for volume in mounted:
                    data = (
                        dict(volume.data)
                        if volume.source.kind is SourceKind.CONFIG
                        else values[volume.source]
                    )
                    missing = [i.key for i in volume.items if i.key not in data]
                    if missing:
                        raise SecretUnavailable(
                            f"{volume.source.kind.value} {volume.source.name!r} has no key "
                            f"{missing[0]!r}"
                        )
                    host = store.write(folder, volume, data, owner)
                    written.append(Bind(str(host), volume.mount_path))
            except OSError as exc:
                store.remove(folder)
                raise SecretUnavailable(
                    f"cannot write the files of {container}: {exc.strerror}"
                ) from None
            except BaseException:
                store.remove(folder)
                raise
            return written

        binds = await trio.to_thread.run_sync(write)
    return dataclasses.replace(request, env=env, binds=(*request.binds, *binds))
