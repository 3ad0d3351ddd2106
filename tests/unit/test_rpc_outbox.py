"""The pieces that keep notifications cheap and bounded: a feed encodes each item once for all
its listeners, and a connection's outbox refuses what does not fit instead of growing."""

from __future__ import annotations

import trio
import trio.testing

from node.rpc.feeds import Feed, RawJson
from node.rpc.outbox import Close, Outbox, Queued


def test_a_feed_encodes_each_item_once_whatever_the_number_of_listeners() -> None:
    encoded: list[int] = []

    def encode(item: int) -> str:
        encoded.append(item)
        return str(item)

    feed: Feed[int] = Feed(encode)
    feed.publish(0)  # nobody listens: nothing encoded
    received: list[list[RawJson]] = [[] for _ in range(1000)]
    detaches = [feed.attach(box.append) for box in received]
    feed.publish(1)
    feed.publish(2)
    assert encoded == [1, 2]
    assert all(box == [RawJson("1"), RawJson("2")] for box in received)
    detaches[0]()
    detaches[0]()  # idempotent
    assert len(feed) == 999


def test_a_listener_may_detach_itself_while_being_called() -> None:
    feed: Feed[int] = Feed(str)
    seen: list[str] = []

    def once(item: RawJson) -> None:
        seen.append(item.text)
        detach()

    detach = feed.attach(once)
    feed.attach(lambda item: seen.append("other " + item.text))
    feed.publish(1)
    feed.publish(2)
    assert seen == ["1", "other 1", "other 2"]


def test_offers_are_refused_past_the_source_quota_or_the_byte_bound() -> None:
    outbox = Outbox(max_queued_bytes=10, per_source=2)
    one, two = Queued(), Queued()
    assert outbox.offer("aaa", one) is None
    assert outbox.offer("bbb", one) is None
    assert outbox.offer("ccc", one) == "2 notifications were waiting"
    assert outbox.offer("ccc", two) is None
    assert outbox.offer("dd", two) == "9 bytes of notifications were waiting on this connection"
    outbox.append("an ending notice beyond the bound")
    outbox.append(Close(1000, "bye"))
    assert (len(outbox), outbox.queued_bytes) == (5, 42)

    async def drain() -> list[object]:
        return [await outbox.get() for _ in range(5)]

    assert trio.run(drain) == [
        "aaa",
        "bbb",
        "ccc",
        "an ending notice beyond the bound",
        Close(1000, "bye"),
    ]
    assert (one.queued, two.queued, outbox.queued_bytes) == (0, 0, 0)


def test_responses_wait_while_the_outbox_is_over_its_bound() -> None:
    async def scenario() -> None:
        outbox = Outbox(max_queued_bytes=4, per_source=10)
        await outbox.put("12345")  # over the bound once queued
        done = trio.Event()

        async def respond() -> None:
            await outbox.put("next")
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(respond)
            await trio.testing.wait_all_tasks_blocked()
            assert not done.is_set()
            assert await outbox.get() == "12345"
            await done.wait()
            assert await outbox.get() == "next"

    trio.run(scenario)
