import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from net.huffmancoding import (
    HuffmanFormatError,
    calc_index_diff,
    check_replaceable,
    decode_stream,
    encode_stream,
    huffman_decode,
    huffman_decode_fc,
    huffman_decode_model,
    huffman_encode,
    huffman_encode_fc,
    huffman_encode_model,
    minimum_compressed_bytes,
    reconstruct_indptr,
)
from net.models import AlexNet
from net.quantization import apply_weight_sharing
from recipe import datasets
from tests.conftest import dead_pid

rng = np.random.default_rng(0)
EDGE_CASES = {
    'empty float32': np.zeros(0, np.float32),
    'empty int32': np.zeros(0, np.int32),
    'one value': np.array([7], np.int32),
    'one symbol repeated': np.full(1000, -1.5, np.float32),
    'negative zero': np.array([0.0, -0.0, -0.0, 0.0, 1.0], np.float32),
    'nan payloads and infinities': np.array([0x7FC00001, 0x7F800000, 0xFF800000, 0x7FC00000],
                                            np.uint32).view(np.float32),
    'int32 extremes': np.array([-2**31, 2**31 - 1, 0, -1] * 3, np.int32),
    'exactly one byte of codes': np.array([1, 2] * 4, np.int32),
    'trailing bits': np.array([1, 2, 2], np.int32),
    'skewed (long codes)': np.repeat(np.arange(25), 2 ** np.arange(25) // 2 ** 8 + 1).astype(np.int32),
    'all distinct floats': rng.standard_normal(3000).astype(np.float32),
    'indices': rng.integers(0, 4096, 20000).astype(np.int32),
}


def bits_equal(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize('arr', EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_round_trip_is_bit_exact(arr, tmp_path):
    tree_bytes, data_bytes = huffman_encode(arr, 'x', tmp_path)
    assert tree_bytes == os.path.getsize(tmp_path / 'x_codebook.bin')
    assert data_bytes == os.path.getsize(tmp_path / 'x.bin')
    assert bits_equal(huffman_decode(tmp_path, 'x', arr.dtype), arr)


def test_one_symbol_costs_one_bit_each():
    _, stream = encode_stream(np.full(800, 3, np.int32))
    assert len(stream) - len(encode_stream(np.zeros(0, np.int32))[1]) == 100 + 1  # +varint byte


def test_tree_costs_one_bit_per_node_and_32_per_leaf():
    arr = np.array([1, 1, 1, 2, 2, 3], np.int32)  # 3 leaves, 2 internal nodes
    tree, _ = encode_stream(arr)
    header = 2 + 1 + 1
    assert len(tree) - header == -(-(5 + 3 * 32) // 8)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int32, st.integers(0, 300), elements=st.integers(-5, 5)) |
       hnp.arrays(np.float32, st.integers(0, 300), elements=st.floats(width=32, allow_nan=False)))
def test_random_arrays_round_trip(arr):
    tree, stream = encode_stream(arr)
    assert bits_equal(decode_stream(tree, stream), arr)


@pytest.fixture
def encoded(tmp_path):
    huffman_encode(rng.integers(0, 50, 5000).astype(np.int32), 'x', tmp_path)
    return tmp_path


def corrupt(path, change):
    data = path.read_bytes()
    path.write_bytes(change(data))


@pytest.mark.parametrize('file, change, message', [
    ('x.bin', lambda b: b[:-5], 'truncated'),
    ('x.bin', lambda b: b + b'\0', 'trailing'),
    ('x.bin', lambda b: b'PK' + b[2:], 'bad magic'),
    ('x.bin', lambda b: b[:2], 'truncated'),
    ('x.bin', lambda b: b[:2] + b'\x09' + b[3:], 'unknown symbol type'),
    ('x.bin', lambda b: b[:2] + b'\x01' + b[3:], 'does not match'),
    ('x_codebook.bin', lambda b: b[:-3], 'truncated'),
    ('x_codebook.bin', lambda b: b + b'\xff', 'trailing'),
    ('x_codebook.bin', lambda b: b'\x89PNG' + b[4:], 'bad magic'),
    ('x_codebook.bin', lambda b: b'', 'bad magic'),
])
def test_corrupt_files_are_refused(encoded, file, change, message):
    corrupt(encoded / file, change)
    with pytest.raises(HuffmanFormatError, match=message):
        huffman_decode(encoded, 'x', np.int32)


def test_swapped_files_are_refused(encoded):
    os.replace(encoded / 'x.bin', encoded / 'y')
    os.replace(encoded / 'x_codebook.bin', encoded / 'x.bin')
    os.replace(encoded / 'y', encoded / 'x_codebook.bin')
    with pytest.raises(HuffmanFormatError, match='bad magic'):
        huffman_decode(encoded, 'x', np.int32)


def test_missing_file_names_the_script(tmp_path):
    with pytest.raises(FileNotFoundError, match='huffman_encode.py'):
        huffman_decode(tmp_path, 'x', np.int32)


@pytest.fixture(scope='module')
def shared_alexnet():
    torch.manual_seed(0)
    model = AlexNet()
    model.prune_by_percentile({'conv1': 50, 'conv2': 10, 'conv3': 5, 'conv4': 5, 'conv5': 5,
                               'fc1': 2, 'fc2': 0.5, 'fc3': 20})
    apply_weight_sharing(model, 5)
    for name, param in model.named_parameters():
        if name.endswith('bias'):  # trained biases differ (He init leaves them all zero)
            param.data.normal_(0, 0.1)
    return model


def test_minimum_compressed_bytes_bounds_the_encoding_from_below(shared_alexnet, tmp_path):
    encoded = huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)[-1]['compressed']
    assert minimum_compressed_bytes(shared_alexnet) <= encoded


def test_minimum_compressed_bytes_is_the_formats_floor_for_an_empty_model(tmp_path):
    model = AlexNet()
    for _, layer in model.prunable_layers():
        layer.weight.data.zero_()
    # Raw biases (37,416 B) + one bit per conv kernel and kernel row + fc indptr entries.
    assert minimum_compressed_bytes(model) == 37416 + (1026304 + 4362) // 8 + 1
    encoded = huffman_encode_model(model, tmp_path / 'enc', None)[-1]['compressed']
    assert minimum_compressed_bytes(model) <= encoded <= 1.01 * minimum_compressed_bytes(model)


def test_whole_model_round_trip_is_exact_with_identical_accuracy(shared_alexnet, tmp_path,
                                                                 synthetic_data):
    rows = huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    on_disk = sum(os.path.getsize(tmp_path / 'enc' / f) for f in os.listdir(tmp_path / 'enc'))
    assert rows[-1]['compressed'] + rows[-1]['manifest'] == on_disk
    assert rows[-1]['manifest'] == os.path.getsize(tmp_path / 'enc' / 'manifest.json')
    assert rows[-1]['original'] == 81_378_600
    decoded = AlexNet()
    huffman_decode_model(decoded, tmp_path / 'enc')
    for (name, a), b in zip(shared_alexnet.named_parameters(), decoded.parameters(), strict=True):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32)), name
    _, _, x, y = synthetic_data
    assert datasets.evaluate(shared_alexnet, x, y) == datasets.evaluate(decoded, x, y)


