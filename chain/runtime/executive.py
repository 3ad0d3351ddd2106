"""The executive: validates transactions, applies them, and executes whole blocks.

`execute_block(parent_state, env, extrinsics)` is the state transition function: the same
inputs give the same state root on every node."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chain.blocks import Transaction, decode_transaction, tx_hash
from chain.codec import CodecError
from chain.errors import (
    BlockRejection,
    DispatchError,
    InvalidBlock,
    InvalidTransaction,
    OutdatedCall,
    TxRejection,
    UnaffordableCall,
)
from chain.primitives import Hash32
from chain.runtime import balances, system
from chain.runtime.apps import Apps
from chain.runtime.balances import Balances
from chain.runtime.billing import Billing
from chain.runtime.config import RuntimeConfig
from chain.runtime.configs import Configs
from chain.runtime.epochs import Epochs
from chain.runtime.framework import AccountRef, BlockEnv, CallDef, Context, Event, Module
from chain.runtime.nodes import Nodes
from chain.runtime.offences import Offences
from chain.runtime.secrets import Secrets
from chain.runtime.system import System
from chain.runtime.towers import Towers
from chain.runtime.usage import Usage
from chain.runtime.wallets import Wallets
from chain.signature import verify
from chain.state import Overlay, StateReader, TrieState
from chain.trie import TrieCommit
from chain.validity import ValidTransaction


@dataclass(frozen=True, slots=True)
class ExtrinsicOutcome:
    hash: Hash32
    error: DispatchError | None
    """None when the call succeeded; the fee was paid either way."""


@dataclass(frozen=True, slots=True)
class BlockExecution:
    env: BlockEnv
    extrinsics: tuple[bytes, ...]
    outcomes: tuple[ExtrinsicOutcome, ...]
    events: tuple[Event, ...]
    commit: TrieCommit
    """The new state root and the trie nodes to persist with the block."""
    base: Hash32
    """The state root the block was executed on (its parent's)."""
    changes: Mapping[bytes, bytes | None]
    """What the block wrote, by raw key (None deleted): `base` with these is `commit.root`."""


@dataclass(frozen=True, slots=True)
class CheckedTransaction:
    tx: Transaction
    call: CallDef
    args: list[Any]
    fee: int
    account: system.AccountInfo


def default_modules() -> tuple[Module, ...]:
    """The runtime's modules, in hook order: `system` records the block first."""
    return (
        System(),
        Balances(),
        Nodes(),
        Towers(),
        Epochs(),
        Apps(),
        Usage(),
        Wallets(),
        Billing(),
        Offences(),
        Configs(),
        Secrets(),
    )


class Runtime:
    def __init__(
        self,
        config: RuntimeConfig,
        genesis_hash: Hash32,
        modules: Iterable[Module] | None = None,
    ) -> None:
        self.config = config
        self.genesis_hash = genesis_hash
        self.modules = tuple(modules if modules is not None else default_modules())
        self.calls: dict[tuple[bytes, bytes], CallDef] = {}
        for module in self.modules:
            for call in module.calls():
                self.calls[(call.module.encode(), call.name.encode())] = call
        self._heavy_names = tuple({name for (_, name), call in self.calls.items() if call.heavy})
        """The function names of the heavy calls: bytes without any of them hold none."""

    def call_def(self, module: str, function: str) -> CallDef:
        try:
            return self.calls[(module.encode(), function.encode())]
        except KeyError:
            raise InvalidTransaction(
                TxRejection.UNKNOWN_CALL, f"no call {module}.{function} in this runtime"
            ) from None

    def is_heavy(self, encoded: bytes) -> bool:
        """Whether `encoded` is a transaction whose call is declared heavy (`CallDef.heavy`).
        Bytes that do not decode are not: their checks fail at once. Asked of every gossiped
        transaction, it decodes only those that hold a heavy call's name."""
        if not any(name in encoded for name in self._heavy_names):
            return False
        try:
            tx = decode_transaction(encoded)
        except CodecError:
            return False
        call = self.calls.get((tx.module, tx.function))
        return call is not None and call.heavy

    # -- transactions -----------------------------------------------------------------------

    def check(
        self, state: StateReader, encoded: bytes, *, signature_checked: bool = False
    ) -> CheckedTransaction:
        """Every check that does not depend on the nonce policy; raises InvalidTransaction."""
        if len(encoded) > self.config.max_tx_bytes:
            raise InvalidTransaction(
                TxRejection.OVERSIZE,
                f"transaction is {len(encoded)} bytes, at most {self.config.max_tx_bytes} allowed",
            )
        try:
            tx = decode_transaction(encoded)
        except CodecError as exc:
            raise InvalidTransaction(
                TxRejection.MALFORMED, f"not a signed transaction: {exc}"
            ) from None
        if tx.genesis_hash != self.genesis_hash:
            raise InvalidTransaction(
                TxRejection.WRONG_GENESIS,
                f"signed for genesis 0x{tx.genesis_hash.hex()}, this chain is "
                f"0x{self.genesis_hash.hex()}",
            )
        call = self.calls.get((tx.module, tx.function))
        if call is None:
            name = f"{tx.module.decode(errors='replace')}.{tx.function.decode(errors='replace')}"
            raise InvalidTransaction(TxRejection.UNKNOWN_CALL, f"no call {name} in this runtime")
        args = call.decode_args(tx.args)
        if not signature_checked and not verify(tx.sender, tx.signing_payload, tx.signature):
            raise InvalidTransaction(
                TxRejection.BAD_SIGNATURE, "the signature does not match the sender and payload"
            )
        checked = CheckedTransaction(
            tx, call, args, self.config.fee(len(encoded)), system.account(state, tx.sender)
        )
        self._check_account(checked)
        return checked

    def _check_account(self, checked: CheckedTransaction) -> None:
        tx, info, fee = checked.tx, checked.account, checked.fee
        if tx.nonce < info.nonce:
            raise InvalidTransaction(
                TxRejection.STALE_NONCE,
                f"nonce {tx.nonce} is already used; the account's next nonce is {info.nonce}",
            )
        if fee + tx.tip > info.free:
            raise InvalidTransaction(
                TxRejection.CANNOT_PAY_FEES,
                f"fee {fee} + tip {tx.tip} exceeds the free balance {info.free}",
            )

    def precheck(
        self, state: StateReader, encoded: bytes, *, signature_checked: bool = False
    ) -> ValidTransaction:
        """The cheap part of pool validation against `state` (the best block's): size, decoding,
        genesis, call and arguments, signature (unless these very bytes were verified before:
        `signature_checked`), the nonce window and the fee against the free balance. What is left
        is the dry run (`revalidate`), which may cost far more (a large manifest is parsed and
        checked), so a pool can refuse on these checks first."""
        checked = self.check(state, encoded, signature_checked=signature_checked)
        tx = checked.tx
        ahead = tx.nonce - checked.account.nonce
        if ahead > self.config.max_future_nonces:
            raise InvalidTransaction(
                TxRejection.FUTURE_NONCE,
                f"nonce {tx.nonce} is {ahead} ahead of the account's next nonce "
                f"{checked.account.nonce}; at most {self.config.max_future_nonces} allowed",
            )
        return ValidTransaction(
            hash=tx_hash(encoded),
            encoded=encoded,
            tx=tx,
            sender=tx.sender,
            nonce=tx.nonce,
            tip=tx.tip,
            account_nonce=checked.account.nonce,
            fee=checked.fee,
            balance=checked.account.free,
            cost=checked.fee + tx.tip,
        )

    def validate_transaction(
        self, state: StateReader, encoded: bytes, env: BlockEnv
    ) -> ValidTransaction:
        """Pool validation against `state`: `precheck`, then for a transaction that is next in
        line a dry run of its call, so that a transfer the sender cannot afford is refused at
        submission instead of failing in a block."""
        return self.revalidate(state, self.precheck(state, encoded), env)

    def revalidate(
        self, state: StateReader, valid: ValidTransaction, env: BlockEnv
    ) -> ValidTransaction:
        """Validity again after a new block, for a transaction that passed `precheck` before:
        only the nonce, the balance and the call's dry run can have changed; decoding and the
        signature cannot."""
        checked = self._check_again(state, valid)
        spent = self._dry_run(state, checked, env)
        return replace(
            valid,
            account_nonce=checked.account.nonce,
            balance=checked.account.free,
            cost=max(valid.fee + valid.tip, spent),
        )

    def recheck(self, state: StateReader, valid: ValidTransaction) -> ValidTransaction:
        """`revalidate` without the dry run: the nonce and the balance, which any block may
        change, in microseconds, for a pool that dry-runs a large call later and elsewhere. The
        cost stays what the last dry run found until the next one says otherwise."""
        checked = self._check_again(state, valid)
        return replace(valid, account_nonce=checked.account.nonce, balance=checked.account.free)

    def _check_again(self, state: StateReader, valid: ValidTransaction) -> CheckedTransaction:
        tx = valid.tx
        call = self.calls[(tx.module, tx.function)]
        checked = CheckedTransaction(
            tx, call, call.decode_args(tx.args), valid.fee, system.account(state, tx.sender)
        )
        self._check_account(checked)
        return checked

    def _dry_run(self, state: StateReader, checked: CheckedTransaction, env: BlockEnv) -> int:
        """For a transaction next in line, run its call on a scratch overlay, so that one the
        sender cannot afford is refused now instead of failing in a block. Returns how much the
        sender's free balance went down (0 when there was no dry run)."""
        if checked.tx.nonce != checked.account.nonce:
            return 0
        ctx = Context(Overlay(state), env, self.config, self.genesis_hash)
        try:
            self._apply_checked(ctx, checked)
        except OutdatedCall as exc:
            raise InvalidTransaction(TxRejection.OUTDATED, str(exc)) from None
        except UnaffordableCall as exc:
            raise InvalidTransaction(TxRejection.UNAFFORDABLE, str(exc)) from None
        except DispatchError as exc:
            raise InvalidTransaction(TxRejection.CALL_FAILED, str(exc)) from None
        return checked.account.free - system.account(ctx.state, checked.tx.sender).free

    def apply_extrinsic(
        self, ctx: Context, encoded: bytes, hash: Hash32, *, signature_checked: bool = False
    ) -> ExtrinsicOutcome:
        """Apply one extrinsic inside a block. Raises InvalidTransaction when it may not be in
        the block at all (then nothing was written); a failing call is an outcome, not an error.
        `hash` is `tx_hash(encoded)`, which every caller already holds."""
        checked = self.check(ctx.state, encoded, signature_checked=signature_checked)
        if checked.tx.nonce != checked.account.nonce:
            raise InvalidTransaction(
                TxRejection.FUTURE_NONCE,
                f"nonce {checked.tx.nonce} is not the account's next nonce {checked.account.nonce}",
            )
        try:
            self._apply_checked(ctx, checked)
            error = None
        except DispatchError as exc:
            error = exc
        return ExtrinsicOutcome(hash, error)

    def _apply_checked(self, ctx: Context, checked: CheckedTransaction) -> None:
        """Charge, then dispatch in a child overlay kept only if the call succeeds. Raises the
        DispatchError after the fee is charged and the call's writes are dropped."""
        tx = checked.tx
        balances.withdraw_fee(ctx, tx.sender, checked.account, checked.fee, tx.tip)
        outer = ctx.state
        inner = outer.child()
        ctx.state = inner
        ctx.fee = checked.fee
        try:
            checked.call.handler(ctx, tx.sender, *checked.args)
        except DispatchError as exc:
            ctx.emit(
                system.NAME,
                "ExtrinsicFailed",
                who=AccountRef(tx.sender),
                module=exc.module,
                error=exc.error,
                message=exc.message,
            )
            raise
        finally:
            ctx.state = outer
            ctx.fee = 0
        inner.merge_into(outer)
        ctx.emit(system.NAME, "ExtrinsicSuccess")

    # -- blocks -----------------------------------------------------------------------------

    def execute_block(
        self,
        parent: TrieState,
        env: BlockEnv,
        extrinsics: Iterable[bytes],
        *,
        verified: Container[bytes] = frozenset(),
        hashes: Sequence[Hash32] | None = None,
    ) -> BlockExecution:
        """Import-side execution: every extrinsic must apply, else the block is invalid. The
        signatures of those whose hash is in `verified` were verified before (by the pool).
        `hashes`, the extrinsics' `tx_hash`es, spares hashing them again when the caller has
        them (the importer, from the extrinsics root)."""
        extrinsics = tuple(extrinsics)
        ctx = Context(Overlay(parent), env, self.config, self.genesis_hash)
        self._initialize(ctx)
        outcomes = []
        total = 0
        if len(extrinsics) > self.config.max_block_extrinsics:
            raise InvalidBlock(
                BlockRejection.OVERSIZE,
                f"{len(extrinsics)} extrinsics, at most {self.config.max_block_extrinsics}",
            )
        if hashes is None:
            hashes = [tx_hash(encoded) for encoded in extrinsics]
        for index, (encoded, hash) in enumerate(zip(extrinsics, hashes, strict=True)):
            total += len(encoded)
            ctx.phase = index
            try:
                outcome = self.apply_extrinsic(
                    ctx, encoded, hash, signature_checked=hash in verified
                )
            except InvalidTransaction as exc:
                raise InvalidBlock(
                    BlockRejection.INVALID_EXTRINSIC, f"extrinsic {index}: {exc}"
                ) from None
            outcomes.append(outcome)
        if total > self.config.max_block_bytes:
            raise InvalidBlock(
                BlockRejection.OVERSIZE,
                f"extrinsics take {total} bytes, at most {self.config.max_block_bytes}",
            )
        return self._finish(ctx, parent, extrinsics, outcomes)

    def build_block(
        self,
        parent: TrieState,
        env: BlockEnv,
        candidates: Iterable[ValidTransaction],
        *,
        on_invalid: Callable[[ValidTransaction, InvalidTransaction], None],
        keep_going: Callable[[], bool] = lambda: True,
    ) -> BlockExecution:
        """Author-side execution: take pool transactions in order while they fit and
        `keep_going()` says there is time; one that no longer applies is skipped and reported."""
        ctx = Context(Overlay(parent), env, self.config, self.genesis_hash)
        self._initialize(ctx)
        included: list[bytes] = []
        outcomes: list[ExtrinsicOutcome] = []
        total = 0
        for candidate in candidates:
            if len(included) >= self.config.max_block_extrinsics or not keep_going():
                break
            if total + len(candidate.encoded) > self.config.max_block_bytes:
                continue
            ctx.phase = len(included)
            mark = len(ctx.events)
            try:
                outcome = self.apply_extrinsic(
                    ctx, candidate.encoded, candidate.hash, signature_checked=True
                )
            except InvalidTransaction as exc:
                del ctx.events[mark:]
                on_invalid(candidate, exc)
                continue
            included.append(candidate.encoded)
            outcomes.append(outcome)
            total += len(candidate.encoded)
        return self._finish(ctx, parent, tuple(included), outcomes)

    def _initialize(self, ctx: Context) -> None:
        ctx.phase = None
        for module in self.modules:
            module.on_initialize(ctx)

    def _finish(
        self,
        ctx: Context,
        parent: TrieState,
        extrinsics: tuple[bytes, ...],
        outcomes: list[ExtrinsicOutcome],
    ) -> BlockExecution:
        ctx.phase = None
        for module in self.modules:
            module.on_finalize(ctx)
        changes = ctx.state.changes
        commit = parent.commit(changes)
        return BlockExecution(
            ctx.env, extrinsics, tuple(outcomes), tuple(ctx.events), commit, parent.root, changes
        )
