"""What an application reads of its owner's configurations and secrets, as `apps` checks it: at
`apps.create` and `apps.update` each must exist with every key the manifest names (or the
manifest is refused and nothing is stored), and the reference index (`references`) follows
each stored manifest and each deletion."""

from __future__ import annotations

from chain.runtime import configs, references, secrets
from chain.runtime.manifest import ApplicationSpec
from chain.runtime.manifest import references as manifest_references
from chain.state import Overlay, StateReader


def refused_reads(state: StateReader, owner: bytes, spec: ApplicationSpec) -> str | None:
    """Why `owner` may not deploy `spec` for what it reads, or None."""
    found = manifest_references(spec)
    return configs.missing(state, owner, found.configs) or secrets.missing(
        state, owner, found.secrets
    )


def follow_reads(state: Overlay, owner: bytes, app: str, spec: ApplicationSpec | None) -> None:
    """`app` of `owner` now reads what `spec` names; None: the application is gone."""
    references.follow(state, owner, app, spec)
