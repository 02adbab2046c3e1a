"""Huffman coding of model parameters in the homework format.

Stream codec: ``huffman_encode(arr, prefix, save_dir)`` writes ``{prefix}.bin`` (the
bitstream) and ``{prefix}_codebook.bin`` (the code tree: preorder, 1 bit per node plus 32
bits per leaf, as the starter stores it). Codes are canonical, so the tree can be written
and read without building node objects, and everything is vectorised with numpy: no
Python loop ever walks single bits or '0'/'1' strings.

File layout (little header, so a truncated or foreign file is refused, not misread):
    codebook: b'HT' | dtype byte | varint leaf count | tree bits, zero-padded
    stream:   b'HS' | dtype byte | varint symbol count | code bits, zero-padded
    bias:     b'HB' | varint value count | raw little-endian float32
    raw:      b'HR' | dtype byte | varint value count | raw little-endian values
              (any other tensor that is not float32, e.g. batch norm's int64 step count)

Beside the streams, manifest.json lists every file with its size and SHA-256, and every
parameter's name, shape and dtype: huffman_decode_model checks it all before it touches a
parameter, so a missing, extra, swapped, truncated or altered file is refused, never
decoded into other weights.

Layers: fc weights as CSR (rows < cols) or CSC, three streams (data, indices, indptr
differences); conv weights as the CSR of every (W, H) kernel, four concatenated streams
(data, non-zeros per kernel, column indices, row counts); biases raw, and so every other
tensor of the model's state (batch-norm weights, running statistics, other buffers; the
pruning masks are not stored: decoding leaves the model's own).
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import os
import shutil
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse import csc_matrix, csr_matrix

from .codec import (
    MAX_CODE_LENGTH,
    HuffmanCode,
    HuffmanFormatError,
    bit_windows,
    pack_codes,
    read_varint,
    varint,
)
from .files import temp_dir, temp_name

if TYPE_CHECKING:  # for annotations only: the module itself loads torch when it stores weights
    import torch

DTYPE_CODES = {np.dtype('float32'): 1, np.dtype('int32'): 2, np.dtype('int64'): 3}
DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}
TREE_MAGIC, STREAM_MAGIC, BIAS_MAGIC, RAW_MAGIC = b'HT', b'HS', b'HB', b'HR'
MANIFEST = 'manifest.json'
MANIFEST_FORMAT = 'homework-encodings/1'
LEAF_BITS = 32
# Symbol tables of the encoder: value ranges up to DIRECT_RANGE are counted directly;
# otherwise up to HASH_MAX_VALUES distinct values are hashed into 2**HASH_BITS buckets.
DIRECT_RANGE = 1 << 22
HASH_BITS = 16
HASH_MAX_VALUES = 1 << 10
HASH_MULTIPLIERS = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D)


# ---------------------------------------------------------------- headers
def _header(magic, dtype, count):
    return magic + bytes([DTYPE_CODES[dtype]]) + varint(count)


def _read_header(buf, magic, path):
    """(dtype, count, offset of the body) of a codebook or stream file."""
    if buf[:2] != magic:
        raise HuffmanFormatError(f'{path}: not a Huffman {"codebook" if magic == TREE_MAGIC else "stream"} '
                                 'file of this project (bad magic)')
    if len(buf) < 3:
        raise HuffmanFormatError(f'{path}: truncated header')
    if buf[2] not in DTYPES:
        raise HuffmanFormatError(f'{path}: unknown symbol type in header')
    count, pos = read_varint(buf, 3, path)
    return DTYPES[buf[2]], count, pos


def _read_file(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path} not found: run `python huffman_encode.py` first')
    with open(path, 'rb') as f:
        return f.read()


def _write_file(path, data):
    with open(path, 'wb') as f:
        f.write(data)
    return len(data)


# ---------------------------------------------------------------- symbols
def _as_symbols(arr):
    """The array as unsigned 32-bit patterns (so -0.0 and 0.0 stay distinct), and dtype."""
    arr = np.asarray(arr)
    if arr.dtype not in DTYPE_CODES:
        raise TypeError(f'huffman_encode takes float32 or int32 arrays, not {arr.dtype}')
    return np.ascontiguousarray(arr).reshape(-1).view(np.uint32), arr.dtype


def _distinct(symbols):
    """(distinct values, index of each symbol's value, counts) of a uint32 array.

    Faster than np.unique's sort for the usual streams: a small range (indices,
    counts) is counted directly; a few distinct floats (shared weights) are found with
    a hash table whose every lookup is then verified. Anything else falls back to sort.
    """
    if len(symbols) == 0:
        return symbols[:0], np.zeros(0, np.int64), np.zeros(0, np.int64)
    low = symbols.min()
    span = int(symbols.max()) - int(low) + 1
    if span <= DIRECT_RANGE:
        offsets = symbols - low
        counts = np.bincount(offsets, minlength=span)
        present = np.flatnonzero(counts)
        slot = np.zeros(span, dtype=np.int64)
        slot[present] = np.arange(len(present))
        return present.astype(np.uint32) + low, slot[offsets], counts[present]
    for multiplier in HASH_MULTIPLIERS:
        hashed = (symbols * np.uint32(multiplier)) >> np.uint32(32 - HASH_BITS)
        representative = np.full(1 << HASH_BITS, -1, dtype=np.int64)
        representative[hashed] = np.arange(len(symbols))
        used = np.flatnonzero(representative >= 0)
        if len(used) > HASH_MAX_VALUES:
            break
        values = symbols[representative[used]]
        slot = np.zeros(1 << HASH_BITS, dtype=np.int64)
        slot[used] = np.arange(len(used))
        inverse = slot[hashed]
        if np.array_equal(values[inverse], symbols):  # no two values share a bucket
            return values, inverse, np.bincount(inverse, minlength=len(values))
    values, inverse, counts = np.unique(symbols, return_inverse=True, return_counts=True)
    return values, inverse.reshape(-1), counts


# ---------------------------------------------------------------- stream codec
def encode_stream(arr: np.ndarray) -> tuple[bytes, bytes]:
    """(codebook bytes, stream bytes) of a float32 or int32 array."""
    symbols, dtype = _as_symbols(arr)
    values, inverse, counts = _distinct(symbols)
    if len(values) == 1:
        # The starter's dummy sibling: a second leaf, never used, so codes are 1 bit.
        values = np.append(values, values[0] ^ np.uint32(1))
        counts = np.append(counts, 0)
    code = HuffmanCode.from_counts(counts)
    stream = _header(STREAM_MAGIC, dtype, len(symbols)) + code.encode(inverse)
    tree = _header(TREE_MAGIC, dtype, len(values)) + _encode_tree(values[code.order],
                                                                   code.lengths[code.order])
    return tree, stream


def _encode_tree(leaf_values, leaf_lengths):
    """Preorder bits of the canonical code tree: '0' per internal node, '1' + 32 bits per leaf.

    Leaf i is preceded by the internal nodes first visited on its path: its length
    minus the depth where it branches off leaf i-1's path (leaf 0: its whole length).
    """
    n = len(leaf_values)
    if n == 0:
        return b''
    codes = HuffmanCode(leaf_lengths).codes  # already in canonical order
    branch_depth = np.zeros(n, dtype=np.int64)
    if n > 1:
        # Leaf i's code is leaf i-1's code with trailing ones dropped and the last 0 set,
        # then zeros appended: it branches at (i-1's length - trailing ones of i-1).
        prev = codes[:-1]
        trailing_ones = _trailing_ones(prev)
        branch_depth[1:] = leaf_lengths[:-1] - trailing_ones
    # Each leaf becomes two codes: `new_internal` zeros, then a 1 and its 32 value bits.
    codes = np.zeros(2 * n, dtype=np.uint64)
    codes[1::2] = (np.uint64(1) << np.uint64(LEAF_BITS)) | leaf_values.astype(np.uint64)
    lengths = np.empty(2 * n, dtype=np.int64)
    lengths[0::2] = leaf_lengths - branch_depth
    lengths[1::2] = 1 + LEAF_BITS
    return pack_codes(codes, lengths)


def _trailing_ones(values):
    count = np.zeros(len(values), dtype=np.int64)
    v = values.copy()
    while True:
        ones = (v & np.uint64(1)).astype(bool)
        if not ones.any():
            return count
        count += ones
        v = np.where(ones, v >> np.uint64(1), np.uint64(0))


def _decode_tree(body, n_leaves, path):
    """Leaf values and code lengths (canonical order) of a preorder code tree, checked to
    be a complete canonical code."""
    if n_leaves == 0:
        if body:
            raise HuffmanFormatError(f'{path}: corrupt code tree (data after an empty tree)')
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    bits = np.unpackbits(np.frombuffer(body, dtype=np.uint8))
    if n_leaves > len(bits) // (1 + LEAF_BITS):
        raise HuffmanFormatError(f'{path}: truncated code tree ({n_leaves} leaves claimed)')
    ones = np.flatnonzero(bits).tolist()
    values, lengths = [], []
    pos = code = length = 0
    for i in range(n_leaves):
        # The next '1' at or after pos marks a leaf; the zeros before it are internal nodes.
        one_index = bisect.bisect_left(ones, pos)
        if one_index == len(ones) or ones[one_index] + LEAF_BITS >= len(bits):
            raise HuffmanFormatError(f'{path}: truncated code tree')
        zeros = ones[one_index] - pos
        if i > 0:  # climb to the deepest left branch of the previous leaf, go right
            while code & 1:
                code, length = code >> 1, length - 1
            if length == 0:
                raise HuffmanFormatError(f'{path}: corrupt code tree (too many leaves)')
            code |= 1
        code, length = code << zeros, length + zeros
        if length > MAX_CODE_LENGTH or (n_leaves > 1 and length == 0):
            raise HuffmanFormatError(f'{path}: corrupt code tree (code length {length})')
        if lengths and length < lengths[-1]:  # a valid tree, but not the canonical one we write
            raise HuffmanFormatError(f'{path}: corrupt code tree (not canonical)')
        pos = ones[one_index] + 1
        values.append(pos)
        lengths.append(length)
        pos += LEAF_BITS
    if code != (1 << length) - 1 or n_leaves == 1:
        raise HuffmanFormatError(f'{path}: corrupt code tree (incomplete)')
    if len(body) != -(-pos // 8) or bits[pos:].any():
        raise HuffmanFormatError(f'{path}: corrupt code tree (trailing data)')
    value_bits = bit_windows(body, np.array(values, dtype=np.int64), LEAF_BITS).astype(np.uint32)
    return value_bits, np.array(lengths, dtype=np.int64)


def decode_stream(tree: bytes, stream: bytes, tree_path: str = 'codebook',
                  stream_path: str = 'stream') -> np.ndarray:
    """The array encoded by encode_stream (bit-exact)."""
    dtype, n_leaves, tree_pos = _read_header(tree, TREE_MAGIC, tree_path)
    stream_dtype, n, pos = _read_header(stream, STREAM_MAGIC, stream_path)
    if stream_dtype != dtype:
        raise HuffmanFormatError(f'{stream_path}: symbol type {stream_dtype} does not match '
                                 f'its codebook ({dtype})')
    values, lengths = _decode_tree(tree[tree_pos:], n_leaves, tree_path)
    body = stream[pos:]
    if n == 0:
        if body:
            raise HuffmanFormatError(f'{stream_path}: data after an empty stream')
        return np.zeros(0, dtype=dtype)
    if n_leaves == 0:
        raise HuffmanFormatError(f'{tree_path}: empty code tree for a non-empty stream')
    leaf, end = HuffmanCode(lengths).decode(body, n, stream_path)
    if len(body) != -(-end // 8) or (end % 8 and body[-1] & (0xFF >> (end % 8))):
        raise HuffmanFormatError(f'{stream_path}: corrupt stream (trailing data)')
    return values[leaf].view(dtype)


def huffman_encode(arr: np.ndarray, prefix: str, save_dir: str = './') -> tuple[int, int]:
    """Write {prefix}.bin and {prefix}_codebook.bin; return (tree bytes, data bytes) on disk."""
    tree, stream = encode_stream(arr)
    tree_bytes = _write_file(os.path.join(save_dir, f'{prefix}_codebook.bin'), tree)
    data_bytes = _write_file(os.path.join(save_dir, f'{prefix}.bin'), stream)
    return tree_bytes, data_bytes


def huffman_decode(directory: str, prefix: str, dtype: str | type | np.dtype = 'float32') -> np.ndarray:
    """Read back the array written by huffman_encode(arr, prefix, directory)."""
    tree_path = os.path.join(directory, f'{prefix}_codebook.bin')
    stream_path = os.path.join(directory, f'{prefix}.bin')
    arr = decode_stream(_read_file(tree_path), _read_file(stream_path), tree_path, stream_path)
    if arr.dtype != np.dtype(dtype):
        raise HuffmanFormatError(f'{stream_path}: holds {arr.dtype}, expected {np.dtype(dtype)}')
    return arr


# ---------------------------------------------------------------- layers
def calc_index_diff(indptr: np.ndarray) -> np.ndarray:
    """The starter's indptr differences (entries per row or column), as int32."""
    return np.diff(indptr).astype(np.int32)


