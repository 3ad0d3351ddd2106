"""Deleted applications' volumes: a tombstone per deleted instance, kept for the genesis
retention period and removed in block execution (oldest first, a bounded number per block);
`kept_instances` names exactly the instances whose persistent volumes nodes keep."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chain import codec
from chain.runtime import apps
from chain.runtime.apps import KeptInstance, Tombstone
from chain.runtime.manifest import validate_manifest
from tests.factories import ALICE, BOB, CHARLIE
from tests.unit.test_apps import CREATE, DELETE, UPDATE, WEB, send_together
from tests.unit.test_towers import TowerChain, tower_spec

RETENTION = 5
"""Seconds; the test chain's blocks are one second apart."""


def chain(retention: int = RETENTION) -> TowerChain:
    """No nodes: replicas stay pending, which changes nothing of an application's lifecycle."""
    spec = tower_spec()
    return TowerChain(
        replace(spec, runtime=replace(spec.runtime, volume_retention_seconds=retention))
    )


def db(name: str = "db", image: str = "busybox") -> bytes:
    data = WEB.to_json()
    data["metadata"]["name"] = name
    data["spec"]["replicas"] = 1
    data["spec"]["containers"][0]["image"] = image
    del data["spec"]["ingress"]
    return validate_manifest(data).canonical_json()


def timestamp(c: TowerChain) -> int:
    """The timestamp of the chain's last block (see `MemoryChain.env`)."""
    return 1_000 * c.number


def test_a_deleted_instance_is_kept_until_its_retention_ends() -> None:
    c = chain()
    c.send(ALICE, CREATE.call(manifest=db()))
    c.send(ALICE, UPDATE.call(manifest=db(image="busybox:2")))
    execution = c.send(ALICE, DELETE.call(app="db"))
    deleted_at, until = c.number, timestamp(c) + RETENTION * 1_000
    dead = Tombstone("db", ALICE.public, 1, deleted_at, until)
    assert apps.tombstone(c.state, 1) == dead
    assert apps.tombstones_of(c.state, "db") == [dead]
    (event,) = [e for e in execution.events if e.name == "AppDeleted"]  # type: ignore[attr-defined]
    assert dict(event.data) == {"app": "db", "instance": 1, "retained_until": until}
    assert apps.kept_instances(c.state) == {1: KeptInstance("db", ALICE.public, until)}
    # Bob takes the name meanwhile: a new instance, alice's still kept beside it.
    c.send(BOB, CREATE.call(manifest=db()))
    assert apps.kept_instances(c.state) == {
        1: KeptInstance("db", ALICE.public, until),
        2: KeptInstance("db", BOB.public, None),
    }
    while timestamp(c) + 1_000 < until:
        c.execute([])
        assert apps.tombstone(c.state, 1) == dead
    # The first block whose timestamp reaches the end of the retention removes the tombstone.
    execution = c.execute([])
    assert timestamp(c) == until
    assert apps.tombstone(c.state, 1) is None and apps.tombstones_of(c.state, "db") == []
    assert apps.tombstones(c.state) == []
    ended = [e for e in execution.events if e.name == "RetentionEnded"]
    assert [dict(e.data) for e in ended] == [{"app": "db", "instance": 1}]
    assert apps.kept_instances(c.state) == {2: KeptInstance("db", BOB.public, None)}
    # An empty expiry queue leaves nothing behind in state.
    assert c.state.get(apps.EXPIRY_BOUNDS_KEY) is None


def test_instances_deleted_in_one_block_are_each_kept() -> None:
    c = chain()
    send_together(c, (ALICE, CREATE.call(manifest=db())), (BOB, CREATE.call(manifest=db("api"))))
    # Deleted, created again by another owner and deleted again, all in one block.
    send_together(
        c,
        (ALICE, DELETE.call(app="db")),
        (CHARLIE, CREATE.call(manifest=db())),
        (CHARLIE, DELETE.call(app="db")),
        (BOB, DELETE.call(app="api")),
    )
    until = timestamp(c) + RETENTION * 1_000
    assert [(t.instance, t.owner) for t in apps.tombstones_of(c.state, "db")] == [
        (1, ALICE.public),
        (3, CHARLIE.public),
    ]
    assert apps.kept_instances(c.state) == {
        1: KeptInstance("db", ALICE.public, until),
        2: KeptInstance("api", BOB.public, until),
        3: KeptInstance("db", CHARLIE.public, until),
    }
    assert apps.app_names(c.state) == []
    for _ in range(RETENTION):
        c.execute([])
    assert apps.kept_instances(c.state) == {}


def test_expiry_is_bounded_per_block_and_keeps_its_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apps, "MAX_EXPIRED_PER_BLOCK", 2)
    c = chain()
    names = [f"db{i}" for i in range(5)]
    send_together(c, *((ALICE, CREATE.call(manifest=db(n))) for n in names))
    send_together(c, *((ALICE, DELETE.call(app=n)) for n in names[:3]))
    c.execute([])
    send_together(c, *((ALICE, DELETE.call(app=n)) for n in names[3:]))
    first_until = apps.tombstones(c.state)[0].retained_until
    while timestamp(c) + 1_000 < first_until:
        c.execute([])
    # Three expire at once, two are removed in this block, one in the next, with the fourth
    # and fifth kept: their retention ends a block later.
    c.execute([])
    assert [t.name for t in apps.tombstones(c.state)] == ["db2", "db3", "db4"]
    c.execute([])
    assert [t.name for t in apps.tombstones(c.state)] == ["db3", "db4"]
    c.execute([])
    assert apps.tombstones(c.state) == []


def test_no_retention_removes_the_tombstone_at_the_next_block() -> None:
    c = chain(retention=0)
    c.send(ALICE, CREATE.call(manifest=db()))
    c.send(ALICE, DELETE.call(app="db"))
    assert apps.kept_instances(c.state) == {1: KeptInstance("db", ALICE.public, timestamp(c))}
    c.execute([])
    assert apps.kept_instances(c.state) == {}


def test_a_tombstone_round_trips_and_refuses_malformed_encodings() -> None:
    dead = Tombstone("db", ALICE.public, 7, 12, 2**63)
    assert Tombstone.decode(dead.encode()) == dead
    fields = codec.decode(dead.encode())
    assert isinstance(fields, list)
    cases: list[tuple[codec.RlpItem, str]] = [
        (fields[:4], "a tombstone is [name, owner, instance, deleted at, until]"),
        ([[b"db"], *fields[1:]], "a tombstone's name is bytes"),
        ([fields[0], b"\x01" * 31, *fields[2:]], "owner must be 32 bytes"),
        ([*fields[:4], b"\x00\x07"], "retained until has a leading zero byte"),
    ]
    for bad, message in cases:
        with pytest.raises(codec.CodecError) as info:
            Tombstone.decode(codec.encode(bad))
        assert str(info.value) == message