def test_decoding_into_another_model_is_refused(shared_alexnet, tmp_path):
    huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    decoded = AlexNet(num_classes=20)
    before = [p.clone() for p in decoded.parameters()]
    with pytest.raises(HuffmanFormatError, match=r'holds parameters for another model: the model has '
                                                 r'fc3.weight of shape \[20, 4096\] \(float32\), the '
                                                 r'encodings fc3.weight of shape \[10, 4096\]'):
        huffman_decode_model(decoded, tmp_path / 'enc')
    assert all(torch.equal(a, b) for a, b in zip(before, decoded.parameters(), strict=True))
    with pytest.raises(HuffmanFormatError, match=r'the model has conv1.weight .*\(float64\)'):
        huffman_decode_model(AlexNet().double(), tmp_path / 'enc')


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def swap_files(a, b):
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)


@pytest.mark.parametrize('damage, message', [
    (lambda d: (d / 'fc2.weight_csc_data.bin').unlink(), 'fc2.weight_csc_data.bin is missing'),
    (lambda d: (d / 'extra.bin').write_bytes(b'x'), 'extra.bin is not one of the encoded files'),
    (lambda d: swap_files(d / 'conv4.bias.bin', d / 'conv5.bias.bin'),
     'conv4.bias.bin changed since it was encoded'),
    (lambda d: (d / 'fc1.bias.bin').write_bytes((d / 'fc1.bias.bin').read_bytes()[:-4]),
     'fc1.bias.bin changed since it was encoded'),
    (lambda d: (d / 'manifest.json').unlink(), 'manifest.json is missing: .* not written by'),
    (lambda d: (d / 'manifest.json').write_text('{"format": 1}'), 'manifest.json is corrupt'),
    (lambda d: (d / 'manifest.json').write_bytes(b'\xff\xfe'), 'manifest.json is corrupt'),
] + [
    # Seeded single-bit flips anywhere in streams, code trees and biases.
    (lambda d, name=name, offset=offset: flip_byte(d / name, offset), f'{name} changed since')
    for name, offset in [('conv1.weight_conv_data.bin', 7), ('conv2.weight_conv_indices_codebook.bin', 3),
                         ('fc1.weight_csc_indices.bin', 11), ('fc2.weight_csc_indptr_codebook.bin', 5),
                         ('conv3.bias.bin', 1), ('fc3.weight_csr_data_codebook.bin', 2)]
])
def test_altered_encodings_are_refused_before_any_parameter_changes(shared_alexnet, tmp_path,
                                                                    damage, message):
    huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    damage(tmp_path / 'enc')
    decoded = AlexNet()
    before = [p.clone() for p in decoded.parameters()]
    with pytest.raises(HuffmanFormatError, match=message):
        huffman_decode_model(decoded, tmp_path / 'enc')
    assert all(torch.equal(a, b) for a, b in zip(before, decoded.parameters(), strict=True))


