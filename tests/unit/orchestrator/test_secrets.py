"""Secrets and configurations reaching containers: a replica waits, with the reason, until its
secret can be had and is retried; values go into the environment only where the manifest asks,
files onto a tmpfs (0400 unless said otherwise), bound read-only and removed with the replica;
digests, names, labels and events carry versions, never values."""

from __future__ import annotations

import dataclasses
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from chain.address import encode_address
from chain.keys import Keypair
from orchestrator import labels
from orchestrator.controller import Controller
from orchestrator.diff import create_request
from orchestrator.errors import SpecError
from orchestrator.secrets import FileStore, SecretUnavailable, is_tmpfs, project
from orchestrator.spec import EnvVar, FileItem, FilesVolume, ReplicaSpec, SourceKind, SourceRef
from testkit.trio_clock import TrioClock
from tests.unit.orchestrator.builders import NODE, InMemoryDesired, container, replica
from tests.unit.orchestrator.fake_engine import FakeEngine, FakeFirewall, no_rootfs
from tests.unit.orchestrator.test_controller import CONFIG, OWNER, reason, running, until

ALICE = Keypair.from_seed(b"\x41" * 32).public
PASSWORD = b"s3cret-value-never-shown"
DB = SourceRef(SourceKind.SECRET, "db", 1)
SITE = SourceRef(SourceKind.CONFIG, "site", 4)


def web(version: int = 1) -> ReplicaSpec:
    db = dataclasses.replace(DB, version=version)
    main = dataclasses.replace(
        container(),
        env=(
            EnvVar("PASSWORD", "", secret=True, source=db, key="password"),
            EnvVar("GREETING", "hello", source=SITE, key="GREETING"),
        ),
    )
    # The sidecar mounts neither volume and reads no secret: it gets none.
    sidecar = container("sidecar")
    return dataclasses.replace(
        replica(containers=(main, sidecar)),
        owner=encode_address(ALICE),
        files=(
            FilesVolume("keys", "/keys", db, (FileItem("password", "pw", 0o400),), (), ("main",)),
            FilesVolume(
                "conf", "/etc/site", SITE, (FileItem("GREETING", "g/greeting", 0o444),),
                (("GREETING", b"hello"),), ("main",),
            ),
        ),
    )  # fmt: skip


class FakeSource:
    """Gives `db` once `ready`; records who asked."""

    def __init__(self) -> None:
        self.ready = False
        self.asked: list[tuple[bytes, str, int, str, int]] = []

    async def secret_data(
        self, owner: bytes, name: str, version: int, app: str, replica: int
    ) -> Mapping[str, bytes]:
        await trio.lowlevel.checkpoint()
        self.asked.append((owner, name, version, app, replica))
        if not self.ready:
            raise SecretUnavailable(f"secret {name!r}: 1 of 2 partial decryptions received")
        return {"password": PASSWORD + str(version).encode()}


@pytest.fixture
def shm() -> Iterator[Path]:
    if not is_tmpfs(Path("/dev/shm")):
        pytest.skip("/dev/shm is not a tmpfs here")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as folder:
        yield Path(folder) / "files"


def run(test, store: FileStore, source: FakeSource, *specs: ReplicaSpec) -> FakeEngine:  # type: ignore[no-untyped-def]
    engine = FakeEngine()

    async def main() -> None:
        desired = InMemoryDesired(*specs)
        controller = Controller(
            engine, desired, CONFIG, firewall=FakeFirewall(), sandbox_rootfs=no_rootfs,
            clock=TrioClock(), secrets=source, files=store,
        )  # fmt: skip
        async with trio.open_nursery() as nursery:
            await nursery.start(controller.run)
            with trio.fail_after(3600):
                await test(controller, engine, desired)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return engine


