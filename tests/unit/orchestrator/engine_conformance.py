"""What every `ContainerEngine` must do, as checks that the in-memory fake (unit tests) and the
Docker adapter (integration tests) both pass. Each check is an async function of a engine, an
image that is present, and labels of its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing

import pytest
import trio

from orchestrator.engine import ContainerEngine, ContainerState, CreateRequest, EngineEvent
from orchestrator.errors import ContainerNotFound, CreateFailed, EngineFailure, ImageUnavailable
from orchestrator.spec import EnforcedResources

Check = Callable[[ContainerEngine, str, Mapping[str, str]], Awaitable[None]]
CHECKS: dict[str, Check] = {}


def check(fn: Check) -> Check:
    CHECKS[fn.__name__] = fn
    return fn


def request(image: str, labels: Mapping[str, str], name: str, *args: str) -> CreateRequest:
    return CreateRequest(
        name=f"{name}-{labels['conformance']}",
        image=image,
        command=(),
        args=args or ("sleep", "60"),
        env=(),
        labels=dict(labels),
        resources=EnforcedResources(memory_bytes=32 * 2**20, pids_limit=16),
    )


async def started(engine: ContainerEngine, image: str, labels: Mapping[str, str], name: str) -> str:
    cid = await engine.create(request(image, labels, name))
    await engine.start(cid)
    return cid


async def written(engine: ContainerEngine, cid: str, text: bytes) -> None:
    """Waits (up to 10 s) until the container's log holds `text`."""
    for _ in range(200):
        if text in await engine.logs(cid):
            return
        await trio.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log: {await engine.logs(cid)!r}")


@check
async def created_and_started_is_listed_as_running(
    engine: ContainerEngine, image: str, labels: Mapping[str, str]
) -> None:
    cid = await engine.create(request(image, labels, "run"))
    (created,) = await engine.list_containers(labels)
    assert (created.id, created.state) == (cid, ContainerState.CREATED)
    assert created.run is not None and created.run.started_at is None
    await engine.start(cid)
    await engine.start(cid)  # starting a running container changes nothing
    (running,) = await engine.list_containers(labels)
    assert (running.id, running.state, dict(running.labels)) == (
        cid,
        ContainerState.RUNNING,
        dict(labels),
    )
    info = await engine.inspect(cid)
    assert info.run is not None and info.run.started_at is not None
    assert info.run.finished_at is None
    assert await engine.list_containers({**labels, "conformance": "someone-else"}) == []


@check
async def stop_ends_the_run_and_remove_is_idempotent(
    engine: ContainerEngine, image: str, labels: Mapping[str, str]
) -> None:
    cid = await started(engine, image, labels, "stop")
    await engine.stop(cid, 1.0)
    await engine.stop(cid, 1.0)
    (stopped,) = await engine.list_containers(labels)
    assert stopped.state is ContainerState.EXITED
    assert stopped.run is not None and stopped.run.finished_at is not None
    assert stopped.run.exit_code in (137, 143) and not stopped.run.oom_killed
    assert stopped.run.ran_for >= 0
    await engine.remove(cid)
    await engine.remove(cid)
    await engine.stop(cid, 1.0)
    assert await engine.list_containers(labels) == []
    with pytest.raises(ContainerNotFound) as raised:
        await engine.inspect(cid)
    assert str(raised.value) == f"no container {cid}"


@check
async def a_missing_image_is_image_unavailable(
    engine: ContainerEngine, image: str, labels: Mapping[str, str]
) -> None:
    missing = "statemesh-test/not-there:0"
    with pytest.raises(ImageUnavailable) as raised:
        await engine.create(request(missing, labels, "noimage"))
    assert raised.value.image == missing
    assert str(raised.value).startswith(f"image {missing!r} is not present and could not be pulled")
    assert raised.value.reason == "ImagePullBackOff"
    assert await engine.list_containers(labels) == []


@check
async def a_container_without_a_command_is_refused(
    engine: ContainerEngine, image: str, labels: Mapping[str, str]
) -> None:
    bare = CreateRequest(
        f"bare-{labels['conformance']}", image, (), (), (), dict(labels), EnforcedResources()
    )
    with pytest.raises(CreateFailed) as raised:
        await engine.create(bare)
    assert str(raised.value).lower() == f"cannot create {bare.name}: no command specified"
    assert raised.value.reason == "CreateContainerError"


@check
async def a_name_in_use_is_refused(
    engine: ContainerEngine, image: str, labels: Mapping[str, str]
) -> None:
    await engine.create(request(image, labels, "twice"))
    with pytest.raises(CreateFailed):
        await engine.create(request(image, labels, "twice"))
    assert len(await engine.list_containers(labels)) == 1


