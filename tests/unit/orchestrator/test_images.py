"""The busybox root filesystem: its members, applet links, modes and owners, from a stand-in
binary (a script that lists applets) and from the real static busybox where it is installed."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from orchestrator.images import (
    BUSYBOX_BINARY,
    GROUP,
    INDEX_HTML,
    PASSWD,
    ImageBuildError,
    busybox_rootfs_tar,
)

APPLETS = ("httpd", "ls", "nc", "sh")


def fake_busybox(folder: Path, applets: tuple[str, ...] = APPLETS) -> Path:
    """A stand-in for busybox: `--list` prints the applets, one a line, as busybox does."""
    binary = folder / "busybox"
    listed = "\\n".join(("busybox", *applets))
    binary.write_text(f'#!/bin/sh\n[ "$1" = --list ] && printf "{listed}\\n"\n')
    binary.chmod(0o755)
    return binary


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def content(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read()


def test_the_root_filesystem_holds_busybox_a_link_per_applet_and_the_basics(
    tmp_path: Path,
) -> None:
    binary = fake_busybox(tmp_path)
    data = busybox_rootfs_tar(binary)
    found = members(data)
    assert set(found) == {
        "bin",
        "etc",
        "root",
        "tmp",
        "www",
        "bin/busybox",
        *(f"bin/{applet}" for applet in APPLETS),
        "etc/passwd",
        "etc/group",
        "www/index.html",
    }
    assert content(data, "bin/busybox") == binary.read_bytes()
    assert content(data, "etc/passwd") == PASSWD
    assert content(data, "etc/group") == GROUP
    assert content(data, "www/index.html") == INDEX_HTML


def test_every_applet_is_a_symlink_to_busybox(tmp_path: Path) -> None:
    found = members(busybox_rootfs_tar(fake_busybox(tmp_path)))
    for applet in APPLETS:
        link = found[f"bin/{applet}"]
        assert (link.issym(), link.linkname, link.mode) == (True, "busybox", 0o777), applet
    assert found["bin/busybox"].isfile()


@pytest.mark.parametrize(
    ("name", "kind", "mode"),
    [
        ("bin", tarfile.DIRTYPE, 0o755),
        ("etc", tarfile.DIRTYPE, 0o755),
        ("www", tarfile.DIRTYPE, 0o755),
        ("root", tarfile.DIRTYPE, 0o700),
        ("tmp", tarfile.DIRTYPE, 0o1777),
        ("bin/busybox", tarfile.REGTYPE, 0o755),
        ("etc/passwd", tarfile.REGTYPE, 0o644),
        ("etc/group", tarfile.REGTYPE, 0o644),
        ("www/index.html", tarfile.REGTYPE, 0o644),
    ],
)
def test_modes(tmp_path: Path, name: str, kind: bytes, mode: int) -> None:
    member = members(busybox_rootfs_tar(fake_busybox(tmp_path)))[name]
    assert (member.type, member.mode) == (kind, mode)


def test_root_and_nobody_are_users_and_groups() -> None:
    users = {line.split(":")[0]: line.split(":")[2:4] for line in PASSWD.decode().splitlines()}
    groups = {line.split(":")[0]: line.split(":")[2] for line in GROUP.decode().splitlines()}
    assert users == {"root": ["0", "0"], "nobody": ["65534", "65534"]}
    assert groups == {"root": "0", "nobody": "65534"}


def test_the_same_binary_gives_the_same_bytes_owned_by_root_at_time_zero(tmp_path: Path) -> None:
    binary = fake_busybox(tmp_path)
    data = busybox_rootfs_tar(binary)
    assert busybox_rootfs_tar(binary) == data
    for member in members(data).values():
        assert (member.uid, member.gid, member.uname, member.gname, member.mtime) == (
            0,
            0,
            "root",
            "root",
            0,
        ), member.name


def test_sh_is_there_even_when_busybox_does_not_list_it(tmp_path: Path) -> None:
    found = members(busybox_rootfs_tar(fake_busybox(tmp_path, applets=("ls",))))
    assert found["bin/sh"].linkname == "busybox"


def test_a_missing_binary_names_the_package(tmp_path: Path) -> None:
    missing = tmp_path / "busybox"
    with pytest.raises(ImageBuildError) as raised:
        busybox_rootfs_tar(missing)
    assert str(raised.value) == f"{missing} is missing: install the Debian package busybox-static"


def test_a_binary_that_cannot_list_its_applets_is_an_error(tmp_path: Path) -> None:
    binary = tmp_path / "busybox"
    binary.write_text("#!/bin/sh\nexit 3\n")
    binary.chmod(0o755)
    with pytest.raises(ImageBuildError) as raised:
        busybox_rootfs_tar(binary)
    assert str(raised.value) == (
        f"{binary} --list failed: Command '['{binary}', '--list']' returned non-zero exit status 3."
    )


@pytest.mark.skipif(not BUSYBOX_BINARY.is_file(), reason="busybox-static is not installed")
def test_the_static_busybox_gives_the_commands_the_tests_and_examples_use() -> None:
    found = members(busybox_rootfs_tar())
    for command in ("sh", "httpd", "nc", "mkdir", "echo", "sleep", "cat", "false"):
        assert found[f"bin/{command}"].linkname == "busybox", command
