"""One error root per layer (`ChainError` for the ledger, `NodeError` for the node), and one shape
for every rejection that carries a reason and a message (`chain.errors.Rejection`)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import chain
import node
import vdf
import wallet
from chain.errors import (
    BlockRejection,
    ChainError,
    InvalidBlock,
    InvalidTransaction,
    Rejection,
    TxRejection,
)
from chain.runtime.scheduler import ScheduleError
from consensus.finality import InvalidVote, VoteRejection
from node.errors import CliError, NodeError
from node.rpc.limits import RpcLimitsError
from node.rpc.origins import CorsError
from node.rpc.registry import MethodRegistrationError, UndeclaredParamError
from node.workload_access import AccessDenied, AccessRefusal
from vdf.errors import VdfError
from wallet.errors import WalletError
from wallet.messages import RefusalReason, Refused


def _exceptions(package: ModuleType) -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found.append(cls)
    return found


@pytest.mark.parametrize(
    ("package", "root"),
    [(chain, ChainError), (node, NodeError), (wallet, WalletError), (vdf, VdfError)],
)
def test_every_exception_of_a_layer_derives_from_its_root(
    package: ModuleType, root: type[Exception]
) -> None:
    exceptions = _exceptions(package)
    assert len(exceptions) > 5
    outside = [cls for cls in exceptions if not issubclass(cls, root)]
    assert outside == []


@pytest.mark.parametrize(
    ("error", "root", "text"),
    [
        (InvalidTransaction(TxRejection.STALE_NONCE, "nonce 3 < 4"), ChainError, "stale nonce: "),
        (InvalidBlock(BlockRejection.BAD_SEAL, "nonce 3 < 4"), ChainError, "bad seal: "),
        (InvalidVote(VoteRejection.WRONG_ROUND, "nonce 3 < 4"), Exception, "round out of range: "),
        (Refused(RefusalReason.BUSY, "nonce 3 < 4"), WalletError, "Busy: "),
        (AccessDenied(AccessRefusal.EXPIRED, "nonce 3 < 4"), NodeError, ""),
    ],
)
def test_every_rejection_carries_its_reason_and_message(
    error: Exception, root: type[Exception], text: str
) -> None:
    assert isinstance(error, Rejection) and isinstance(error, root)
    assert error.message == "nonce 3 < 4"
    assert str(error) == text + "nonce 3 < 4"
    assert error.args == (text + "nonce 3 < 4",)


def test_a_vote_rejection_is_not_a_ledger_error() -> None:
    # The shape is shared; the layer is not: no `except ChainError` catches a refused vote.
    assert not issubclass(InvalidVote, ChainError) and not issubclass(InvalidVote, NodeError)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (ScheduleError, ValueError),
        (RpcLimitsError, ValueError),
        (CorsError, ValueError),
        (MethodRegistrationError, ValueError),
        (UndeclaredParamError, LookupError),
    ],
)
def test_errors_under_a_root_are_still_caught_as_before(
    error: type[Exception], builtin: type[Exception]
) -> None:
    with pytest.raises(builtin):
        raise error("x")


def test_cli_errors_keep_their_exit_codes() -> None:
    assert issubclass(CliError, NodeError) and CliError.exit_code == 1
