"""Decoding wire types from bad input: every malformed shape is a decoding error, never a crash
of the code that reads a peer's bytes."""

from __future__ import annotations

import pytest
import rlp

from chain.blocks import Header, UnsignedTransaction
from chain.primitives import Hash32
from chain.wire import WireError, decode_block
from tests.factories import ALICE
from tests.unit.test_offences import header
from wallet.member import RefusalReason, Refused, decode_unsigned


def with_field(encoded: bytes, index: int, value: object) -> bytes:
    fields = rlp.decode(encoded)
    return rlp.encode([value if i == index else f for i, f in enumerate(fields)])  # type: ignore[no-any-return]


@pytest.mark.parametrize("value", [[b"\x01"], []])
def test_a_list_where_a_number_belongs_is_a_decoding_error(value: object) -> None:
    bad = with_field(header(ALICE), 1, value)  # the block number
    with pytest.raises(rlp.DeserializationError):
        rlp.decode(bad, sedes=Header, strict=True)
    with pytest.raises(WireError) as info:
        decode_block(rlp.encode([rlp.decode(bad), []]))
    assert "number must be an integer, got a list" in str(info.value)


def test_a_wallet_transaction_with_a_list_for_its_nonce_is_refused_as_malformed() -> None:
    genesis = Hash32(b"\x01" * 32)
    good = rlp.encode(UnsignedTransaction(genesis, ALICE.public, 0, 0, [b"m", b"f", b""]))
    assert decode_unsigned(good, genesis).nonce == 0
    with pytest.raises(Refused) as info:
        decode_unsigned(with_field(good, 2, [b"\x05"]), genesis)
    assert info.value.reason is RefusalReason.MALFORMED
