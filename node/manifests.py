"""Decoded application manifests, read from chain state once per (application, revision): a
stored revision never changes, so the decoded form can be kept."""

from __future__ import annotations

import logging
from collections import OrderedDict

from chain.runtime import apps
from chain.runtime.manifest import Manifest, ManifestError, decode_manifest
from chain.state import StateReader

log = logging.getLogger("statemesh.manifests")


class ManifestCache:
    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._decoded: OrderedDict[tuple[str, int], Manifest | None] = OrderedDict()

    def get(self, state: StateReader, app: str, revision: int) -> Manifest | None:
        """The manifest of `app` at `revision`, or None if the state has none (or it does not
        decode, which is logged once)."""
        key = (app, revision)
        if key in self._decoded:
            self._decoded.move_to_end(key)
            return self._decoded[key]
        raw = apps.manifest_bytes(state, app, revision)
        manifest: Manifest | None = None
        if raw is not None:
            try:
                manifest = decode_manifest(raw)
            except ManifestError as exc:
                log.error("stored manifest of %s revision %d is unreadable: %s", app, revision, exc)
        if raw is not None:
            self._decoded[key] = manifest
            if len(self._decoded) > self._capacity:
                self._decoded.popitem(last=False)
        return manifest
