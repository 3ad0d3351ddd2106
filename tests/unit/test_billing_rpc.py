"""Billing over RPC and in the CLI's words: prices, a wallet's invoices, an application's
statement and an operator's earnings, read from a real chain state; pages are bounded."""

from __future__ import annotations

from typing import Any

import pytest

from chain.address import encode_address
from chain.primitives import AccountId, Hash32
from chain.runtime.billing import encode_payees
from chain.state import StateReader
from node.cli import build_parser
from node.commands.billing import price_lines, statement_lines
from node.rpc import billing_methods
from node.rpc.errors import RpcError
from node.rpc.methods import account, app_name
from node.rpc.registry import Params, Registry
from tests.unit.test_billing import (
    PAY,
    PERIOD_S,
    PRICES,
    WALLET,
    billed_chain,
    deploy,
    node_of,
    report_call,
    settle,
    until_period,
    usage,
)
from tests.unit.test_towers import OPERATORS, TowerChain
from tests.unit.test_wallet_rpc import call


class ChainStates:
    """The states a query reads: always the chain's current one (a fake of the block store)."""

    def __init__(self, chain: TowerChain) -> None:
        self.chain = chain

    def state_at(self, at: Hash32) -> StateReader:
        return self.chain.state


def registry_for(chain: TowerChain) -> Registry:
    registry = Registry()

    def resolve(params: Params) -> Hash32:
        return Hash32(b"\x00" * 32)

    billing_methods.register(
        registry, ChainStates(chain), resolve, account, app_name, chain.runtime.config
    )
    return registry


def test_prices_invoices_statement_and_earnings() -> None:
    chain = billed_chain()
    registry = registry_for(chain)
    prices = call(registry, "billing_prices")
    assert prices["classes"]["cpu"] == {
        "cpuMillicoreHour": str(PRICES.cpu_millicore_hour),
        "memoryGibHour": str(PRICES.memory_gib_hour),
        "diskGibHour": "0",
        "gpuHour": "0",
        "replicaHourMinimum": str(PRICES.replica_hour_minimum),
    }
    assert prices["periodSeconds"] == PERIOD_S
    assert "  CPU millicore-hour     3600" in price_lines(prices)
    period = deploy(chain, replicas=1)
    until_period(chain, period + 1)
    node = node_of(chain, 0)
    chain.send(OPERATORS[node], report_call(node, period, [usage(0)]))
    statement = call(registry, "billing_statement", "web")
    (due,) = statement["periods"]
    assert due["period"] == period and due["invoice"] is None and not due["paid"]
    settle(chain, period)
    wallet = encode_address(WALLET.public)
    page = call(registry, "billing_invoices", wallet)
    (invoice,) = page["invoices"]
    assert page["total"] == 1 and invoice["id"] == 0 and invoice["paid"] is False
    operator = encode_address(OPERATORS[node].public)
    assert invoice["lines"] == [{"operator": operator, "amount": invoice["total"]}]
    lines = [(AccountId(OPERATORS[node].public), int(invoice["total"]))]
    chain.send(WALLET, PAY.call(invoice=0, payees=encode_payees(lines)))
    assert call(registry, "billing_invoices", wallet)["invoices"] == []
    assert call(registry, "billing_invoices", None, 0)["invoices"][0]["paid"] is True
    statement = call(registry, "billing_statement", "web")
    assert statement["periods"][0]["paid"] is True
    shown = statement_lines(statement)
    assert shown[0].startswith(f"web (instance 1), paid by {wallet}")
    assert f"  period {period}: {invoice['total']} (paid)" in shown
    earnings = call(registry, "billing_earnings", operator)
    assert earnings["earnings"] == [{"period": period, "amount": invoice["total"]}]


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("billing_invoices", [], "invalid params: give a wallet or an invoice id"),
        ("billing_invoices", [None, -1], "invalid params: an invoice id is >= 0"),
        ("billing_earnings", ["5E9bBSvWH3puX15XZaxBDKYP7Q4ZGpWhhL4c1eQyBzvaZzsn", 0, 101], "limit"),
        ("billing_earnings", ["5E9bBSvWH3puX15XZaxBDKYP7Q4ZGpWhhL4c1eQyBzvaZzsn", -1], "offset"),
    ],
)
def test_bad_params_are_refused(method: str, params: list[Any], message: str) -> None:
    registry = registry_for(billed_chain())
    with pytest.raises(RpcError) as info:
        call(registry, method, *params)
    assert message in info.value.message


def test_an_app_that_no_wallet_pays_has_no_statement() -> None:
    registry = registry_for(billed_chain())
    assert call(registry, "billing_statement", "web") is None


def test_the_cli_parses_billing_commands_and_deploy_with_a_wallet() -> None:
    parser = build_parser()
    args = parser.parse_args(["app", "deploy", "web.yaml", "--from", "alice", "--wallet", "W"])
    assert args.wallet == "W"
    assert parser.parse_args(["app", "deploy", "web.yaml", "--from", "alice"]).wallet is None
    assert parser.parse_args(["billing", "show", "web"]).name == "web"
    assert parser.parse_args(["billing", "prices"]).billing_command == "prices"
    assert parser.parse_args(["query", "earnings", "OP"]).operator == "OP"