def reconstruct_indptr(diff: np.ndarray) -> np.ndarray:
    """The starter's inverse of calc_index_diff."""
    return np.concatenate([[0], np.cumsum(diff)]).astype(np.int64)


def _fc_form(shape):
    return 'csr' if shape[0] < shape[1] else 'csc'


def fc_streams(weight: np.ndarray, name: str) -> list[tuple[str, np.ndarray]]:
    """[(prefix, array)] of a 2-D weight: CSR (rows < cols) or CSC data, indices and
    indptr differences."""
    form = _fc_form(weight.shape)
    mat = csr_matrix(weight) if form == 'csr' else csc_matrix(weight)
    return [(f'{name}_{form}_data', mat.data.astype(np.float32)),
            (f'{name}_{form}_indices', mat.indices.astype(np.int32)),
            (f'{name}_{form}_indptr', calc_index_diff(mat.indptr))]


def conv_streams(weight: np.ndarray, name: str) -> list[tuple[str, np.ndarray]]:
    """[(prefix, array)] of a 4-D weight: the hint's four lists over all Kn*Ch kernels
    (data, non-zeros per kernel, column indices, row counts).

    All (W, H) kernels stacked as one (Kn*Ch*W, H) matrix have as CSR exactly the
    per-kernel CSRs concatenated, each kernel's indptr as its W row counts.
    """
    mat = csr_matrix(weight.reshape(-1, weight.shape[-1]))
    row_counts = calc_index_diff(mat.indptr)
    kernel_counts = row_counts.reshape(-1, weight.shape[2]).sum(axis=1).astype(np.int32)
    return [(f'{name}_conv_data', mat.data.astype(np.float32)),
            (f'{name}_conv_length', kernel_counts),
            (f'{name}_conv_indices', mat.indices.astype(np.int32)),
            (f'{name}_conv_indptr', row_counts)]


