"""Properties of the configs' and secrets' encodings: any map of valid keys round-trips, and any
bytes at all are either a valid argument or a CodecError (the call's typed refusal), never
another exception."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chain import codec
from chain.runtime import configs, secrets

KEYS = st.text(alphabet="abcXYZ019-._", min_size=1, max_size=20)
DATA = st.dictionaries(KEYS, st.binary(max_size=64), min_size=1, max_size=20)


@given(DATA)
def test_config_data_round_trips(data: dict[str, bytes]) -> None:
    decoded = configs.decode_data(codec.decode(configs.encode_data(data)))
    assert decoded == data and list(decoded) == sorted(data)


@given(st.dictionaries(KEYS, st.integers(0, secrets.MAX_SECRET_BYTES), min_size=1, max_size=20))
def test_key_sizes_round_trip(sizes: dict[str, int]) -> None:
    pairs = tuple(sorted(sizes.items()))
    assert secrets.decode_key_sizes(secrets.encode_key_sizes(pairs)) == pairs


@given(st.binary(max_size=200))
def test_any_bytes_are_valid_or_a_codec_error(raw: bytes) -> None:
    for parse in (
        lambda: configs.decode_data(codec.decode(raw)),
        lambda: secrets.decode_key_sizes(raw),
        lambda: secrets.envelope_shape(raw),
        lambda: configs.ConfigRecord.decode(raw),
        lambda: secrets.SecretRecord.decode(raw),
    ):
        try:
            parse()
        except codec.CodecError:
            pass


@given(DATA)
def test_stated_sizes_fit_a_sealed_plaintext_of_those_sizes(data: dict[str, bytes]) -> None:
    """What the CLI states always fits what it seals; a size off by more than the RLP headers
    does not."""
    plaintext = codec.encode([[k.encode(), data[k]] for k in sorted(data)])
    ciphertext = plaintext + b"\x00" * secrets.TAG_BYTES
    sizes = tuple(sorted((k, len(v)) for k, v in data.items()))
    assert secrets.sizes_fit(sizes, ciphertext)
    key, size = sizes[0]
    inflated = ((key, size + len(ciphertext)), *sizes[1:])
    assert not secrets.sizes_fit(inflated, ciphertext)
