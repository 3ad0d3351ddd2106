"""Application manifests read back from the chain's state, kept by the digest of their stored
bytes (an application deleted and created again under its name starts again at revision 1 with
other bytes). The stored form was checked once, when the chain accepted it: reading it back
builds the typed manifest without checking it again (`read_stored_manifest`)."""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict

from chain.runtime import apps
from chain.runtime.manifest import Manifest, ManifestError, read_stored_manifest
from chain.state import StateReader

log = logging.getLogger("statemesh.manifests")


class ManifestCache:
    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._decoded: OrderedDict[bytes, Manifest | None] = OrderedDict()

    def get(self, state: StateReader, app: str, revision: int) -> Manifest | None:
        """The manifest of `app` at `revision`, or None if the state has none (or what it has is
        not a stored manifest, which is logged once)."""
        raw = apps.manifest_bytes(state, app, revision)
        if raw is None:
            return None
        key = hashlib.blake2b(raw, digest_size=16).digest()
        if key in self._decoded:
            self._decoded.move_to_end(key)
            return self._decoded[key]
        manifest: Manifest | None = None
        try:
            manifest = read_stored_manifest(raw)
        except ManifestError as exc:
            log.error("stored manifest of %s revision %d is unreadable: %s", app, revision, exc)
        self._decoded[key] = manifest
        if len(self._decoded) > self._capacity:
            self._decoded.popitem(last=False)
        return manifest
