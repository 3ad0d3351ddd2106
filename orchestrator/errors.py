"""The orchestrator's error tree: invalid replica specs and failures of the container engine.

Engine errors say whether retrying later can help, so the controller turns them into a replica
state with a reason and a back-off instead of crashing or retrying in a hot loop."""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of every error raised by the orchestrator."""


class SpecError(OrchestratorError):
    """A replica spec that cannot be run as given (a bad name, probe, resource or volume)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"invalid replica spec: {field}: {message}")
        self.field = field
        self.message = message


class EngineFailure(OrchestratorError):
    """A container engine operation that failed. `reason` is a short Kubernetes-style word."""

    reason = "RuntimeError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EngineUnavailable(EngineFailure):
    """No container engine answers at the configured address: this node offers no compute."""

    reason = "EngineUnavailable"

    def __init__(self, host: str, cause: str) -> None:
        super().__init__(
            f"no container engine answers at {host}: {cause}; this node offers no compute"
        )
        self.host = host
        self.cause = cause


class ImageUnavailable(EngineFailure):
    """The image is not present locally and could not be pulled."""

    reason = "ImagePullBackOff"

    def __init__(self, image: str, cause: str) -> None:
        super().__init__(f"image {image!r} is not present and could not be pulled: {cause}")
        self.image = image
        self.cause = cause


class ImageTooLarge(ImageUnavailable):
    """The image was pulled, is larger than this node accepts, and was removed again."""

    reason = "ImageTooLarge"

    def __init__(self, image: str, size_bytes: int, cap_bytes: int) -> None:
        EngineFailure.__init__(
            self,
            f"image {image!r} is too large for this node: {size_bytes} bytes, above its cap "
            f"of {cap_bytes} bytes (ImageTooLarge)",
        )
        self.image = image
        self.cause = "ImageTooLarge"
        self.size_bytes = size_bytes
        self.cap_bytes = cap_bytes


class CreateFailed(EngineFailure):
    """The engine refused to create a container from its configuration."""

    reason = "CreateContainerError"


class StartFailed(EngineFailure):
    """The engine created the container but could not start its process."""

    reason = "RunContainerError"


class ContainerNotFound(EngineFailure):
    """The container is gone (removed by someone else, or never existed)."""

    reason = "NotFound"

    def __init__(self, container_id: str) -> None:
        super().__init__(f"no container {container_id}")
        self.container_id = container_id
