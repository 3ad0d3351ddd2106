"""How much disk a folder holds, as `du` counts it: allocated blocks, each inode once, without
following symbolic links or crossing into other filesystems. The node measures its replicas'
volumes this way, on the host that runs the engine."""

from __future__ import annotations

import os
import stat


def directory_bytes(path: str) -> int:
    """The bytes allocated to `path` and everything under it. Entries that vanish while they are
    counted are skipped; `FileNotFoundError` if `path` itself is gone."""
    top = os.lstat(path)
    device = top.st_dev
    seen: set[tuple[int, int]] = set()
    total = top.st_blocks * 512
    pending = [path] if stat.S_ISDIR(top.st_mode) else []
    while pending:
        folder = pending.pop()
        try:
            entries = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if info.st_dev != device:
                    continue  # a mount inside the folder is another filesystem's
                if info.st_nlink > 1:
                    inode = (info.st_dev, info.st_ino)
                    if inode in seen:
                        continue
                    seen.add(inode)
                total += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.path)
    return total


def shown(amount: int) -> str:
    """`amount` bytes for people: 312.4 MiB."""
    value = float(amount)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