@check
async def exec_reports_the_exit_code(
    engine: ContainerEngine, image: str, labels: Mapping[str, str]
) -> None:
    cid = await started(engine, image, labels, "exec")
    assert (await engine.exec(cid, ["true"], 5.0)).exit_code == 0
    assert (await engine.exec(cid, ["false"], 5.0)).exit_code == 1
    await engine.stop(cid, 1.0)
    with pytest.raises(EngineFailure):
        await engine.exec(cid, ["true"], 5.0)


@check
async def stats_read_a_running_container_only(
    engine: ContainerEngine, image: str, labels: Mapping[str, str]
) -> None:
    cid = await started(engine, image, labels, "stats")
    stats = await engine.stats(cid)
    assert stats.cpu_ns >= 0 and stats.memory_bytes >= 0 and stats.pids >= 1
    await engine.stop(cid, 1.0)
    with pytest.raises(EngineFailure):
        await engine.stats(cid)


@check
async def volumes_are_created_listed_and_removed_idempotently(
    engine: ContainerEngine, image: str, labels: Mapping[str, str]
) -> None:
    name = f"vol-{labels['conformance']}"
    await engine.create_volume(name, labels)
    await engine.create_volume(name, labels)
    (volume,) = await engine.list_volumes(labels)
    assert (volume.name, dict(volume.labels)) == (name, dict(labels))
    await engine.remove_volume(name)
    await engine.remove_volume(name)
    assert await engine.list_volumes(labels) == []


@check
async def watch_reports_start_and_die_of_labelled_containers_only(
    engine: ContainerEngine, image: str, labels: Mapping[str, str]
) -> None:
    send, receive = trio.open_memory_channel[EngineEvent](16)
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.watch, labels, send)
        await trio.sleep(0.1)  # the engine has the subscription before anything happens
        cid = await started(engine, image, labels, "watched")
        await engine.stop(cid, 1.0)
        seen = []
        with trio.fail_after(10):
            async for event in receive:
                assert event.container_id == cid
                seen.append(event.action)
                if event.action == "die":
                    break
        (after,) = await engine.list_containers(labels)
        assert after.state is ContainerState.EXITED  # the list already says so
        nursery.cancel_scope.cancel()
    assert seen[0] == "start" and seen[-1] == "die"


@check
async def logs_return_what_the_container_wrote(
    engine: ContainerEngine, image: str, labels: Mapping[str, str]
) -> None:
    script = "echo one; echo two; echo three; sleep 60"
    cid = await engine.create(request(image, labels, "logs", "sh", "-c", script))
    await engine.start(cid)
    await written(engine, cid, b"three\n")
    everything = b"one\ntwo\nthree\n"
    assert await engine.logs(cid) == everything
    assert await engine.logs(cid, tail=2) == b"two\nthree\n"
    assert await engine.logs(cid, tail=0) == b""
    info = await engine.inspect(cid)
    assert info.run is not None and info.run.started_at is not None
    assert await engine.logs(cid, since=info.run.started_at - 5) == everything
    assert await engine.logs(cid, since=info.run.started_at + 3600) == b""
    with pytest.raises(ValueError, match="tail must not be negative, got -1"):
        await engine.logs(cid, tail=-1)
    await engine.remove(cid)
    with pytest.raises(ContainerNotFound) as raised:
        await engine.logs(cid)
    assert str(raised.value) == f"no container {cid}"


@check
async def follow_logs_yields_new_lines_until_the_container_stops(
    engine: ContainerEngine, image: str, labels: Mapping[str, str]
) -> None:
    script = "echo zero; echo one; sleep 2; echo two; sleep 60"
    cid = await engine.create(request(image, labels, "follow", "sh", "-c", script))
    await engine.start(cid)
    await written(engine, cid, b"one\n")
    seen = []
    with trio.fail_after(10):
        async with aclosing(engine.follow_logs(cid, tail=1)) as lines:
            async for line in lines:
                seen.append(line)
                if line == b"two":
                    await engine.stop(cid, 1.0)
    assert seen == [b"one", b"two"]
    with trio.fail_after(10):
        async with aclosing(engine.follow_logs(cid)) as lines:
            after = [line async for line in lines]  # a stopped container: the log, then the end
    assert after == [b"zero", b"one", b"two"]
    await engine.remove(cid)
    with pytest.raises(ContainerNotFound):
        async with aclosing(engine.follow_logs(cid)) as lines:
            await lines.__anext__()


@check
async def cancelling_a_follow_ends_it_at_once(
    engine: ContainerEngine, image: str, labels: Mapping[str, str]
) -> None:
    cid = await started(engine, image, labels, "quiet")
    with trio.fail_after(5):
        with trio.move_on_after(0.3) as waited:
            async with aclosing(engine.follow_logs(cid)) as lines:
                async for line in lines:
                    raise AssertionError(f"a quiet container wrote {line!r}")
        assert waited.cancelled_caught
        # The engine still serves this container's logs: nothing was left half-open.
        assert await engine.logs(cid) == b""
