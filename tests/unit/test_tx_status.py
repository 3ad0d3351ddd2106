"""Which transaction statuses are final: one list, read by the chain service (which closes a
watch on one) and by the CLI following a transaction from an RPC server it does not trust."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from chain.pool import PoolStatus
from consensus.tx_status import FINAL_STATUSES, status_is_final
from tests.factories import CHARLIE
from tests.unit.test_chain_service import block_at, open_chain, transfer

HASH = "0x" + "ab" * 32


@pytest.mark.parametrize(
    ("status", "final"),
    [
        ("future", False),
        ("ready", False),
        ("retracted", False),
        ("invalid", True),
        ("dropped", True),
        ({"inBlock": HASH}, False),
        ({"finalized": HASH}, True),
        ({"usurped": HASH}, True),
    ],
)
def test_final_statuses(status: object, final: bool) -> None:
    assert status_is_final(status) is final


@pytest.mark.parametrize(
    "status",
    [{}, {"finalized": HASH, "inBlock": HASH}, ["finalized"], 1, None, b"finalized", "Finalized"],
)
def test_what_is_no_status_is_not_final_and_raises_nothing(status: object) -> None:
    assert status_is_final(status) is False


def test_the_pool_final_statuses_are_in_the_list() -> None:
    pool_final = {PoolStatus.INVALID, PoolStatus.DROPPED, PoolStatus.USURPED}
    assert FINAL_STATUSES == {str(s) for s in pool_final} | {"finalized"}


def test_a_watch_ends_after_the_final_status_of_a_real_chain_service(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    genesis = chain.store.best_hash
    tx = transfer(chain, CHARLIE, 0)
    block = block_at(chain, genesis, 2, [tx])

    async def scenario() -> list[object]:
        _, statuses = await chain.watch(tx)
        assert await chain.import_block(block)
        assert chain.finalize(block.hash, None)
        seen: list[object] = []
        with trio.fail_after(5):
            async for status in statuses:  # ends only when the service closes the watch
                seen.append(status)
        return seen

    seen = trio.run(scenario)
    assert seen[0] == "ready"
    assert seen[-1] == {"finalized": "0x" + block.hash.hex()}
    assert [status_is_final(s) for s in seen] == [False] * (len(seen) - 1) + [True]
