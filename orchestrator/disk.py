"""How much disk a folder holds, as `du` counts it: allocated blocks, each inode once, without
following symbolic links or crossing into other filesystems. The node measures its replicas'
volumes this way, on the host that runs the engine."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from typing import Protocol

from orchestrator.errors import OrchestratorError

MAX_ENTRIES = 1_000_000
"""Files and folders a measured folder may hold: past this it is not counted further (a tenant
could make a walk last for ever), and its replica is evicted for it."""
MAX_DEPTH = 128
"""Folders nested deeper than this are not walked (each level holds a descriptor open), and the
replica is evicted for it."""


class Unmeasurable(OrchestratorError):
    """What is inside the folder keeps it from being measured whole (too many files, folders too
    deep, an entry that cannot be read): the doing of whoever writes there."""


def directory_bytes(
    path: str, *, max_entries: int = MAX_ENTRIES, max_depth: int = MAX_DEPTH
) -> int:
    """The bytes allocated to `path` and everything under it, as `du` counts them: blocks, each
    inode once, without following symbolic links or crossing into other filesystems.

    The walk goes from folder descriptor to folder descriptor and opens each with O_NOFOLLOW, so
    neither long paths nor a folder swapped for a symbolic link meanwhile lead it astray.
    Entries that vanish while they are counted are skipped. `OSError` if `path` itself cannot be
    opened (gone, or on another host); `Unmeasurable` for what is inside."""
    stack = [_opened(os.open(path, os.O_RDONLY | os.O_DIRECTORY))]
    try:
        info = os.fstat(stack[0][0])
        device, total, entries = info.st_dev, info.st_blocks * 512, 0
        seen: set[tuple[int, int]] = set()
        while stack:
            folder, listing = stack[-1]
            entry = next(listing, None)
            if entry is None:
                _close(*stack.pop())
                continue
            entries += 1
            if entries > max_entries:
                raise Unmeasurable(f"holds more than {max_entries} files and folders")
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if info.st_dev != device:
                continue  # a mount inside the folder is another filesystem's
            is_folder = stat.S_ISDIR(info.st_mode)
            if info.st_nlink > 1 and not is_folder:
                inode = (info.st_dev, info.st_ino)
                if inode in seen:
                    continue
                seen.add(inode)
            total += info.st_blocks * 512
            if not is_folder:
                continue
            if len(stack) >= max_depth:
                raise Unmeasurable(f"nests folders more than {max_depth} deep")
            try:
                child = os.open(
                    entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder
                )
            except (FileNotFoundError, NotADirectoryError):
                continue  # gone, or replaced by a file meanwhile
            except OSError as e:
                if e.errno == errno.ELOOP:
                    continue  # replaced by a symbolic link meanwhile: not followed
                raise Unmeasurable(f"has a folder that cannot be read ({e.strerror})") from e
            stack.append(_opened(child))
    finally:
        for opened in stack:
            _close(*opened)
    return total


class _Listing(Iterator[os.DirEntry[str]], Protocol):
    def close(self) -> None: ...


def _opened(folder: int) -> tuple[int, _Listing]:
    """A folder's descriptor and its listing (closed with the descriptor if listing fails)."""
    try:
        return folder, os.scandir(folder)
    except BaseException:
        os.close(folder)
        raise


def _close(folder: int, listing: _Listing) -> None:
    listing.close()
    os.close(folder)


def shown(amount: int) -> str:
    """`amount` bytes for people: 312.4 MiB."""
    value = float(amount)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
