"""The `balances` module: transfers, fee withdrawal (fees burned, tips to the block author) and
total issuance. Invariant: the free balances of all accounts add up to the total issuance."""

from __future__ import annotations

import enum

from chain.primitives import AccountId
from chain.runtime import system
from chain.runtime.framework import AccountRef, Arg, ArgKind, CallDef, Context, Module
from chain.state import Overlay, StateReader, storage_key

NAME = "balances"
TOTAL_ISSUANCE_KEY = storage_key(NAME, "total_issuance")


class BalancesError(enum.Enum):
    INSUFFICIENT_BALANCE = "InsufficientBalance"
    EXISTENTIAL_DEPOSIT = "ExistentialDeposit"


def total_issuance(state: StateReader) -> int:
    data = state.get(TOTAL_ISSUANCE_KEY)
    return 0 if data is None else int.from_bytes(data, "big")


def set_total_issuance(state: Overlay, amount: int) -> None:
    state.put(TOTAL_ISSUANCE_KEY, amount.to_bytes(16, "big"))


class Balances(Module):
    name = NAME

    def calls(self) -> list[CallDef]:
        return [
            CallDef(
                NAME,
                "transfer",
                (Arg("dest", ArgKind.ACCOUNT), Arg("amount", ArgKind.BALANCE)),
                self.transfer,
                "Move `amount` of the sender's free balance to `dest`.",
            )
        ]

    def transfer(self, ctx: Context, sender: AccountId, dest: AccountId, amount: int) -> None:
        state = ctx.state
        source = system.account(state, sender)
        if amount > source.free:
            raise self.unaffordable(
                BalancesError.INSUFFICIENT_BALANCE,
                f"transfer of {amount} exceeds the free balance {source.free}",
            )
        if dest == sender:
            ctx.emit(
                NAME, "Transfer", source=AccountRef(sender), dest=AccountRef(dest), amount=amount
            )
            return
        target = system.read_account(state, dest)
        if target is None and amount < ctx.config.existential_deposit:
            raise self.fail(
                BalancesError.EXISTENTIAL_DEPOSIT,
                f"a new account needs at least {ctx.config.existential_deposit}, got {amount}",
            )
        target = target or system.EMPTY_ACCOUNT
        system.put_account(state, sender, system.AccountInfo(source.nonce, source.free - amount))
        system.put_account(state, dest, system.AccountInfo(target.nonce, target.free + amount))
        ctx.emit(NAME, "Transfer", source=AccountRef(sender), dest=AccountRef(dest), amount=amount)


def withdraw_fee(
    ctx: Context, who: AccountId, info: system.AccountInfo, fee: int, tip: int
) -> None:
    """Charge a transaction: bump the nonce, burn the fee, pay the tip to the author.
    The caller has checked that `info.free` covers fee + tip."""
    state = ctx.state
    system.put_account(state, who, system.AccountInfo(info.nonce + 1, info.free - fee - tip))
    if fee:
        set_total_issuance(state, total_issuance(state) - fee)
    if tip:
        author = ctx.env.author
        current = system.account(state, author)
        system.put_account(state, author, system.AccountInfo(current.nonce, current.free + tip))
    ctx.emit(NAME, "TransactionFeePaid", who=AccountRef(who), fee=fee, tip=tip)