def test_a_replica_waits_for_its_secret_then_runs_with_files_and_env(shm: Path) -> None:
    store, source, spec = FileStore(shm), FakeSource(), web()

    async def test(controller: Controller, engine: FakeEngine, desired: InMemoryDesired) -> None:
        await until(controller, lambda: reason(controller, spec) == "SecretUnavailable")
        status = controller.status()[spec.key]
        assert status.containers[0].message == "secret 'db': 1 of 2 partial decryptions received"
        assert not engine.running(OWNER)
        source.ready = True
        await until(controller, lambda: running(controller, spec))
        by_name = {x.labels[labels.CONTAINER]: x for x in engine.running(OWNER)}
        c, sidecar = by_name["main"], by_name["sidecar"]
        assert sidecar.request is not None and sidecar.request.binds == ()
        assert c.request is not None
        env = {e.name: e.value for e in c.request.env}
        assert env == {"PASSWORD": (PASSWORD + b"1").decode(), "GREETING": "hello"}
        binds = {b.target: Path(b.source) for b in c.request.binds}
        assert set(binds) == {"/keys", "/etc/site"}
        secret_file = binds["/keys"] / "pw"
        assert secret_file.read_bytes() == PASSWORD + b"1"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o400
        assert stat.S_IMODE((binds["/etc/site"] / "g/greeting").stat().st_mode) == 0o444
        assert is_tmpfs(secret_file)
        assert source.asked[-1] == (ALICE, "db", 1, "web", 0)
        # Names, labels and events carry no value.
        shown = repr(c.request) + c.name + repr(c.labels)
        shown += "".join(e.message for e in controller.events.for_replica(spec.key))
        assert "s3cret" not in shown
        # A new version of the secret replaces the container; the old files go with it.
        old_folder = binds["/keys"].parent
        desired.specs = [web(2)]
        await until(
            controller,
            lambda: any(
                x.request is not None and x.request.env and x.request.env[0].value.endswith("2")
                for x in engine.running(OWNER)
            ),
        )
        await until(controller, lambda: not old_folder.exists())
        desired.specs = []
        await until(controller, lambda: not engine.running(OWNER))
        await until(controller, lambda: not any(shm.iterdir()))

    run(test, store, source, spec)


def test_the_digest_covers_versions_never_values() -> None:
    one, two = web(1), web(2)
    c1, c2 = one.containers[0], two.containers[0]
    assert labels.spec_hash(one, c1) != labels.spec_hash(two, c2)
    # A spec never holds a secret's value: env and files only name its version.
    assert "s3cret" not in repr(one)
    other_value = dataclasses.replace(
        c1, env=(dataclasses.replace(c1.env[0], value="x"), c1.env[1])
    )
    assert labels.spec_hash(one, c1) == labels.spec_hash(one, other_value)


def test_files_are_refused_off_a_tmpfs(tmp_path: Path) -> None:
    mounts = "/dev/sda1 / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n"
    assert not is_tmpfs(tmp_path, mounts)
    assert is_tmpfs(Path("/dev/shm/x/y"), mounts)
    store = FileStore(tmp_path / "files", mounts=mounts)
    with pytest.raises(SecretUnavailable) as caught:
        store.check()
    assert str(caught.value) == (
        f"{tmp_path / 'files'} is not on a tmpfs: this node writes no secret file to disk"
    )


def test_without_a_file_store_or_a_source_the_replica_waits_and_says_why(shm: Path) -> None:
    spec = web()

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: reason(controller, spec) == "SecretUnavailable")
        assert not engine.running(OWNER)

    source = FakeSource()
    source.ready = True
    run(test, FileStore(shm.parent / "nowhere", mounts="/dev/sda1 / ext4 rw 0 0"), source, spec)
    assert not os.path.exists(shm.parent / "nowhere")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FileItem("k", "../etc/passwd", 0o400), "'../etc/passwd' is not a relative path"),
        (lambda: FileItem("k", "/abs", 0o400), "'/abs' is not a relative path"),
        (lambda: FileItem("k", "a//b", 0o400), "'a//b' is not a relative path"),
        (lambda: FileItem("k", "k", 0o1000), "1000 is not a file mode"),
        (lambda: FilesVolume("keys", "/", DB, ()), "'/' is not an absolute path"),
    ],
)
def test_bad_files_are_spec_errors(make: Any, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        make()
    assert caught.value.message == message


def test_a_secret_value_that_is_no_text_is_never_put_in_the_environment(shm: Path) -> None:
    class Binary(FakeSource):
        async def secret_data(
            self, owner: bytes, name: str, version: int, app: str, replica: int
        ) -> Mapping[str, bytes]:
            await trio.lowlevel.checkpoint()
            return {"password": b"\xff\xfe"}

    spec = web()
    request = create_request(NODE, spec, spec.containers[0])

    async def main() -> None:
        with pytest.raises(SecretUnavailable) as caught:
            await project(request, spec, "main", "h", Binary(), FileStore(shm))
        assert caught.value.message == (
            "key 'password' of secret 'db' is not UTF-8 text: mount it as a file"
        )

    trio.run(main)
    assert not shm.exists()  # nothing was written