def test_re_encoding_replaces_earlier_encodings(shared_alexnet, tmp_path):
    huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    flip_byte(tmp_path / 'enc' / 'conv1.weight_conv_data.bin', 0)  # even damaged ones: ours
    huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    huffman_decode_model(AlexNet(), tmp_path / 'enc')
    assert [p.name for p in tmp_path.iterdir()] == ['enc']  # no temp dirs left behind


def test_encodings_from_before_the_manifest_are_replaced_and_hidden_files_ignored(shared_alexnet,
                                                                                  tmp_path):
    huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    (tmp_path / 'enc' / 'manifest.json').unlink()  # as this project wrote them before
    check_replaceable(str(tmp_path / 'enc'))
    huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['enc']  # not moved aside
    (tmp_path / 'enc' / '.DS_Store').write_bytes(b'x')
    huffman_decode_model(AlexNet(), tmp_path / 'enc')


@pytest.mark.parametrize('own', [False, True])
def test_an_output_folder_holding_other_files_is_moved_aside_not_deleted(shared_alexnet, tmp_path,
                                                                        capsys, own):
    (tmp_path / 'enc').mkdir()
    if own:  # earlier encodings with one more file put in beside them
        huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    (tmp_path / 'enc' / 'model.ptmodel').write_bytes(b'precious')
    (tmp_path / 'enc.kept-1').mkdir()  # an earlier one: the next free number is taken
    huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    assert (tmp_path / 'enc.kept-2' / 'model.ptmodel').read_bytes() == b'precious'
    assert f"note: {tmp_path / 'enc'} held files that huffman_encode_model did not write; moved to " \
           f"{tmp_path / 'enc.kept-2'}" in capsys.readouterr().out
    huffman_decode_model(AlexNet(), tmp_path / 'enc')
    with pytest.raises(HuffmanFormatError, match='holds model.ptmodel, which huffman_encode_model'):
        check_replaceable(str(tmp_path / 'enc.kept-2'))  # what huffman_encode.py --out says


def test_an_output_path_that_is_a_file_is_refused(shared_alexnet, tmp_path):
    (tmp_path / 'enc').write_bytes(b'precious')
    with pytest.raises(HuffmanFormatError, match='is a file, not a folder for the encodings'):
        huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    assert (tmp_path / 'enc').read_bytes() == b'precious'


@pytest.mark.parametrize('n', range(9460, 9480))
def test_lane_decoder_handles_a_last_lane_shorter_than_a_codeword(n):
    # Cutting one array at many lengths puts the end of the last lane at every offset,
    # including lanes shorter than the longest code (they read into the zero padding).
    arr = np.random.default_rng(0).integers(0, 3000, 12000).astype(np.int32)[:n]
    assert bits_equal(decode_stream(*encode_stream(arr)), arr)


@pytest.mark.parametrize('file', ['x.bin', 'x_codebook.bin'])
def test_huge_counts_in_headers_are_refused_before_allocating(encoded, file):
    from net import huffmancoding as hc
    path = encoded / file
    data = path.read_bytes()
    _, _, body = hc._read_header(data, data[:2], file)
    path.write_bytes(data[:3] + hc.varint(2**62) + data[body:])
    with pytest.raises(HuffmanFormatError, match='claimed'):
        huffman_decode(encoded, 'x', np.int32)


