"""The canonical Huffman codec (net/codec.py) that both file formats use: codes from
counts, round trips of edge cases, and the two decoders agreeing."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from net import codec
from net.codec import HuffmanCode, HuffmanFormatError, huffman_code_lengths, read_varint, varint

rng = np.random.default_rng(0)


def test_code_lengths_are_optimal():
    counts = np.array([45, 13, 12, 16, 9, 5])  # the textbook example
    lengths = huffman_code_lengths(counts)
    assert (counts * lengths).sum() == 224
    assert (2.0 ** -lengths).sum() == 1  # a complete prefix code


def test_code_lengths_are_limited_and_complete():
    fibonacci = [1, 1]
    while len(fibonacci) < 40:
        fibonacci.append(fibonacci[-1] + fibonacci[-2])
    unlimited = HuffmanCode.from_counts(np.array(fibonacci)).lengths
    lengths = HuffmanCode.from_counts(np.array(fibonacci), 15).lengths
    assert unlimited.max() == 39 and lengths.max() <= 15
    assert np.sum(2.0 ** -lengths) == 1.0


def test_canonical_codes_are_consecutive_by_length_then_symbol():
    code = HuffmanCode([2, 1, 3, 3])
    assert code.codes.tolist() == [0b10, 0b0, 0b110, 0b111]
    assert code.order.tolist() == [1, 0, 2, 3]


ROUND_TRIPS = {
    'empty': ([3, 1], []),
    'one symbol, no bits': ([5], [0, 0, 0]),
    'two symbols, trailing bits': ([1, 1], [0, 1, 1]),  # 3 bits in one byte
    'exactly one byte': ([1, 1], [1, 0] * 4),
    'skewed': ([100, 10, 1, 1], [0] * 50 + [1, 2, 3] * 5),
    'codes that straddle words': ([1] * 40, list(range(40)) * 30),
}


@pytest.mark.parametrize('counts, symbols', ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_round_trips(counts, symbols):
    code = HuffmanCode.from_counts(counts)
    symbols = np.array(symbols, dtype=np.int64)
    body = code.encode(symbols)
    bits = int(code.lengths[symbols].sum())
    assert len(body) == -(-bits // 8)
    decoded, used = code.decode(body, len(symbols))
    assert decoded.tolist() == symbols.tolist() and used == bits


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 20), max_size=400))
def test_random_symbols_round_trip(symbols):
    symbols = np.array(symbols, dtype=np.int64)
    code = HuffmanCode.from_counts(np.bincount(symbols, minlength=21), 15)
    decoded, used = code.decode(code.encode(symbols), len(symbols))
    assert decoded.tolist() == symbols.tolist() and used == int(code.lengths[symbols].sum())


def test_fewer_symbols_than_asked_for_is_a_clear_error():
    code = HuffmanCode([1, 2, 2])
    body = code.encode(np.array([1, 2, 1]))  # 6 bits, and 2 zero bits that decode as 0, 0
    with pytest.raises(HuffmanFormatError, match=r'x: truncated stream \(fewer than 6 symbols\)'):
        code.decode(body, 6, 'x')
    with pytest.raises(HuffmanFormatError, match=r'x: truncated stream \(9 symbols claimed\)'):
        code.decode(body, 9, 'x')


@pytest.mark.parametrize('n', [0, 1, 127, 128, 2**62])
def test_varints_round_trip(n):
    assert read_varint(b'!' + varint(n), 1, 'x') == (n, 1 + len(varint(n)))


def test_over_long_or_cut_varints_are_refused():
    with pytest.raises(HuffmanFormatError, match='x: truncated or corrupt header'):
        read_varint(b'\x80' * 10 + b'\x01', 0, 'x')
    with pytest.raises(HuffmanFormatError, match='x: truncated or corrupt header'):
        read_varint(b'\x80', 0, 'x')


# ---------------------------------------------------------------- the two decoders
def stream_parts(arr):
    """(body, lengths, leaf lookup, max length, n) of arr's Huffman code, for the decoders."""
    values, symbols = np.unique(arr, return_inverse=True)
    code = HuffmanCode.from_counts(np.bincount(symbols, minlength=len(values)))
    lengths, codes = code.lengths[code.order], code.codes[code.order]
    max_length = int(lengths.max())
    return (code.encode(symbols), lengths, codec._leaf_lookup(lengths, codes, max_length),
            max_length, len(arr))


@pytest.mark.parametrize('arr', [
    rng.integers(0, 4000, 50_000),                   # near fixed length
    np.minimum(rng.geometric(0.2, 60_000), 40),      # skewed, resyncs fast
    np.minimum(rng.zipf(1.3, 30_000), 3000),         # long tail, long codes
    (rng.random(100_000) < 0.05).astype(np.int64),   # two symbols
], ids=['near-fixed', 'geometric', 'zipf', 'two-symbols'])
def test_lane_decoder_finds_the_same_codewords_as_jump_tables(arr):
    parts = stream_parts(arr)
    by_jumps = codec._starts_by_jumps(*parts)
    by_lanes = codec._starts_by_lanes(*parts)
    assert by_lanes is not None
    assert np.array_equal(by_lanes[:len(arr)], by_jumps)


def test_lane_decoder_falls_back_when_lanes_do_not_resynchronise(monkeypatch):
    arr = rng.integers(0, 4000, 50_000)
    monkeypatch.setattr(codec, 'LANE_ROUNDS', 0)
    assert codec._starts_by_lanes(*stream_parts(arr)) is None
    values, symbols = np.unique(arr, return_inverse=True)
    code = HuffmanCode.from_counts(np.bincount(symbols))
    decoded, _ = code.decode(code.encode(symbols), len(arr))  # through the jump tables
    assert np.array_equal(values[decoded], arr)
