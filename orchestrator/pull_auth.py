"""Registry credentials of a tenant's pull: read from the owner's `imagePullSecrets` (Kubernetes'
kubernetes.io/dockerconfigjson format, `{"auths": {"registry:port": {"username": ...,
"password": ...} or {"auth": base64("user:pass")}}}`), matched to an image by the registry
host[:port] of its reference, and handed to the engine for that one pull only. A credential is
never logged, labelled, put in an event or an error message: errors name the secret and the
entry, never a value."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.errors import EngineFailure

MAX_DOCKER_CONFIG_BYTES = 64 * 1024
"""A .dockerconfigjson larger than this is refused before it is parsed."""
MAX_REGISTRIES = 64
"""The most registries one .dockerconfigjson may name."""
DOCKER_HUB = "docker.io"
"""How Docker Hub's entries are keyed here, whatever alias the file uses."""
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


class BadPullSecret(EngineFailure):
    """An `imagePullSecrets` secret this node cannot read credentials from: the container waits
    with this reason (it names the secret and what is wrong, never a value)."""

    reason = "InvalidImagePullSecret"


@dataclass(frozen=True, slots=True)
class RegistryAuth:
    """One registry's login. Its repr shows only the registry."""

    registry: str
    username: str = field(repr=False)
    password: str = field(repr=False)

    def auth_config(self) -> dict[str, str]:
        """What the engine API takes as `X-Registry-Auth` (Docker's AuthConfig)."""
        return {
            "username": self.username,
            "password": self.password,
            "serveraddress": self.registry,
        }


def registry_key(name: str) -> str:
    """A registry as the keys of `auths` name it (`https://host:port/v1/`, `host:port`), reduced
    to its lower-case host[:port]; Docker Hub's aliases are all `DOCKER_HUB`."""
    key = name.strip()
    for scheme in ("https://", "http://"):
        if key.lower().startswith(scheme):
            key = key[len(scheme) :]
            break
    key = key.split("/", 1)[0].lower()
    return DOCKER_HUB if key in _HUB_ALIASES else key


def image_registry(image: str) -> str:
    """The lower-case host[:port] of the registry `image` is pulled from, per Docker's reference
    rules (the first path component is a registry when it has a '.' or ':', is 'localhost' or
    has an upper-case letter); `DOCKER_HUB` otherwise."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return registry_key(first)
    return DOCKER_HUB


def _text(value: object, secret: str, registry: str, what: str) -> str:
    if not isinstance(value, str):
        raise BadPullSecret(f"imagePullSecret {secret!r}: the {what} of {registry!r} is not text")
    if not value or "\x00" in value:
        raise BadPullSecret(f"imagePullSecret {secret!r}: the {what} of {registry!r} is empty")
    return value


def _entry(secret: str, registry: str, raw: object) -> RegistryAuth:
    if not isinstance(raw, dict):
        raise BadPullSecret(f"imagePullSecret {secret!r}: the entry of {registry!r} is no object")
    if "auth" in raw:
        encoded = _text(raw["auth"], secret, registry, "auth")
        try:
            decoded = base64.b64decode(encoded.encode("ascii"), validate=True).decode()
        except (UnicodeError, binascii.Error):
            raise BadPullSecret(
                f"imagePullSecret {secret!r}: the auth of {registry!r} is not base64 of "
                "'user:password' text"
            ) from None
        username, colon, password = decoded.partition(":")
        if not colon:
            raise BadPullSecret(
                f"imagePullSecret {secret!r}: the auth of {registry!r} has no ':' between the "
                "user and the password"
            )
        return RegistryAuth(
            registry_key(registry),
            _text(username, secret, registry, "user"),
            _text(password, secret, registry, "password"),
        )
    if "username" not in raw or "password" not in raw:
        raise BadPullSecret(
            f"imagePullSecret {secret!r}: the entry of {registry!r} has neither an auth nor a "
            "username and a password"
        )
    return RegistryAuth(
        registry_key(registry),
        _text(raw["username"], secret, registry, "username"),
        _text(raw["password"], secret, registry, "password"),
    )


def parse_docker_config(secret: str, data: bytes) -> dict[str, RegistryAuth]:
    """The logins of a .dockerconfigjson (the value of the key of the secret named `secret`), by
    registry host[:port]. `BadPullSecret` for anything else, naming what is wrong."""
    if len(data) > MAX_DOCKER_CONFIG_BYTES:
        raise BadPullSecret(
            f"imagePullSecret {secret!r}: its .dockerconfigjson is larger than "
            f"{MAX_DOCKER_CONFIG_BYTES} bytes"
        )
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadPullSecret(
            f"imagePullSecret {secret!r}: its .dockerconfigjson is not UTF-8"
        ) from None
    except (ValueError, RecursionError):
        # The decoder's message may quote the text, a credential: only where it stopped.
        raise BadPullSecret(
            f"imagePullSecret {secret!r}: its .dockerconfigjson is not JSON"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("auths"), dict):
        raise BadPullSecret(
            f'imagePullSecret {secret!r}: its .dockerconfigjson has no "auths" object'
        )
    auths: dict[str, object] = document["auths"]
    if len(auths) > MAX_REGISTRIES:
        raise BadPullSecret(
            f"imagePullSecret {secret!r}: its .dockerconfigjson names more than "
            f"{MAX_REGISTRIES} registries"
        )
    found: dict[str, RegistryAuth] = {}
    for registry, raw in auths.items():
        login = _entry(secret, registry, raw)
        found.setdefault(login.registry, login)
    return found


def auth_for(image: str, secrets: Mapping[str, Mapping[str, bytes]]) -> RegistryAuth | None:
    """The login for `image`'s registry from the `imagePullSecrets` (name -> its keys and values,
    in the manifest's order: the first that has one wins, as in Kubernetes), or None for an
    anonymous pull. Every secret is parsed, so a malformed one is reported even when another
    has the login."""
    parsed = [parse_docker_config(name, _config_of(name, data)) for name, data in secrets.items()]
    registry = image_registry(image)
    for logins in parsed:
        if registry in logins:
            return logins[registry]
    return None


def _config_of(name: str, data: Mapping[str, bytes]) -> bytes:
    value = data.get(".dockerconfigjson")
    if value is None:
        raise BadPullSecret(f"imagePullSecret {name!r} has no key '.dockerconfigjson'")
    return value
