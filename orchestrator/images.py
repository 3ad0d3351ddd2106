"""Images made on this machine instead of pulled: a tiny root filesystem of the static busybox
(Debian's `busybox-static`), for machines that reach no image registry, and for the pod sandbox."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import docker
import docker.errors
import docker.utils
import requests

from orchestrator.errors import OrchestratorError

BUSYBOX_BINARY = Path("/bin/busybox")
BUSYBOX_PACKAGE = "busybox-static"
"""The Debian package of a statically linked busybox: it runs in an image with no libraries."""

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"
INDEX_HTML = b"statemesh\n"
"""What `httpd -h /www` serves at / before a container writes its own page."""


class ImageBuildError(OrchestratorError):
    """An image this node makes itself could not be made or imported."""


def busybox_applets(binary: Path = BUSYBOX_BINARY) -> list[str]:
    """The applets `binary` has (`busybox --list`), sorted."""
    if not binary.is_file():
        raise ImageBuildError(f"{binary} is missing: install the Debian package {BUSYBOX_PACKAGE}")
    try:
        listed = subprocess.run(
            [str(binary), "--list"], check=True, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ImageBuildError(f"{binary} --list failed: {exc}") from None
    return sorted(set(listed.split()))


def busybox_rootfs_tar(binary: Path = BUSYBOX_BINARY) -> bytes:
    """A tar of a root filesystem made of `binary` alone: /bin/busybox, a link to it for every
    applet (so `sh`, `httpd`, `nc` … are commands), /etc/passwd and /etc/group with root and
    nobody (65534), a world-writable /tmp (mode 1777), an empty /root and /www/index.html.

    The same binary gives the same bytes: every member is owned by root with time 0."""
    applets = busybox_applets(binary)
    if "sh" not in applets:
        applets.append("sh")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:

        def add(
            name: str,
            *,
            kind: bytes = tarfile.DIRTYPE,
            mode: int = 0o755,
            data: bytes = b"",
            link: str = "",
        ) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname, info.mtime = kind, mode, link, 0
            info.uname = info.gname = "root"
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        for directory in ("bin", "etc", "root", "www"):
            add(directory, mode=0o700 if directory == "root" else 0o755)
        add("tmp", mode=0o1777)
        add("bin/busybox", kind=tarfile.REGTYPE, data=binary.read_bytes())
        for applet in applets:
            if applet != "busybox":
                add(f"bin/{applet}", kind=tarfile.SYMTYPE, mode=0o777, link="busybox")
        add("etc/passwd", kind=tarfile.REGTYPE, mode=0o644, data=PASSWD)
        add("etc/group", kind=tarfile.REGTYPE, mode=0o644, data=GROUP)
        add("www/index.html", kind=tarfile.REGTYPE, mode=0o644, data=INDEX_HTML)
    return buffer.getvalue()


def import_busybox(client: docker.DockerClient, name: str, binary: Path = BUSYBOX_BINARY) -> bool:
    """`docker import` of the busybox root filesystem as `name` (e.g. `busybox`, which is
    `busybox:latest`) unless the engine has that image already. True if it was imported now.

    The image has no command, like any imported one: containers name theirs."""
    repository, tag = docker.utils.parse_repository_tag(name)
    reference = f"{repository}:{tag or 'latest'}"
    try:
        client.images.get(reference)
        return False
    except docker.errors.ImageNotFound:
        pass
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise ImageBuildError(f"cannot look up {reference}: {exc}") from None
    data = busybox_rootfs_tar(binary)
    try:
        # The engine reports a failed import in the body of its answer: look for the image.
        client.api.import_image_from_data(data, repository=repository, tag=tag or "latest")
        client.images.get(reference)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise ImageBuildError(f"cannot import {reference}: {exc}") from None
    return True
