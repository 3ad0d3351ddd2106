"""`wallet_list`: the wallet requests (and through them every wallet) newest first, a bounded
page at a time, as the dashboard lists them."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.rpc.errors import RpcError
from node.rpc.methods import MAX_PAGE
from node.rpc.registry import Registry
from node.rpc.wallet_methods import register
from tests.unit.test_wallet_rpc import call
from tests.unit.test_wallet_service import Network, run


def test_lists_requests_newest_first_with_their_wallets_in_pages(tmp_path: Path) -> None:
    net = Network(tmp_path)
    registry = Registry()
    register(registry, net.service(0), net.ledger)
    assert call(registry, "wallet_list") == {"total": 0, "requests": []}
    first = net.request()
    created = run(lambda: net.service(net.coordinator(first)).create(first))
    second, third = net.request(), net.request()
    listed = call(registry, "wallet_list")
    assert listed["total"] == 3
    assert [r["id"] for r in listed["requests"]] == [third, second, first]
    assert listed["requests"] == [
        call(registry, "wallet_request", i) for i in (third, second, first)
    ]
    assert listed["requests"][2]["wallet"]["groupKey"] == "0x" + created.group_key.hex()
    assert [r["status"] for r in listed["requests"]] == ["pending", "pending", "registered"]
    # Pages: offset counts from the newest; past the end is an empty page, not an error.
    assert [r["id"] for r in call(registry, "wallet_list", 1, 1)["requests"]] == [second]
    assert [r["id"] for r in call(registry, "wallet_list", 2, 5)["requests"]] == [first]
    assert call(registry, "wallet_list", 3, 5) == {"total": 3, "requests": []}
    assert call(registry, "wallet_list", 10**9, MAX_PAGE) == {"total": 3, "requests": []}


@pytest.mark.parametrize(
    ("offset", "limit"), [(-1, 10), (0, 0), (0, MAX_PAGE + 1), (0, -5), ("0", 10)]
)
def test_pages_out_of_bounds_are_refused(tmp_path: Path, offset: object, limit: object) -> None:
    net = Network(tmp_path)
    registry = Registry()
    register(registry, net.service(0), net.ledger)
    with pytest.raises(RpcError) as info:
        call(registry, "wallet_list", offset, limit)
    assert info.value.code == -32602
