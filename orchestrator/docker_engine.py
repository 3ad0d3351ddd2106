"""The one adapter to a real Docker engine. The `docker` SDK blocks, so every call to it runs in
a worker thread here, and every SDK error is translated into the orchestrator's error tree."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import socket
import threading
from collections.abc import AsyncGenerator, Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import docker
import docker.errors
import docker.types
import docker.utils
import requests
import trio

from orchestrator import labels
from orchestrator.addresses import private_reason
from orchestrator.disk import Unmeasurable, directory_bytes
from orchestrator.engine import (
    ContainerInfo,
    ContainerState,
    ContainerStats,
    CreateRequest,
    DiskUsage,
    EngineEvent,
    EngineInfo,
    ExecResult,
    NetworkInfo,
    RunState,
    VolumeInfo,
)
from orchestrator.errors import (
    ContainerNotFound,
    CreateFailed,
    EngineFailure,
    EngineUnavailable,
    ImageTooLarge,
    ImageUnavailable,
    OrchestratorError,
    StartFailed,
)
from orchestrator.image_gc import ImageUsage
from orchestrator.pull_auth import RegistryAuth
from orchestrator.registry import registry_host, resolve_host

if TYPE_CHECKING:
    # trio-typing's stubs (a libp2p dependency) shadow trio's own types and keep TaskStatus.
    from trio_typing import TaskStatus


T = TypeVar("T")

log = logging.getLogger("statemesh.docker")

# Only the events that can change what the controller should do; probes' exec events are not.
_WATCHED_ACTIONS = ("start", "die", "oom", "destroy")
# Bounds every container's json-file log so a chatty workload cannot fill the node's disk.
_LOG_CONFIG = {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}}
_NEVER = "0001-01-01T00:00:00Z"
MAX_PARTIAL_LINE_BYTES = 64 * 1024
"""A followed line longer than this is passed on in pieces, so one cannot grow without bound."""
PULL_TIMEOUT_SECONDS = 600.0
"""A pull that takes longer fails, and the engine is made to cancel it (the SDK sets no timeout
on pulls: a registry that stalls would hold a thread, and a slot of the pulls, for ever)."""
MAX_CONCURRENT_PULLS = 4
_QUOTA_REFUSED = "supported only for overlay over xfs"
"""What overlay2 says when asked for `--storage-opt size` on a data root that is not xfs mounted
with `pquota` ("--storage-opt is supported only for overlay over xfs with 'pquota' mount
option")."""
NO_CREDENTIALS: dict[str, str] = {}
"""The auth every pull sends. The SDK sends the client's stored logins (the operator's
`~/.docker/config.json`) when `auth_config` is None; any other value, this empty one too, is
sent instead of them (`X-Registry-Auth: e30=`, an anonymous pull)."""


def _timestamp(value: str | None) -> float | None:
    """The engine's RFC 3339 times (nanoseconds, 'Z') as Unix seconds; its zero time is None."""
    if not value or value.startswith("0001-01-01"):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _label_filter(labels: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(labels.items())]


def _explanation(error: docker.errors.APIError) -> str:
    return str(error.explanation or error)


def _quota_filesystem(info: Mapping[str, Any]) -> str | None:
    """None if the engine's storage driver can cap a writable layer's size (overlay2 over xfs,
    which then needs `pquota` too: only a create finds that out), else why it cannot."""
    driver = str(info.get("Driver", ""))
    status = {str(row[0]): str(row[1]) for row in info.get("DriverStatus") or [] if len(row) == 2}
    backing = status.get("Backing Filesystem", "")
    if driver == "overlay2" and backing == "xfs":
        return None
    return f"its storage driver is {driver or 'unknown'} on {backing or 'an unknown filesystem'}"


def is_digest_reference(image: str) -> bool:
    """`NAME@sha256:...`: names content, not a tag that may move."""
    return "@" in image


def _pull_reference(image: str) -> tuple[str, str]:
    """The repository of `image` and the reference its registry is asked about: `NAME:TAG`
    (`latest` if none) or `NAME@DIGEST`."""
    repository, tag = docker.utils.parse_repository_tag(image)
    if is_digest_reference(image):
        return repository, f"{repository}@{tag}"
    return repository, f"{repository}:{tag or 'latest'}"


class _PullFailed(OrchestratorError):
    """The engine reported an error inside a pull's progress stream."""


class _PullTooLarge(OrchestratorError):
    """The layers a pull downloads add up to more than the node's cap."""

    def __init__(self, size_bytes: int, cap_bytes: int) -> None:
        super().__init__(size_bytes, cap_bytes)
        self.size_bytes = size_bytes
        self.cap_bytes = cap_bytes


@dataclasses.dataclass(frozen=True, slots=True)
class _Pulled:
    image_id: str
    reference: str
    """`NAME@sha256:...`: what was pulled, and what a container is created from."""


class PullClient(Protocol):
    """An engine client for one pull, whose connections another thread can shut down."""

    api: Any
    """The SDK's low-level client (`docker.APIClient`)."""

    def abort(self) -> None:
        """Shuts every connection of the client down, now and as soon as one is opened: a call
        blocked on one returns at once, and the engine cancels what it was doing for it."""
        ...

    def close(self) -> None: ...


class _EnginePullClient:
    """A `docker.APIClient` of its own for one pull, whose sockets it keeps so that the trio side
    can shut them down. Closing a response from another thread does not wake a read blocked on
    it, and before the engine has the manifest there is no response yet (it answers nothing
    until then); shutting the socket down does wake the read, and the engine, seeing the
    connection closed, cancels the pull: its downloads stop and an unfinished pull leaves no
    image (measured with dockerd 20.10)."""

    def __init__(self, host: str, version: str, timeout: float | None) -> None:
        self.api = docker.APIClient(base_url=host, version=version, timeout=timeout)
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._aborted = False
        for adapter in self.api.adapters.values():
            self._track(adapter)

    def _track(self, adapter: Any) -> None:
        """Every connection the adapter's pools make is recorded once connected (requests looks
        a pool up through `get_connection_with_tls_context`, docker-py's adapters too)."""
        get_pool = adapter.get_connection_with_tls_context

        def tracked_pool(*args: Any, **kwargs: Any) -> Any:
            pool = get_pool(*args, **kwargs)
            if not getattr(pool, "_statemesh_tracked", False):
                new_connection = pool._new_conn

                def tracked_connection() -> Any:
                    connection = new_connection()
                    self._watch(connection)
                    return connection

                pool._new_conn = tracked_connection
                pool._statemesh_tracked = True
            return pool

        adapter.get_connection_with_tls_context = tracked_pool

    def _watch(self, connection: Any) -> None:
        connect = connection.connect

        def tracked_connect() -> None:
            connect()
            with self._lock:
                self._connections.append(connection)
                if self._aborted:
                    _shut(connection)

        connection.connect = tracked_connect

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            for connection in self._connections:
                _shut(connection)

    def close(self) -> None:
        self.api.close()


def _shut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _downloaded_bytes(layers: dict[str, int], progress: Mapping[str, Any]) -> int:
    """Adds a progress message of a pull to `layers` (each layer's size, as far as known) and
    returns their sum. The engine reports a layer's size (its compressed blob's, from the
    manifest) with its first bytes ("Downloading", `progressDetail.total`); what it has read
    counts too, in case the registry sends more than its manifest said."""
    if progress.get("status") == "Downloading":
        detail = progress.get("progressDetail") or {}
        layer = str(progress.get("id", ""))
        seen = max(int(detail.get("total") or 0), int(detail.get("current") or 0))
        layers[layer] = max(layers.get(layer, 0), seen)
    return sum(layers.values())


class DockerAdapter:
    """A `ContainerEngine` over one Docker engine, reached through the `docker` SDK.

    Images of tenants are pulled for them, as Kubernetes' `AlwaysPullImages` admission does:
    every create of a replica's container pulls its image first, whatever the spec's pull
    policy says, so a tenant never runs an image that is only in the engine's store (the
    operator's, or another tenant's private one) and always gets the registry's current
    content. A tag is resolved to its digest by the registry and `NAME@sha256:...` is pulled
    and run: a tenant's pull never creates, moves or removes a tag of the engine's store (the
    operator's). Pulls are anonymous (`NO_CREDENTIALS`), never with the operator's logins, or
    carry the tenant's own login to the image's registry (`CreateRequest.registry_auth`, from its
    `imagePullSecrets`) for that pull only; a digest pulled with a login is pulled again (with
    the login of whoever names it) at every create. Pulls are
    only from public registries unless `allow_private_registries`. An `image@sha256:` reference
    is taken from the store without a pull only if this adapter pulled that digest for an app.
    Images the node builds itself (`ensure_local_image`: the pod sandbox) are the only ones used
    without a pull, and are never pulled over. A pull whose layers add up to more than
    `max_image_bytes` is cancelled as soon as the engine reports them, and an image larger than
    that once pulled is removed again (`ImageTooLarge`).

    A container with a disk limit (`ephemeral-storage`) gets a hard quota of that size on its
    writable layer where the engine has them (overlay2 over xfs mounted with `pquota`:
    `--storage-opt size=`), so a write past the limit fails with ENOSPC; the first such create
    finds out whether it does (`disk_quotas`), and a create never fails for want of quotas. The
    controller measures and evicts on top, quota or not."""

    def __init__(
        self,
        client: docker.DockerClient,
        host: str,
        *,
        max_threads: int = 16,
        max_log_follows: int = 64,
        max_image_bytes: int | None = None,
        pull_timeout_seconds: float = PULL_TIMEOUT_SECONDS,
        image_usage: ImageUsage | None = None,
        allow_private_registries: bool = False,
        pull_client: Callable[[], PullClient] | None = None,
    ) -> None:
        self._client = client
        self._api = client.api
        self.host = host
        # Short calls share one limiter; exec and the event stream, which may block for long,
        # get their own, so a hung probe command cannot starve the reconcile loop of threads.
        self._limiter = trio.CapacityLimiter(max_threads)
        self._exec_limiter = trio.CapacityLimiter(max_threads)
        # A followed log holds a thread for as long as it is followed: a pool of their own.
        self._follow_limiter = trio.CapacityLimiter(max_log_follows)
        # Pulls may take minutes: a pool of their own. A pull that times out is cancelled (its
        # connection shut down), which frees its slot at once.
        self._pull_limiter = trio.CapacityLimiter(MAX_CONCURRENT_PULLS)
        self.max_image_bytes = max_image_bytes
        """A pull whose layers add up to more than this is cancelled, and an image larger than
        this once pulled is removed again; None: no cap."""
        self.pull_timeout_seconds = pull_timeout_seconds
        self.allow_private_registries = allow_private_registries
        """Whether tenants' images may come from registries on loopback, private or link-local
        addresses, which only this node reaches (`--allow-private-registries`)."""
        self.resolve_host: Callable[[str], list[str]] = resolve_host
        """The addresses of a registry's host name (blocking: called in a thread)."""
        self._pull_client = pull_client or self._engine_pull_client
        self.image_usage = image_usage or ImageUsage()
        """The images this adapter pulled for apps and their last use, for the image GC."""
        self._built: set[str] = {labels.SANDBOX_IMAGE}
        """Names of images the node builds itself: used as they are, never pulled over (a
        pull of a tag replaces it in the store, and a tenant naming the sandbox image must not
        swap the sandbox of every pod for a registry's)."""
        self._volumes_unreadable = False
        """Set once the node found it cannot read the engine's volumes (and said so)."""
        self._pulled_digests: set[str] = set()
        """`NAME@sha256:...` references this adapter pulled (as such, or as a tag's digest).
        In memory: after a restart a digest is pulled again before its first use."""
        self.disk_quotas: bool | None = None
        """Whether the engine caps a container's writable layer at its disk limit: None until
        a create with a disk limit has found out (from the engine's info, then from the first
        create that asks for a quota)."""

    @classmethod
    async def connect(
        cls, host: str, *, timeout_seconds: float = 10.0, api_timeout_seconds: float = 60.0
    ) -> DockerAdapter:
        """Connects and negotiates the API version; `EngineUnavailable` if nothing answers
        within `timeout_seconds`. Later calls may take up to `api_timeout_seconds` (a pull)."""

        def build() -> docker.DockerClient:
            return docker.DockerClient(base_url=host, version="auto", timeout=timeout_seconds)

        try:
            client = await trio.to_thread.run_sync(build)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            if isinstance(e, requests.exceptions.Timeout) or isinstance(
                e.__context__, requests.exceptions.Timeout
            ):
                raise EngineUnavailable(host, f"no answer within {timeout_seconds} s") from e
            raise EngineUnavailable(host, _cause(e)) from e
        client.api.timeout = api_timeout_seconds
        return cls(client, host)

    def close(self) -> None:
        self._client.close()

    async def _call(
        self,
        fn: Callable[[], T],
        *,
        long_running: bool = False,
        limiter: trio.CapacityLimiter | None = None,
    ) -> T:
        if limiter is None:
            limiter = self._exec_limiter if long_running else self._limiter
        try:
            # trio-typing's stubs predate `abandon_on_cancel`.
            return await trio.to_thread.run_sync(  # type: ignore[call-arg]
                fn, limiter=limiter, abandon_on_cancel=long_running
            )
        except docker.errors.APIError:
            raise  # each operation says what an API error means for it (it is an HTTPError too)
        except requests.exceptions.ConnectionError as e:
            raise EngineUnavailable(self.host, _cause(e)) from e
        except requests.exceptions.RequestException as e:
            raise EngineFailure(f"the engine at {self.host} did not answer: {_cause(e)}") from e
        except docker.errors.DockerException as e:
            raise EngineFailure(_cause(e)) from e

    async def info(self) -> EngineInfo:
        try:
            raw = await self._call(self._api.info)
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot read engine info: {_explanation(e)}") from e
        return EngineInfo(
            host=self.host,
            server_version=str(raw.get("ServerVersion", "")),
            api_version=str(self._api.api_version),
            cpus=int(raw.get("NCPU", 0)),
            memory_bytes=int(raw.get("MemTotal", 0)),
            storage_driver=str(raw.get("Driver", "")),
            cgroup_driver=str(raw.get("CgroupDriver", "")),
            cgroup_version=str(raw.get("CgroupVersion", "")),
            data_root=str(raw.get("DockerRootDir", "")),
        )

    async def pull(self, image: str) -> str:
        """Pulls `image` for an app and returns its id (see `_pull`)."""
        return (await self._pull(image)).image_id

    async def _pull(self, image: str, login: RegistryAuth | None = None) -> _Pulled:
        """Pulls `image` anonymously, or with the tenant's `login` to its registry (from its
        `imagePullSecrets`), a tag as the digest its registry resolves it to, and records that
        digest as pulled (unless a login was needed: another tenant naming the digest must pull
        it with its own) and the image for the image GC. `ImageUnavailable` if it cannot be
        pulled or its registry is private, `ImageTooLarge` if its layers or the image are larger
        than `max_image_bytes` (the pull is cancelled, or the image removed again)."""
        if image in self._built:
            raise ImageUnavailable(image, "it is built by this node and never pulled")
        repository, reference = _pull_reference(image)
        # Only the tenant's own login, never the operator's stored ones; never logged.
        auth = NO_CREDENTIALS if login is None else login.auth_config()
        cap = self.max_image_bytes
        client = self._pull_client()

        def pull() -> tuple[str, dict[str, Any]]:
            api = client.api
            try:
                # The registry is asked, anonymously, for what the reference names now. For a
                # digest too: the engine does not ask the registry about a digest it has
                # (measured: "Image is up to date" after one GET /v2/), so an operator's private
                # image pulled by digest would pass.
                found = api.inspect_distribution(reference, auth_config=auth)
                digest = str((found.get("Descriptor") or {}).get("digest") or "")
                if not digest.startswith("sha256:"):
                    raise _PullFailed(f"the registry gave no digest for {reference}")
                pinned = reference if is_digest_reference(image) else f"{repository}@{digest}"
                # A pull by digest creates no tag: the store's tags stay the operator's.
                stream = api.pull(
                    repository,
                    tag=pinned.rsplit("@", 1)[1],
                    stream=True,
                    decode=True,
                    auth_config=auth,
                )
                layers: dict[str, int] = {}
                for progress in stream:
                    # Most failures come back as an HTTP error; some only in the stream.
                    if "error" in progress:
                        raise _PullFailed(str(progress["error"]))
                    size = _downloaded_bytes(layers, progress)
                    if cap is not None and size > cap:
                        raise _PullTooLarge(size, cap)  # the connection is shut below: cancelled
                return pinned, dict(api.inspect_image(pinned))
            finally:
                client.abort()
                client.close()

        try:
            with trio.fail_after(self.pull_timeout_seconds):
                await self._check_registry(image)
                pinned, raw = await self._call(pull, long_running=True, limiter=self._pull_limiter)
        except trio.TooSlowError:
            raise ImageUnavailable(
                image, f"the pull did not finish within {self.pull_timeout_seconds:g} s"
            ) from None
        except docker.errors.APIError as e:
            raise ImageUnavailable(image, _explanation(e)) from e
        except _PullFailed as e:
            raise ImageUnavailable(image, str(e)) from e
        except _PullTooLarge as e:
            raise ImageTooLarge(image, e.size_bytes, e.cap_bytes) from None
        finally:
            # An abandoned pull's thread is blocked on the engine: shutting its connection down
            # ends it (and frees its slot of the pull limiter), and the engine cancels the pull.
            client.abort()
        image_id, size = str(raw["Id"]), int(raw.get("Size") or 0)
        if cap is not None and size > cap:
            await self._drop_too_large(pinned, image_id)
            raise ImageTooLarge(image, size, cap)
        if login is None:
            self._pulled_digests.add(pinned)
        self.image_usage.used(image_id, pinned)
        return _Pulled(image_id, pinned)

    def _engine_pull_client(self) -> PullClient:
        return _EnginePullClient(self.host, str(self._api.api_version), self._api.timeout)

    async def _check_registry(self, image: str) -> None:
        """`ImageUnavailable` unless `image`'s registry is public (or private ones are allowed):
        a tenant must not make this node pull from a registry only the node reaches (its own on
        loopback, the operator's internal one, a cloud's link-local services)."""
        host = registry_host(image)
        if host is None or self.allow_private_registries:
            return
        try:
            # Resolved here, in a thread. The engine resolves the name again when it pulls, so a
            # name that then answers with another address (DNS rebinding) still gets through.
            # trio-typing's stubs predate `abandon_on_cancel`.
            addresses = await trio.to_thread.run_sync(  # type: ignore[call-arg]
                self.resolve_host, host, abandon_on_cancel=True
            )
        except OSError as e:
            raise ImageUnavailable(image, f"its registry host {host} does not resolve: {e}") from e
        for address in addresses:
            what = private_reason(address)
            if what is not None:
                shown = host if host == address else f"{host} ({address})"
                raise ImageUnavailable(
                    image,
                    f"its registry {shown} is {what}, which only this node reaches; tenants' "
                    "images come from public registries (a node may allow private ones with "
                    "--allow-private-registries)",
                )

    async def _drop_too_large(self, reference: str, image_id: str) -> None:
        """Removes what a refused pull brought: the digest reference, and the image if nothing
        else keeps it (an image a container uses, or the operator tagged, stays)."""
        try:
            await self.remove_pulled_image(image_id, [reference])
        except EngineFailure as e:
            log.warning("could not remove the refused image %s: %s", reference, e.message)

    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        def observe() -> list[ContainerInfo]:
            rows = self._api.containers(all=True, filters={"label": _label_filter(labels)})
            found = []
            for row in rows:
                state = ContainerState(row["State"])
                if state is ContainerState.RUNNING:
                    found.append(_from_row(row))
                    continue
                # The list does not carry exit codes or times; only stopped containers need them.
                try:
                    found.append(_from_inspect(self._api.inspect_container(row["Id"])))
                except docker.errors.NotFound:
                    continue
            return found

        try:
            return await self._call(observe)
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot list containers: {_explanation(e)}") from e

    async def inspect(self, container_id: str) -> ContainerInfo:
        try:
            raw = await self._call(functools.partial(self._api.inspect_container, container_id))
        except docker.errors.NotFound as e:
            raise ContainerNotFound(container_id) from e
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot inspect {container_id[:12]}: {_explanation(e)}") from e
        return _from_inspect(raw)

    async def create(self, request: CreateRequest) -> str:
        """Pulls the image first and creates the container from the digest pulled (see the
        class; the request's pull policy is not followed), except a node-built image and a
        digest this adapter pulled before, which is pulled only if the engine no longer has it."""
        image = request.image
        if image in self._built:
            return await self._create(request)
        if image in self._pulled_digests and request.registry_auth is None:
            try:
                container_id = await self._create(request)
            except ImageUnavailable:
                self._pulled_digests.discard(image)  # removed since: pulled again below
            else:
                await self._used(image)
                return container_id
        pulled = await self._pull(image, request.registry_auth)
        container_id = await self._create(
            dataclasses.replace(request, image=pulled.reference, registry_auth=None)
        )
        self.image_usage.used(pulled.image_id)
        return container_id

    async def _used(self, image: str) -> None:
        """Notes that a container was created from `image` (already recorded by its id)."""
        try:
            raw = await self._call(functools.partial(self._api.inspect_image, image))
        except (docker.errors.APIError, EngineFailure):
            return
        image_id = str(raw["Id"])
        if image_id in self.image_usage:
            self.image_usage.used(image_id)

    async def _create(self, request: CreateRequest) -> str:
        limits = request.resources
        security = request.security
        if request.join is not None:
            network_mode = f"container:{request.join}"
        else:
            network_mode = request.network or "none"
        if security.run_as_non_root and security.run_as_user is None:
            await self._check_non_root(request.image)
        user = None
        if security.run_as_user is not None:
            user = str(security.run_as_user)
            if security.run_as_group is not None:
                user += f":{security.run_as_group}"
        elif security.run_as_group is not None:
            raise CreateFailed(f"cannot create {request.name}: run_as_group needs run_as_user")
        quota = None
        if limits.disk_bytes is not None and await self._may_have_disk_quotas():
            quota = {"size": str(limits.disk_bytes)}

        def create(storage_opt: dict[str, str] | None) -> str:
            host_config = self._api.create_host_config(
                network_mode=network_mode,
                cap_drop=["ALL"],
                cap_add=list(security.capabilities()) or None,
                # Docker's default seccomp profile stays on: no `seccomp=unconfined` here.
                security_opt=["no-new-privileges:true"],
                read_only=security.read_only_root_filesystem,
                tmpfs=(
                    {"/tmp": "rw,noexec,nosuid,size=64m"}
                    if security.read_only_root_filesystem
                    else None
                ),
                # A real PID 1 that forwards SIGTERM and reaps zombies for any workload.
                init=True,
                nano_cpus=(
                    None if limits.cpu_millicores is None else limits.cpu_millicores * 1_000_000
                ),
                cpu_shares=(
                    None
                    if limits.cpu_request_millicores is None
                    else max(2, limits.cpu_request_millicores * 1024 // 1000)
                ),
                mem_limit=limits.memory_bytes,
                # Equal to the memory limit: no swap, so going past the limit is an OOM kill.
                memswap_limit=limits.memory_bytes,
                pids_limit=limits.pids_limit,
                mounts=[
                    docker.types.Mount(target=m.target, source=m.volume, type="volume")
                    for m in request.mounts
                ]
                + [
                    docker.types.Mount(
                        target=b.target, source=b.source, type="bind", read_only=True
                    )
                    for b in request.binds
                ],
                log_config=_LOG_CONFIG,
                # The writable layer's hard quota, where the engine has them.
                storage_opt=storage_opt,
            )
            networking = None
            if request.network is not None:
                networking = self._api.create_networking_config(
                    {request.network: self._api.create_endpoint_config()}
                )
            created = self._api.create_container(
                request.image,
                name=request.name,
                hostname=request.hostname if request.join is None else None,
                user=user,
                entrypoint=list(request.command) or None,
                command=list(request.args) or None,
                environment=[f"{e.name}={e.value}" for e in request.env],
                labels=dict(request.labels),
                host_config=host_config,
                networking_config=networking,
            )
            return str(created["Id"])

        try:
            if quota is not None:
                try:
                    container_id = await self._call(functools.partial(create, quota))
                except docker.errors.APIError as e:
                    if _QUOTA_REFUSED not in _explanation(e):
                        raise
                    self._found_disk_quotas(False, f"it refuses them: {_explanation(e)}")
                else:
                    self._found_disk_quotas(True, "overlay2 over xfs with pquota")
                    return container_id
            return await self._call(functools.partial(create, None))
        except docker.errors.ImageNotFound as e:
            raise ImageUnavailable(request.image, _explanation(e)) from e
        except docker.errors.APIError as e:
            # Variable names are checked in the spec, so the engine never quotes a value back.
            raise CreateFailed(f"cannot create {request.name}: {_explanation(e)}") from e
        except EngineUnavailable:
            raise
        except EngineFailure as e:
            raise CreateFailed(f"cannot create {request.name}: {e.message}") from e

    async def _may_have_disk_quotas(self) -> bool:
        """False once the engine is known to have no quotas, or while its info cannot be read
        (the create goes on without a quota); True while a create may still find out."""
        if self.disk_quotas is not None:
            return self.disk_quotas
        try:
            info = await self._call(self._api.info)
        except EngineUnavailable:
            raise
        except (docker.errors.APIError, EngineFailure):
            return False
        why_not = _quota_filesystem(info)
        if why_not is not None:
            self._found_disk_quotas(False, why_not)
            return False
        return True

    def _found_disk_quotas(self, enforced: bool, why: str) -> None:
        """Records whether the engine has quotas, and says which enforcement the node has when
        that is first known or changes (an engine restarted on another data root refuses them)."""
        if self.disk_quotas is enforced:
            return
        self.disk_quotas = enforced
        if enforced:
            log.info(
                "disk limits: the engine at %s caps each container's writable layer at its "
                "ephemeral-storage limit (%s); the node measures and evicts too",
                self.host,
                why,
            )
        else:
            log.info(
                "disk limits hold by measurement and eviction only: the engine at %s has no "
                "quotas for them (%s)",
                self.host,
                why,
            )

    async def _check_non_root(self, image: str) -> None:
        """Kubernetes' `runAsNonRoot` without a uid: the image's own user must not be root."""
        try:
            raw = await self._call(functools.partial(self._api.inspect_image, image))
        except docker.errors.ImageNotFound as e:
            raise ImageUnavailable(image, _explanation(e)) from e
        except docker.errors.APIError as e:
            raise CreateFailed(f"cannot inspect image {image}: {_explanation(e)}") from e
        user = str((raw.get("Config") or {}).get("User") or "")
        name = user.split(":", 1)[0]
        if name in ("", "0", "root"):
            raise CreateFailed(
                f"image {image} runs as {'root' if not name else name} and run_as_non_root is set "
                "(give run_as_user)"
            )

    async def start(self, container_id: str) -> None:
        try:
            await self._call(functools.partial(self._api.start, container_id))
        except docker.errors.NotFound as e:
            raise ContainerNotFound(container_id) from e
        except docker.errors.APIError as e:
            raise StartFailed(f"cannot start {container_id[:12]}: {_explanation(e)}") from e

    async def stop(self, container_id: str, timeout_seconds: float) -> None:
        # The engine takes whole seconds; round up so a grace period is never cut short.
        seconds = max(0, math.ceil(timeout_seconds))
        try:
            await self._call(functools.partial(self._api.stop, container_id, timeout=seconds))
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot stop {container_id[:12]}: {_explanation(e)}") from e

    async def remove(self, container_id: str) -> None:
        def remove() -> None:
            self._api.remove_container(container_id, v=True, force=True)

        try:
            await self._call(remove)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            if e.status_code == 409 and "already in progress" in _explanation(e):
                return
            raise EngineFailure(f"cannot remove {container_id[:12]}: {_explanation(e)}") from e

    async def exec(
        self, container_id: str, command: Sequence[str], timeout_seconds: float
    ) -> ExecResult:
        def run() -> ExecResult:
            exec_id = self._api.exec_create(container_id, list(command), stdout=True, stderr=True)
            output = self._api.exec_start(exec_id)
            code = self._api.exec_inspect(exec_id).get("ExitCode")
            return ExecResult(exit_code=-1 if code is None else int(code), output=bytes(output))

        try:
            with trio.fail_after(timeout_seconds):
                return await self._call(run, long_running=True)
        except trio.TooSlowError:
            raise EngineFailure(
                f"command {list(command)!r} did not finish within {timeout_seconds} s"
            ) from None
        except docker.errors.NotFound as e:
            raise ContainerNotFound(container_id) from e
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot exec in {container_id[:12]}: {_explanation(e)}") from e

    async def stats(self, container_id: str) -> ContainerStats:
        one_shot = not docker.utils.version_lt(self._api.api_version, "1.41")

        def read() -> Any:
            return self._api.stats(container_id, stream=False, one_shot=one_shot or None)

        try:
            raw = await self._call(read)
        except docker.errors.NotFound as e:
            raise ContainerNotFound(container_id) from e
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot read stats of {container_id[:12]}: {e}") from e
        if not raw.get("pids_stats") and not raw.get("memory_stats"):
            raise EngineFailure(f"container {container_id[:12]} is not running")
        memory = raw.get("memory_stats") or {}
        detail = memory.get("stats") or {}
        # Like `docker stats`: page cache that can be dropped at once is not the workload's.
        inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
        return ContainerStats(
            cpu_ns=int(raw.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0)),
            memory_bytes=max(0, int(memory.get("usage", 0)) - int(inactive)),
            pids=int((raw.get("pids_stats") or {}).get("current", 0)),
        )

    async def logs(
        self, container_id: str, *, tail: int | None = None, since: float | None = None
    ) -> bytes:
        window = _log_window(tail, since)

        def read() -> bytes:
            return bytes(self._api.logs(container_id, stdout=True, stderr=True, **window))

        try:
            return await self._call(read)
        except docker.errors.NotFound as e:
            raise ContainerNotFound(container_id) from e
        except docker.errors.APIError as e:
            raise EngineFailure(
                f"cannot read the logs of {container_id[:12]}: {_explanation(e)}"
            ) from e

    async def follow_logs(
        self, container_id: str, *, tail: int | None = None, since: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        window = _log_window(tail, since)

        def open_stream() -> Any:
            return self._api.logs(
                container_id, stdout=True, stderr=True, stream=True, follow=True, **window
            )

        try:
            # Not abandoned on cancellation: the stream it opens is always closed below.
            stream = await self._call(open_stream)
        except docker.errors.NotFound as e:
            raise ContainerNotFound(container_id) from e
        except docker.errors.APIError as e:
            raise EngineFailure(
                f"cannot follow the logs of {container_id[:12]}: {_explanation(e)}"
            ) from e
        lines = LineSplitter()
        try:
            while True:
                # Abandoned on cancellation; closing the stream below ends the thread's read.
                chunk = await self._call(
                    functools.partial(next, stream, b""),
                    long_running=True,
                    limiter=self._follow_limiter,
                )
                if not chunk:
                    break
                for line in lines.feed(chunk):
                    yield line
            for line in lines.flush():
                yield line
        finally:
            with contextlib.suppress(docker.errors.DockerException, OSError):
                stream.close()

    async def list_volumes(self, labels: Mapping[str, str]) -> list[VolumeInfo]:
        def list_them() -> list[VolumeInfo]:
            raw = self._api.volumes(filters={"label": _label_filter(labels)})
            return [
                VolumeInfo(name=v["Name"], labels=dict(v.get("Labels") or {}))
                for v in raw.get("Volumes") or []
            ]

        try:
            return await self._call(list_them)
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot list volumes: {_explanation(e)}") from e

    async def create_volume(
        self, name: str, labels: Mapping[str, str], *, memory_bytes: int | None = None
    ) -> None:
        options = None
        if memory_bytes is not None:
            # The local driver mounts a tmpfs of this size when a container first uses it.
            options = {"type": "tmpfs", "device": "tmpfs", "o": f"size={memory_bytes},mode=1777"}

        def create() -> None:
            self._api.create_volume(
                name=name, driver="local", driver_opts=options, labels=dict(labels)
            )

        try:
            await self._call(create)
        except docker.errors.APIError as e:
            if e.status_code == 409:
                return
            raise EngineFailure(f"cannot create volume {name}: {_explanation(e)}") from e

    async def disk_usage(self, labels: Mapping[str, str]) -> DiskUsage:
        def measure() -> DiskUsage:
            # The engine sizes writable layers itself, whatever its storage driver.
            rows = self._api.containers(
                all=True, size=True, filters={"label": _label_filter(labels)}
            )
            containers = {str(r["Id"]): int(r.get("SizeRw") or 0) for r in rows}
            volumes, unmeasurable = {}, {}
            listed = self._api.volumes(filters={"label": _label_filter(labels)})
            for v in listed.get("Volumes") or []:
                if (v.get("Options") or {}).get("type") == "tmpfs":
                    continue  # in memory: its size is the tmpfs's, and it counts as memory
                name = str(v["Name"])
                try:
                    volumes[name] = directory_bytes(str(v.get("Mountpoint") or ""))
                except Unmeasurable as e:
                    unmeasurable[name] = str(e)
                except FileNotFoundError:
                    continue  # removed meanwhile
                except OSError as e:
                    # Not on this host, or this node may not read the engine's folders.
                    if not self._volumes_unreadable:
                        log.warning("volumes cannot be measured, so no size limit holds: %s", e)
                        self._volumes_unreadable = True
            return DiskUsage(containers, volumes, unmeasurable)

        try:
            return await self._call(measure)
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot measure disk use: {_explanation(e)}") from e

    async def remove_volume(self, name: str) -> None:
        try:
            await self._call(functools.partial(self._api.remove_volume, name))
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot remove volume {name}: {_explanation(e)}") from e

    async def list_networks(self, labels: Mapping[str, str]) -> list[NetworkInfo]:
        def list_them() -> list[NetworkInfo]:
            raw = self._api.networks(filters={"label": _label_filter(labels)})
            return [NetworkInfo(n["Name"], dict(n.get("Labels") or {})) for n in raw]

        try:
            return await self._call(list_them)
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot list networks: {_explanation(e)}") from e

    async def create_network(self, name: str, bridge: str, labels: Mapping[str, str]) -> None:
        def create() -> None:
            # The engine lets two networks have one name; asking first keeps one.
            if any(n["Name"] == name for n in self._api.networks(names=[name])):
                return
            self._api.create_network(
                name,
                driver="bridge",
                options={
                    "com.docker.network.bridge.name": bridge,
                    # Replicas of one application on this node reach each other.
                    "com.docker.network.bridge.enable_icc": "true",
                    "com.docker.network.bridge.enable_ip_masquerade": "true",
                },
                labels=dict(labels),
                check_duplicate=True,
            )

        try:
            await self._call(create)
        except docker.errors.APIError as e:
            if e.status_code == 409:
                return
            raise EngineFailure(f"cannot create network {name}: {_explanation(e)}") from e

    async def remove_network(self, name: str) -> None:
        try:
            await self._call(functools.partial(self._api.remove_network, name))
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot remove network {name}: {_explanation(e)}") from e

    async def ensure_local_image(self, name: str, rootfs: Callable[[], bytes]) -> None:
        def ensure() -> None:
            try:
                self._api.inspect_image(name)
                return
            except docker.errors.ImageNotFound:
                pass
            repository, tag = docker.utils.parse_repository_tag(name)
            self._api.import_image_from_data(rootfs(), repository=repository, tag=tag)

        self._built.add(name)
        try:
            await self._call(ensure)
        except docker.errors.APIError as e:
            raise ImageUnavailable(name, _explanation(e)) from e
        except (OSError, OrchestratorError) as e:
            raise ImageUnavailable(name, f"cannot build it: {e}") from e

    async def data_root(self) -> str:
        """Where the engine keeps images and containers (`DockerRootDir`)."""
        return (await self.info()).data_root

    async def images_in_use(self) -> set[str]:
        try:
            rows = await self._call(functools.partial(self._api.containers, all=True))
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot list containers: {_explanation(e)}") from e
        return {str(row.get("ImageID") or "") for row in rows} - {""}

    async def remove_pulled_image(self, image_id: str, references: Collection[str]) -> bool:
        """Removes the digest `references` (`NAME@sha256:...`, as pulled) of image `image_id`
        and then the image, unless something else keeps it (never by force): any tag (the node
        makes none: the operator's; the digests of a tagged repository stay with it), another
        digest reference, or a container. True if the image is gone."""

        def remove() -> bool:
            try:
                raw = self._api.inspect_image(image_id)
            except docker.errors.ImageNotFound:
                return True
            tags = [str(t) for t in raw.get("RepoTags") or ()]
            tagged = {docker.utils.parse_repository_tag(t)[0] for t in tags}
            digests = {str(d) for d in raw.get("RepoDigests") or ()}
            for reference in sorted(digests & set(references)):
                if reference.rsplit("@", 1)[0] in tagged:
                    continue  # the engine lists a tag's digest as its own
                with contextlib.suppress(docker.errors.ImageNotFound):
                    self._api.remove_image(reference)
                digests.discard(reference)
            if tags or digests:
                return False
            try:
                self._api.remove_image(image_id)
            except docker.errors.ImageNotFound:
                pass
            return True

        try:
            return await self._call(remove)
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot remove image {image_id[:19]}: {_explanation(e)}") from e

    async def watch(
        self,
        labels: Mapping[str, str],
        events: trio.MemorySendChannel[EngineEvent],
        *,
        task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        filters = {
            "type": "container",
            "label": _label_filter(labels),
            "event": list(_WATCHED_ACTIONS),
        }
        try:
            stream = await self._call(
                functools.partial(self._api.events, decode=True, filters=filters)
            )
        except docker.errors.APIError as e:
            raise EngineFailure(f"cannot follow engine events: {_explanation(e)}") from e
        token = trio.lowlevel.current_trio_token()

        def pump() -> None:
            for raw in stream:
                event = EngineEvent(container_id=str(raw.get("id", "")), action=raw["Action"])
                if event.action == "die":
                    # The engine sends `die` before its container list says so; inspecting
                    # waits for the container's lock, after which the list is up to date.
                    with contextlib.suppress(docker.errors.DockerException):
                        self._api.inspect_container(event.container_id)
                try:
                    trio.from_thread.run(events.send, event, trio_token=token)
                except (trio.Cancelled, trio.RunFinishedError, trio.BrokenResourceError):
                    return

        task_status.started()
        try:
            # Abandoned on cancellation; closing the stream below ends the thread's read at once.
            await self._call(pump, long_running=True)
        except (docker.errors.APIError, KeyError, ValueError) as e:
            raise EngineFailure(f"engine events stream failed: {e}") from e
        finally:
            stream.close()


class LineSplitter:
    """Cuts the chunks of a byte stream into lines, without their newline."""

    def __init__(self, max_partial_bytes: int = MAX_PARTIAL_LINE_BYTES) -> None:
        self._partial = bytearray()
        self._max = max_partial_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines that `chunk` completes; a partial line longer than the limit is cut."""
        self._partial += chunk
        *lines, rest = bytes(self._partial).split(b"\n")
        self._partial = bytearray(rest)
        while len(self._partial) > self._max:
            lines.append(bytes(self._partial[: self._max]))
            del self._partial[: self._max]
        return lines

    def flush(self) -> list[bytes]:
        """The last line if the stream ended without a newline."""
        rest, self._partial = bytes(self._partial), bytearray()
        return [rest] if rest else []


def _log_window(tail: int | None, since: float | None) -> dict[str, Any]:
    """The SDK's arguments for a window of a container's log. The SDK refuses a `since` that
    is not positive; every log line is later than the epoch anyway."""
    if tail is not None and tail < 0:
        raise ValueError(f"tail must not be negative, got {tail}")
    return {
        "tail": "all" if tail is None else tail,
        "since": since if since and since > 0 else None,
    }


def _cause(error: BaseException) -> str:
    text = str(error)
    return text if len(text) <= 300 else text[:300] + "..."


def _addresses(settings: Mapping[str, Any] | None) -> dict[str, str]:
    networks = (settings or {}).get("Networks") or {}
    return {str(k): str(v.get("IPAddress") or "") for k, v in networks.items() if v}


def _from_row(row: Mapping[str, Any]) -> ContainerInfo:
    names = row.get("Names") or [""]
    return ContainerInfo(
        id=str(row["Id"]),
        name=str(names[0]).lstrip("/"),
        labels=dict(row.get("Labels") or {}),
        state=ContainerState(row["State"]),
        network_mode=str((row.get("HostConfig") or {}).get("NetworkMode") or ""),
        addresses=_addresses(row.get("NetworkSettings")),
    )


def _from_inspect(raw: Mapping[str, Any]) -> ContainerInfo:
    state = raw["State"]
    return ContainerInfo(
        id=str(raw["Id"]),
        name=str(raw.get("Name", "")).lstrip("/"),
        labels=dict((raw.get("Config") or {}).get("Labels") or {}),
        state=ContainerState(state["Status"]),
        run=RunState(
            started_at=_timestamp(state.get("StartedAt")),
            finished_at=(
                None if state.get("Running") else _timestamp(state.get("FinishedAt", _NEVER))
            ),
            exit_code=int(state.get("ExitCode", 0)),
            oom_killed=bool(state.get("OOMKilled", False)),
            error=str(state.get("Error", "")),
        ),
        network_mode=str((raw.get("HostConfig") or {}).get("NetworkMode") or ""),
        addresses=_addresses(raw.get("NetworkSettings")),
    )
