"""JSON-RPC methods of platform wallets: follow a wallet request (made by its owner with the
`wallets.request` extrinsic, which the owner signs and pays), show a wallet, and transfer from
one with the owner's login signature. None of them makes the node's operator pay anything."""

from __future__ import annotations

from typing import Any

from chain.address import encode_address
from chain.errors import InvalidTransaction
from chain.primitives import AccountId
from chain.runtime import system, wallets
from node.rpc.errors import RpcError, invalid_transaction_error
from node.rpc.methods import _page as page
from node.rpc.methods import account, block_hash, hex_bytes
from node.rpc.registry import Params, Registry
from wallet.committee import WalletService, WalletServiceError
from wallet.member import WalletLedger

WALLET_ERROR = 1100
"""A wallet operation that did not happen (DKG failed, too few members signed, unknown wallet);
the message says why and which members failed."""


def amount(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a non-negative integer")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an integer") from None
    if number < 0:
        raise ValueError("an amount is not negative")
    return number


def nonce(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("expected a non-negative integer")
    return int(value)


def wallet_json(ledger: WalletLedger, group_key: AccountId) -> dict[str, Any] | None:
    state = ledger.state()
    record = wallets.get_wallet(state, group_key)
    if record is None:
        return None
    return {
        "address": encode_address(group_key),
        "groupKey": "0x" + group_key.hex(),
        "committee": [encode_address(m) for m in record.committee],
        "threshold": record.threshold,
        "login": encode_address(record.login_key),
        "registeredAt": record.registered_at,
        "free": str(system.account(state, group_key).free),
        "purpose": record.purpose.name.lower(),
    }


def vault_json(ledger: WalletLedger, owner: AccountId) -> dict[str, Any] | None:
    """An owner's vault key (what its secrets are sealed to) and the members' verifying shares
    (what partial decryptions are checked against), as the best chain has them."""
    vault = wallets.vault_of(ledger.state(), owner)
    if vault is None:
        return None
    return {
        "owner": encode_address(owner),
        "vaultKey": "0x" + vault.group_key.hex(),
        "committee": [encode_address(m) for m in vault.committee],
        "threshold": vault.threshold,
        "verifyingShares": ["0x" + s.hex() if s else None for s in vault.verifying_shares],
        "registeredAt": vault.registered_at,
    }


def request_json(ledger: WalletLedger, request_id: int) -> dict[str, Any] | None:
    """A wallet request as the best chain has it: pending (with its committee and when it
    expires), registered (with the wallet), or expired; None if it was never made."""
    state = ledger.state()
    if request_id >= wallets.next_request_id(state):
        return None
    answer: dict[str, Any] = {"id": request_id}
    pending = wallets.get_request(state, request_id)
    if pending is not None:
        return answer | {
            "status": "pending",
            "purpose": pending.purpose.name.lower(),
            "login": encode_address(pending.requester),
            "committee": [encode_address(m) for m in pending.committee],
            "coordinator": encode_address(wallets.coordinator_of(request_id, pending.committee)),
            "threshold": pending.threshold,
            "createdAt": pending.created_at,
            "expiresAt": pending.expires_at,
            "deposit": str(pending.deposit),
        }
    group_key = wallets.wallet_of_request(state, request_id)
    if group_key is None:
        return answer | {"status": "expired"}
    return answer | {"status": "registered", "wallet": wallet_json(ledger, group_key)}


def register(registry: Registry, service: WalletService, ledger: WalletLedger) -> None:
    @registry.method("wallet_request", params=["id"], unsafe=False)
    def request(params: Params) -> dict[str, Any] | None:
        return request_json(ledger, params.required("id", nonce))

    @registry.method("wallet_list", params=["offset?", "limit?"], unsafe=False)
    def list_requests(params: Params) -> dict[str, Any]:
        """Wallet requests newest first, a page at a time, each as `wallet_request` shows it
        (a registered one with its wallet): every wallet is made by a request."""
        offset, limit = page(params)
        total = wallets.next_request_id(ledger.state())
        newest = total - 1 - offset
        ids = range(newest, max(newest - limit, -1), -1)
        return {"total": total, "requests": [request_json(ledger, i) for i in ids]}

    @registry.method("wallet_signingStatus", params=["hash"], unsafe=False)
    def signing_status(params: Params) -> dict[str, Any] | None:
        record = service.signing(params.required("hash", block_hash))
        if record is None:
            return None
        return {
            "wallet": encode_address(record.wallet),
            "signers": [encode_address(m) for m in record.signers],
            "skipped": [{"member": encode_address(m), "reason": why} for m, why in record.skipped],
        }

    @registry.method("wallet_vault", params=["owner"], unsafe=False)
    def vault(params: Params) -> dict[str, Any] | None:
        return vault_json(ledger, params.required("owner", account))

    @registry.method("wallet_show", params=["address"], unsafe=False)
    def show(params: Params) -> dict[str, Any] | None:
        return wallet_json(ledger, params.required("address", account))

    @registry.method(
        "wallet_transfer",
        params=["address", "to", "amount", "login_signature", "nonce?"],
        unsafe=False,
    )
    async def transfer(params: Params) -> str:
        group_key = params.required("address", account)
        dest = params.required("to", account)
        value = params.required("amount", amount)
        signature = params.required("login_signature", hex_bytes)
        at = params.optional("nonce", nonce)
        try:
            tx_hash = await service.transfer(group_key, dest, value, signature, nonce=at)
        except WalletServiceError as error:
            raise RpcError(WALLET_ERROR, str(error)) from None
        except InvalidTransaction as exc:
            raise invalid_transaction_error(exc) from None
        return "0x" + tx_hash.hex()