def test_over_long_varints_are_refused(encoded):
    path = encoded / 'x.bin'
    path.write_bytes(path.read_bytes()[:3] + b'\xff' * 12 + b'\x01')
    with pytest.raises(HuffmanFormatError, match='corrupt header'):
        huffman_decode(encoded, 'x', np.int32)


def test_repeated_column_index_in_a_row_is_refused(tmp_path):
    weight = torch.zeros(3, 8)
    weight[1, 2], weight[1, 5] = 1.0, 2.0
    huffman_encode_fc(weight, 'fc', tmp_path)
    huffman_encode(np.array([2, 2], np.int32), 'fc_csr_indices', tmp_path)  # was [2, 5]
    with pytest.raises(HuffmanFormatError, match='not increasing within a row'):
        huffman_decode_fc(torch.zeros(3, 8), 'fc', tmp_path)


def test_layer_encoders_return_original_and_compressed_bytes(tmp_path):
    weight = torch.zeros(3, 8)
    weight[0, 1] = 0.5
    original, compressed = huffman_encode_fc(weight, 'fc', tmp_path)
    assert original == 3 * 8 * 4
    assert compressed == sum(os.path.getsize(p) for p in tmp_path.iterdir())
    assert huffman_decode(tmp_path, 'fc_csr_data').dtype == np.float32  # the starter's default
    decoded = torch.ones(3, 8)
    huffman_decode_fc(decoded, 'fc', tmp_path)
    assert torch.equal(decoded, weight)


def test_reconstruct_indptr_inverts_calc_index_diff():
    indptr = np.array([0, 0, 3, 4, 4, 9])
    assert np.array_equal(reconstruct_indptr(calc_index_diff(indptr)), indptr)


def test_encoding_logs_the_table(shared_alexnet, tmp_path):
    rows = huffman_encode_model(shared_alexnet, tmp_path / 'enc', tmp_path / 'log.txt')
    log = (tmp_path / 'log.txt').read_text()
    assert 'compressed bytes' in log and f"{rows[-1]['compressed']:16}" in log
    assert f"\nmanifest.json: {rows[-1]['manifest']} bytes more (file checksums" in log


def test_stale_swap_directories_are_removed_and_nothing_else(shared_alexnet, tmp_path):
    # left by a run killed between the two renames; and a user's own folder
    (tmp_path / f'.tmp-{dead_pid()}-old-encodings').mkdir()
    (tmp_path / 'enc.old-run3').mkdir()
    huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['enc', 'enc.old-run3']


def test_failed_swap_keeps_the_old_encodings(shared_alexnet, tmp_path, monkeypatch):
    from net import huffmancoding as hc
    huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    before = sorted(p.name for p in (tmp_path / 'enc').iterdir())
    rename = os.rename

    def failing_rename(src, dst):
        if os.path.basename(src).startswith('.tmp-') and '-encodings-' in str(src):  # the new one
            raise OSError('disk full')
        rename(src, dst)
    monkeypatch.setattr(hc.os, 'rename', failing_rename)
    with pytest.raises(OSError, match='disk full'):
        huffman_encode_model(shared_alexnet, tmp_path / 'enc', None)
    assert sorted(p.name for p in (tmp_path / 'enc').iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['enc']


def test_a_complete_tree_that_is_not_canonical_is_refused():
    from net import huffmancoding as hc
    from net.codec import pack_codes
    # Preorder: root, leaf (length 1), internal, two leaves of length 2: canonical. Swapped
    # (internal first, then the length-1 leaf) it is complete but not canonical.
    leaf = lambda v: (np.uint64((1 << 32) | v), 33)  # noqa: E731
    parts = [(np.uint64(0), 1), (np.uint64(0), 1), leaf(1), leaf(2), leaf(3)]
    codes, lengths = (np.array(x) for x in zip(*parts, strict=True))
    tree = hc._header(hc.TREE_MAGIC, np.dtype('int32'), 3) + pack_codes(codes.astype(np.uint64), lengths)
    _, stream = encode_stream(np.array([1, 2, 3, 3, 1], np.int32))
    with pytest.raises(HuffmanFormatError, match='not canonical'):
        decode_stream(tree, stream)
