"""The JSON-RPC error a handler raises, the codes the server uses, and the one place where
ledger rejections become JSON-RPC codes (Substrate's author codes, so its tools understand them)."""

from __future__ import annotations

from chain.errors import InvalidTransaction, TxRejection
from node.errors import NodeError

# JSON-RPC 2.0 reserved codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Server errors, numbered like jsonrpsee (Substrate's RPC server) where it has an equivalent.
TOO_MANY_SUBSCRIPTIONS = -32006
OVERSIZED_REQUEST = -32007
OVERSIZED_RESPONSE = -32008
SERVER_IS_BUSY = -32009
# Ours: jsonrpsee has no equivalent.
WEBSOCKET_REQUIRED = -32020
SUBSCRIPTION_DROPPED = -32021

# Substrate's transaction pool (author_*) codes.
INVALID_TRANSACTION = 1010
UNKNOWN_VALIDITY = 1011
TEMPORARILY_BANNED = 1012
ALREADY_IMPORTED = 1013
PRIORITY_TOO_LOW = 1014
IMMEDIATELY_DROPPED = 1016
# Substrate's state/chain "unknown block" code.
UNKNOWN_BLOCK = 4003


class RpcError(NodeError):
    """An error returned to the caller as a JSON-RPC error object.

    `message` and `data` are shown to the client verbatim: they must say what was wrong with
    the request and must never carry secrets or server internals. `data` must be JSON.
    """

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


_POOL_CODES: dict[TxRejection, int] = {
    TxRejection.TEMPORARILY_BANNED: TEMPORARILY_BANNED,
    TxRejection.ALREADY_IMPORTED: ALREADY_IMPORTED,
    TxRejection.PRIORITY_TOO_LOW: PRIORITY_TOO_LOW,
    TxRejection.POOL_FULL: IMMEDIATELY_DROPPED,
}


def invalid_transaction_error(rejection: InvalidTransaction) -> RpcError:
    """The error `author_submitExtrinsic` returns for a transaction the pool refused.

    Pool-state refusals keep their own Substrate code; every other reason is 1010, with the
    reason and the ledger's message (which names the offending field) as the message.
    """
    code = _POOL_CODES.get(rejection.reason, INVALID_TRANSACTION)
    return RpcError(code, f"{rejection.reason.value}: {rejection.message}")