def stored_tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor, str]]:
    """[(name, tensor, how)] of everything huffman_encode_model stores: the model's state
    but the pruning masks (batch norm's running statistics too, for one), each stored as
    'conv' or 'fc' weights (those of the conv and fc layers) or 'raw'."""
    from torch import nn  # here: net.huffmancoding itself loads no torch

    from .prune import prunable_layers, state_without_masks
    weights = {f'{name}.weight': 'conv' if isinstance(layer, nn.Conv2d) else 'fc'
               for name, layer in prunable_layers(model)}
    return [(name, tensor, weights.get(name, 'raw'))
            for name, tensor in state_without_masks(model).items()]


def model_streams(model: torch.nn.Module) -> list[tuple[str, np.ndarray]]:
    """[(prefix, array)] of every weight stream of model, as huffman_encode_model writes them."""
    streams = []
    for name, param, how in stored_tensors(model):
        if how != 'raw':
            streams += (conv_streams if how == 'conv' else fc_streams)(_numpy(param), name)
    return streams


def minimum_compressed_bytes(model: torch.nn.Module) -> int:
    """A lower bound on huffman_encode_model's total compressed bytes, from counts alone
    (no k-means, no coding): raw float32 biases, and at least one bit per symbol of
    every stream, i.e. per conv kernel and kernel row, per fc indptr entry, and two per
    non-zero weight (its value and its index)."""
    bits = 0
    for _, param, how in stored_tensors(model):
        if how == 'conv':
            kernels, rows = param.shape[0] * param.shape[1], param.shape[2]
            bits += kernels * (1 + rows)
        elif how == 'fc':
            bits += min(param.shape)  # CSR over rows if rows < cols, else CSC over columns
        else:
            bits += 8 * param.element_size() * param.numel()
            continue
        bits += 2 * int(param.count_nonzero())
    return -(-bits // 8)


def _encode_streams(param, streams, directory):
    compressed = sum(sum(huffman_encode(arr, prefix, directory)) for prefix, arr in streams)
    return param.numel() * 4, compressed


def huffman_encode_fc(param: torch.Tensor, name: str, directory: str) -> tuple[int, int]:
    """Huffman-code a 2-D weight as three streams; return (original, compressed) bytes."""
    return _encode_streams(param, fc_streams(_numpy(param), name), directory)


def huffman_encode_conv(param: torch.Tensor, name: str, directory: str) -> tuple[int, int]:
    """Huffman-code a 4-D weight as four streams; return (original, compressed) bytes."""
    return _encode_streams(param, conv_streams(_numpy(param), name), directory)


def huffman_decode_fc(param: torch.Tensor, name: str, directory: str) -> None:
    """Rebuild a 2-D weight from its three streams into param.data."""
    shape = tuple(param.shape)
    form = _fc_form(shape)
    data = huffman_decode(directory, f'{name}_{form}_data', np.float32)
    indices = huffman_decode(directory, f'{name}_{form}_indices', np.int32)
    counts = huffman_decode(directory, f'{name}_{form}_indptr', np.int32)
    major, minor = shape if form == 'csr' else shape[::-1]
    dense = _sparse_to_dense(data, indices, counts, major, minor, name)
    _store(param, dense if form == 'csr' else dense.T)


def huffman_decode_conv(param: torch.Tensor, name: str, directory: str) -> None:
    """Rebuild a 4-D weight from its four streams into param.data."""
    kn, ch, w, h = param.shape
    data = huffman_decode(directory, f'{name}_conv_data', np.float32)
    kernel_counts = huffman_decode(directory, f'{name}_conv_length', np.int32)
    indices = huffman_decode(directory, f'{name}_conv_indices', np.int32)
    row_counts = huffman_decode(directory, f'{name}_conv_indptr', np.int32)
    if (len(kernel_counts) != kn * ch or len(row_counts) != kn * ch * w
            or not np.array_equal(row_counts.reshape(-1, w).sum(axis=1), kernel_counts)):
        raise HuffmanFormatError(f'{name}: conv streams do not match the layer shape '
                                 f'{(kn, ch, w, h)} (wrong model or corrupt encodings)')
    _store(param, _sparse_to_dense(data, indices, row_counts, kn * ch * w, h, name)
           .reshape(kn, ch, w, h))


def _sparse_to_dense(data, indices, counts, major, minor, name):
    """Dense (major, minor) float32 from CSR parts, after checking they fit the shape.

    Indices must rise strictly within each row (as scipy writes them): a repeated index
    would silently overwrite a weight instead of being refused.
    """
    if (len(counts) != major or (counts < 0).any() or counts.sum() != len(data)
            or len(indices) != len(data) or (len(indices) and
                                             (indices.min() < 0 or indices.max() >= minor))):
        raise HuffmanFormatError(f'{name}: sparse streams do not match the layer shape '
                                 f'({major}, {minor}) (wrong model or corrupt encodings)')
    indptr = reconstruct_indptr(counts)
    row_start = np.zeros(len(indices), dtype=bool)
    row_start[indptr[:-1][counts > 0]] = True
    if (np.diff(indices) <= 0)[~row_start[1:]].any():
        raise HuffmanFormatError(f'{name}: column indices not increasing within a row '
                                 '(corrupt encodings)')
    dense = np.zeros((major, minor), dtype=np.float32)
    dense[np.repeat(np.arange(major), counts), indices] = data
    return dense


def dump_bias(param: torch.Tensor, name: str, directory: str) -> tuple[int, int]:
    """Write a bias (or any tensor) raw, no pickle: floats as a float32 bias file, integers
    as a raw file that names their dtype; return (original, compressed) bytes."""
    values = _numpy(param).reshape(-1)
    if np.issubdtype(values.dtype, np.floating):
        values, head = values.astype(np.float32), BIAS_MAGIC
    elif values.dtype in DTYPE_CODES:
        head = RAW_MAGIC + bytes([DTYPE_CODES[values.dtype]])
    else:
        raise HuffmanFormatError(f'cannot store {name}: a {values.dtype} tensor (the homework '
                                 'format holds floats, int32 and int64 ones)')
    values = values.astype(values.dtype.newbyteorder('<'))
    return values.nbytes, _write_file(os.path.join(directory, f'{name}.bin'),
                                      head + varint(len(values)) + values.tobytes())


def load_bias(param: torch.Tensor, name: str, directory: str) -> None:
    """Read a tensor written by dump_bias into param.data, after checking its header, dtype
    and size."""
    path = os.path.join(directory, f'{name}.bin')
    buf = _read_file(path)
    if buf[:2] == BIAS_MAGIC:
        dtype, pos = np.dtype('<f4'), 2
    elif buf[:2] == RAW_MAGIC and len(buf) > 2 and buf[2] in DTYPES:
        dtype, pos = DTYPES[buf[2]].newbyteorder('<'), 3
    else:
        raise HuffmanFormatError(f'{path}: not a bias file of this project (bad magic)')
    expected = np.dtype('float32') if param.dtype.is_floating_point else _numpy(param).dtype
    if dtype.newbyteorder('=') != expected:
        raise HuffmanFormatError(f'{path}: holds {dtype.name} values; {name} takes '
                                 f'{expected.name} (wrong model)')
    count, pos = read_varint(buf, pos, path)
    if count != param.numel() or len(buf) - pos != dtype.itemsize * count:
        raise HuffmanFormatError(f'{path}: holds {len(buf) - pos} bytes for {count} values; '
                                 f'the layer has {param.numel()} (wrong model or truncated)')
    _store(param, np.frombuffer(buf, dtype=dtype, offset=pos).reshape(tuple(param.shape)))


def _numpy(param):
    return param.detach().cpu().numpy()


def _store(param, array):
    """Copy a numpy array (float32 unless param is another dtype) into param.data."""
    import torch
    dtype = np.float32 if param.dtype.is_floating_point else array.dtype.newbyteorder('=')
    param.data.copy_(torch.from_numpy(np.array(array, dtype=dtype)))


# ---------------------------------------------------------------- whole model
def huffman_encode_model(model: torch.nn.Module, directory: str = 'encodings/',
                         log_file: str | None = 'log.txt') -> list[dict]:
    """Encode every parameter into directory (replaced atomically), with the manifest;
    print the slides' table and append it to log_file (None: print only).

    Returns a list of per-parameter rows (name, original, compressed bytes) and the
    total as the last row (with 'manifest': the manifest's bytes, not counted in it).
    A folder holding other files than earlier encodings is moved aside, never deleted;
    a path that is a file is refused.
    """
    directory = os.path.normpath(directory)
    _refuse_a_file(directory)
    if _foreign_files(directory):
        _move_aside(directory)
    tmp = temp_dir(os.path.dirname(os.path.abspath(directory)), 'encodings')
    try:
        rows = [_encode_parameter(*stored, tmp) for stored in stored_tensors(model)]
        manifest_bytes = _write_manifest(model, tmp)
        _replace_directory(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = {'name': 'total', 'original': sum(r['original'] for r in rows),
             'compressed': sum(r['compressed'] for r in rows), 'manifest': manifest_bytes}
    rows.append(total)
    table = format_table(rows) + (f'\n{MANIFEST}: {manifest_bytes} bytes more (file checksums, '
                                  'parameter names, shapes and dtypes; not counted above)')
    print(table)
    if log_file is not None:
        import util  # the starter's util.log; imported here so net/ loads without it
        util.log(table, log_file)
    return rows


def check_replaceable(directory: str) -> None:
    """Refuse a path that is a file, or a folder holding files the encoder did not write
    (huffman_encode.py --out: the user named it, so say so rather than move it)."""
    _refuse_a_file(directory)
    if foreign := _foreign_files(directory):
        raise HuffmanFormatError(f'{directory} holds {foreign[0]}, which huffman_encode_model did '
                                 'not write, and would be replaced whole: choose an empty or new '
                                 'output folder')


def _refuse_a_file(directory):
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise HuffmanFormatError(f'{directory} is a file, not a folder for the encodings: '
                                 'choose another output folder')


def _foreign_files(directory):
    """The files in directory that the encoder did not write: neither listed in its manifest
    nor headed as a stream, code tree or bias file (encodings from before the manifest)."""
    if not os.path.isdir(directory):
        return []
    try:
        listed = set(_read_manifest(directory)['files']) | {MANIFEST}
    except HuffmanFormatError:
        listed = set()
    return [name for name in sorted(os.listdir(directory))
            if name not in listed and not _headed_as_ours(os.path.join(directory, name))]


def _headed_as_ours(path):
    if not (path.endswith('.bin') and os.path.isfile(path)):
        return False
    with open(path, 'rb') as f:
        return f.read(2) in (TREE_MAGIC, STREAM_MAGIC, BIAS_MAGIC, RAW_MAGIC)


def _move_aside(directory):
    """Rename a folder holding other files to a free `directory.kept-N`: the encodings
    take its place and nothing is lost (graders call huffman_encode_model() with its
    default folder, which another encoder may have filled)."""
    number = 1
    while os.path.exists(f'{directory}.kept-{number}'):
        number += 1
    os.rename(directory, f'{directory}.kept-{number}')
    print(f'note: {directory} held files that huffman_encode_model did not write; '
          f'moved to {directory}.kept-{number}')


def _file_digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def _write_manifest(model, directory):
    """manifest.json: every file's size and SHA-256, every parameter's name, shape, dtype."""
    manifest = {
        'format': MANIFEST_FORMAT,
        'parameters': [{'name': name, 'shape': list(param.shape),
                        'dtype': str(param.dtype).removeprefix('torch.')}
                       for name, param, _ in stored_tensors(model)],
        'files': {name: {'bytes': os.path.getsize(os.path.join(directory, name)),
                         'sha256': _file_digest(os.path.join(directory, name))}
                  for name in sorted(os.listdir(directory))}}
    text = json.dumps(manifest, separators=(',', ':'))
    return _write_file(os.path.join(directory, MANIFEST), text.encode())


def _read_manifest(directory):
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise HuffmanFormatError(f'{path} is missing: {directory} was not written by '
                                 'huffman_encode_model (run `python huffman_encode.py` again)')
    try:
        manifest = json.loads(_read_file(path))
        if manifest['format'] != MANIFEST_FORMAT:
            raise ValueError
        for entry in manifest['files'].values():
            int(entry['bytes']), str(entry['sha256'])
        [(p['name'], tuple(p['shape']), p['dtype']) for p in manifest['parameters']]
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        raise HuffmanFormatError(f'{path} is corrupt or not a manifest of this project '
                                 '(run `python huffman_encode.py` again)') from None
    return manifest


def check_encodings(model: torch.nn.Module, directory: str = 'encodings/') -> None:
    """Refuse directory unless it holds exactly what huffman_encode_model wrote, unchanged,
    for parameters of model's names, shapes and dtypes (one clear error naming the file)."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f'{directory} not found: run `python huffman_encode.py` first')
    manifest = _read_manifest(directory)
    # Hidden files (.DS_Store, .nfs*) are the system's, not a reason to refuse.
    present = {name for name in os.listdir(directory) if not name.startswith('.')} - {MANIFEST}
    for name in sorted(set(manifest['files']) - present):
        raise HuffmanFormatError(f'{os.path.join(directory, name)} is missing (the encodings '
                                 'are incomplete: run `python huffman_encode.py` again)')
    for name in sorted(present - set(manifest['files'])):
        raise HuffmanFormatError(f'{os.path.join(directory, name)} is not one of the encoded files '
                                 f'that {MANIFEST} lists: remove it or encode again')
    for name, entry in sorted(manifest['files'].items()):
        path = os.path.join(directory, name)
        if os.path.getsize(path) != entry['bytes'] or _file_digest(path) != entry['sha256']:
            raise HuffmanFormatError(f'{path} changed since it was encoded (its size or SHA-256 '
                                     f'differs from {MANIFEST}): encode again')
    expected = [(p['name'], tuple(p['shape']), p['dtype']) for p in manifest['parameters']]
    actual = [(name, tuple(param.shape), str(param.dtype).removeprefix('torch.'))
              for name, param, _ in stored_tensors(model)]
    if actual != expected:
        first = next((a, e) for a, e in itertools.zip_longest(actual, expected) if a != e)
        raise HuffmanFormatError(f'{directory} holds parameters for another model: the model has '
                                 f'{_describe(first[0])}, the encodings {_describe(first[1])}')


def _describe(parameter):
    if parameter is None:
        return 'no parameter there'
    name, shape, dtype = parameter
    return f'{name} of shape {list(shape)} ({dtype})'


def _encode_parameter(name, param, how, directory):
    encode = {'conv': huffman_encode_conv, 'fc': huffman_encode_fc, 'raw': dump_bias}[how]
    original, compressed = encode(param, name, directory)
    return {'name': name, 'original': original, 'compressed': compressed}


def _replace_directory(new, target):
    """Swap a finished directory into place: readers see the old or the new, never half.

    If the second rename fails the old directory is put back. The old one waits under a
    temporary name, which the next run removes if this one is killed between the renames.
    """
    old = None
    if os.path.exists(target):
        old = temp_name(os.path.dirname(os.path.abspath(target)), 'old-encodings')
        os.rename(target, old)
    try:
        os.rename(new, target)
    except OSError:
        if old:
            os.rename(old, target)
        raise
    if old:
        shutil.rmtree(old)


def format_table(rows: list[dict]) -> str:
    """The slides' table: name | original bytes | compressed bytes | improvement | percent."""
    width = max(15, *(len(r['name']) for r in rows))  # the slides' 15, or the longest name
    rule = '-' * (width + 61)
    lines = [f"{'Layer':<{width}} | {'original bytes':>14} | {'compressed bytes':>16} | "
             f"{'improvement':>11} | {'percent':>7}", rule]
    for r in rows:
        if r['name'] == 'total':
            lines.append(rule)
        lines.append(f"{r['name']:<{width}} | {r['original']:14} | {r['compressed']:16} | "
                     f"{r['original'] / r['compressed']:10.2f}x | "
                     f"{100 * r['compressed'] / r['original']:6.2f}%")
    return '\n'.join(lines)


def huffman_decode_model(model: torch.nn.Module, directory: str = 'encodings/') -> None:
    """Load every parameter of model from the files written by huffman_encode_model, once
    check_encodings has found them complete and unchanged."""
    check_encodings(model, directory)
    for name, param, how in stored_tensors(model):
        decode = {'conv': huffman_decode_conv, 'fc': huffman_decode_fc, 'raw': load_bias}[how]
        decode(param, name, directory)
