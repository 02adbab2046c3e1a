"""The .dcz container: a whole compressed model in one self-describing, checksummed file.

``save_compressed(model, path)`` writes it, ``load_compressed(path)`` returns the model.
Unlike the homework format (dozens of files, code trees with 32-bit leaves, raw biases),
the file is the compressed model: its size on disk is its size.

File: b'DCZ' | version byte | sections. Every section is
    tag byte | varint payload length | payload | CRC32 of (tag, length, payload), 4 bytes LE
and from version 4 on each CRC continues from the section before's (the header's from
the magic and version byte), so the last one covers the whole file: a section taken from
another file, or sections reordered, duplicated or dropped, fail the check.
A header section (tag 'H') comes first: architecture name, dataset name (from version
2; version 1 files are CIFAR-10 models), flags, then per layer its name and weight
shape. One layer section (tag 'L') follows per layer, in that order.

Layer payload (one prunable layer; a "unit" is an output neuron or conv filter), version 3:
    varint non-zeros | varint distinct values k | varint position buckets
    | varint shared bias values (only when biases are shared)
    | bitstream (MSB first, zero-padded to a byte):
        the code lengths (4 bits each) of the values; a presence bit per position bucket,
        then the code lengths of the present ones; the code lengths of the shared biases;
        then the value codes, the bucket codes, the buckets' extra bits, and the shared
        bias codes; then the codebook (k values, ascending) and the live units' biases
        (or the shared bias values) as floats.
Codes are canonical Huffman codes, stored as their lengths only; an alphabet of one
symbol needs neither lengths nor codes. Positions are the gaps between successive
non-zeros over the layer's live units, flattened, each coded as its bit length (Huffman)
plus the bits after the leading one (Elias gamma with learned bucket codes).
Floats keep every bit: an array's exponents, which span a few binades only, are
Huffman-coded over the range present: its lowest exponent and width (raw, 8 bits each,
5 for float16), a presence bit per exponent in the range (when it holds more than one),
the code lengths of the present ones (when more than one is present), the exponent codes
of all values, then every value's sign and mantissa, raw. Versions 1 and 2 stored the
codebook right after k and the biases (raw, or their count and codebook) right after the
bucket count, as plain little-endian floats.
The CRCs cover every section; the magic and version byte before them are checked by
value, and from version 3 on the header's CRC covers them too. Versions 1 to 3 check
each section alone.

Only live units are stored. Saving first removes, without changing the network's
function, every unit that no later weight reads: its incoming weights and bias are
zeroed. The last layer's units are all live; a layer's live units are then those the
next layer reads, so the decoder, working from the last layer back, knows them before
it reads a layer: positions range over live units only and dead units need no bias.
Loading returns that cleaned model exactly (bit for bit; cleaning also turns -0.0
weights into +0.0).

Lossy options, off by default: ``float16`` stores codebooks and biases as float16;
``bias_bits`` weight-shares each layer's live biases (k-means: 2**bias_bits non-zero
values, zeros stay zero).
"""
import copy
import os
import struct
import zlib

import numpy as np
import torch

from .codec import HuffmanCode, HuffmanFormatError, bit_windows, pack_codes, read_varint, varint
from .files import atomic_write
from .models import DATASETS, MODELS, build_model
from .prune import set_mask, units_read
from .quantization import check_bits, share_weights

MAGIC = b'DCZ'
# Far above the largest model (VGG-16, 134 MB as dense float32): bigger files are refused
# before they are read.
MAX_FILE_BYTES = 1 << 30
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
HEADER, LAYER = b'H', b'L'
FLOAT16, SHARED_BIASES = 1, 2  # header flag bits
LENGTH_BITS = 4
MAX_CODE_LENGTH = (1 << LENGTH_BITS) - 1
MAX_ALPHABET = 1 << MAX_CODE_LENGTH  # a balanced code of this many symbols still fits
FLOAT_FIELDS = {2: (5, 10), 4: (8, 23)}  # bytes per float -> exponent, mantissa bits


class ContainerError(ValueError):
    """A .dcz file is missing, truncated, corrupt, or does not fit the model."""


class Corrupt(Exception):
    """Raised inside the decoder at an inconsistency; reported as a ContainerError."""


# ---------------------------------------------------------------- public API
def save_compressed(model: torch.nn.Module, path: str, float16: bool = False,
                    bias_bits: int | None = None) -> dict:
    """Write model to path as one .dcz file, atomically; return the size report
    (see encode_model)."""
    data, report = encode_model(model, float16, bias_bits)
    atomic_write(path, lambda tmp: _write_bytes(tmp, data))
    return report


def load_compressed(path: str, device: str | torch.device = 'cpu') -> torch.nn.Module:
    """The model stored in a .dcz file, with masks marking its non-zeros."""
    try:
        with open(path, 'rb') as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise ContainerError(f'{path}: not a .dcz file (wrong magic)')
            if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
                raise ContainerError(f'{path} is {os.fstat(f.fileno()).st_size:,} bytes, more than '
                                     f'any .dcz file ({MAX_FILE_BYTES:,}): not a .dcz file')
            data = MAGIC + f.read()
    except FileNotFoundError:
        raise ContainerError(f'{path} not found: write it first with '
                             '`python huffman_encode.py --pack PATH`') from None
    except OSError as err:
        raise ContainerError(f'cannot read {path}: {err.strerror}') from None
    return decode_model(data, path).to(device)


def architecture_name(model: torch.nn.Module) -> str:
    """The registry name of model's class (the file stores it, loading rebuilds it)."""
    arch = getattr(model, 'arch', None)
    if MODELS.get(arch) is not type(model):
        raise ContainerError(f'cannot store a {type(model).__name__}: the container knows '
                             f'{sorted(MODELS)}')
    return arch


def encode_model(model: torch.nn.Module, float16: bool = False,
                 bias_bits: int | None = None) -> tuple[bytes, dict]:
    """(file bytes, report) of model. The report gives per layer the non-zeros, distinct
    values and bytes per part, the total bytes, and the ratio to dense float32."""
    if bias_bits is not None:
        check_bits(bias_bits)
    arch = architecture_name(model)
    clean = strip_dead_units(model)
    layers = _layers(clean)
    weights = [layer.weight.detach().cpu().numpy() for _, layer in layers]
    biases = [layer.bias.detach().cpu().numpy() for _, layer in layers]
    for (name, _), weight, bias in zip(layers, weights, biases, strict=True):
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise ContainerError(f'layer {name} holds NaN or infinite values; cannot store it')
    live = _live_units(weights)
    flags = (FLOAT16 if float16 else 0) | (SHARED_BIASES if bias_bits is not None else 0)
    value_dtype = np.dtype('<f2' if float16 else '<f4')
    header = _header_payload(arch, model.dataset, flags, layers)
    sections, rows = [(HEADER, header)], []
    for (name, _), weight, bias, alive in zip(layers, weights, biases, live, strict=True):
        payload, row = _encode_layer(weight, bias, alive, value_dtype, bias_bits)
        sections.append((LAYER, payload))
        rows.append({'layer': name, 'dense_bytes': 4 * (weight.size + bias.size), **row,
                     'bytes': len(_section(LAYER, payload))})
    data = frame(VERSION, sections)
    dense = sum(4 * p.numel() for p in model.parameters())
    report = {'architecture': arch, 'dataset': model.dataset, 'float16': float16, 'bias_bits': bias_bits,
              'header_bytes': len(data) - sum(r['bytes'] for r in rows), 'layers': rows,
              'bytes': len(data), 'dense_bytes': dense, 'ratio': dense / len(data)}
    return data, report


def decode_model(data: bytes, path: str = 'model.dcz') -> torch.nn.Module:
    """The model encoded in data (bytes of a .dcz file); ContainerError if it is not one."""
    version, sections = _split_sections(bytes(data), path)
    try:
        arch, dataset, flags, shapes = _parse_header(sections[0][1], version)
    except (Corrupt, HuffmanFormatError, UnicodeDecodeError, IndexError):
        raise ContainerError(f'{path}: corrupt header section') from None
    model = _build(arch, dataset, shapes, path)
    layers = _layers(model)
    if len(sections) != 1 + len(layers):
        raise ContainerError(f'{path}: {len(sections) - 1} layer sections for '
                             f'{len(layers)} layers (truncated or corrupt)')
    value_dtype = np.dtype('<f2' if flags & FLOAT16 else '<f4')
    alive = np.ones(layers[-1][1].weight.shape[0], dtype=bool)
    for i in reversed(range(len(layers))):
        (name, layer), (tag, payload) = layers[i], sections[1 + i]
        if tag != LAYER:
            raise ContainerError(f'{path}: unexpected section {tag!r} for layer {name}')
        try:
            weight, bias = _decode_layer(payload, tuple(layer.weight.shape), alive,
                                         value_dtype, bool(flags & SHARED_BIASES), version)
        # The CRCs make these unreachable but for crafted files; numpy's own errors on
        # such input are reported as the same one-line refusal.
        except (Corrupt, HuffmanFormatError, ValueError, IndexError) as err:
            raise ContainerError(f'{path}: layer {name}: corrupt data ({err})') from None
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight))
            layer.bias.copy_(torch.from_numpy(bias))
        set_mask(layer, (layer.weight != 0).to(layer.weight.dtype))
        if i:
            alive = units_read(layer.weight != 0, layers[i - 1][1].weight.shape[0]).numpy()
    return model


# ---------------------------------------------------------------- model structure
def _layers(model):
    """[(name, layer)] of the prunable layers; refuses parameters the file cannot hold."""
    layers = model.prunable_layers()
    stored = {f'{name}.{p}' for name, _ in layers for p in ('weight', 'bias')}
    other = [name for name, _ in model.named_parameters() if name not in stored]
    if other or any(layer.bias is None for _, layer in layers):
        raise ContainerError(f'cannot store {type(model).__name__}: the container holds '
                             f'conv/fc weights and biases only, not {other or "bias-free layers"}')
    return layers


def _live_units(weights):
    """Per layer, which units the next layer reads (the last layer's: all)."""
    live = [np.ones(weights[-1].shape[0], dtype=bool)]
    for weight, before in zip(reversed(weights[1:]), reversed(weights[:-1]), strict=True):
        live.insert(0, units_read(torch.from_numpy(weight != 0), before.shape[0]).numpy())
    return live


def strip_dead_units(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of model without the units no later weight reads: their incoming weights and
    biases are zeroed, so the network computes exactly the same function."""
    clean = copy.deepcopy(model).cpu()
    layers = _layers(clean)
    for _, layer in layers:
        layer.weight.data[layer.weight.data == 0] = 0.0  # -0.0 too: stored as no weight
        set_mask(layer, (layer.weight.data != 0).to(layer.weight.dtype))
    try:
        clean.prune_dead_units()
        live = _live_units([layer.weight.detach().numpy() for _, layer in layers])
    except ValueError as err:
        raise ContainerError(f'cannot store {type(model).__name__}: {err}') from None
    for (_, layer), alive in zip(layers, live, strict=True):
        layer.bias.data[torch.from_numpy(~alive)] = 0.0
    return clean


def _build(arch, dataset, shapes, path):
    if arch not in MODELS:
        raise ContainerError(f'{path}: unknown architecture {arch!r}; this version knows '
                             f'{sorted(MODELS)}')
    if dataset not in DATASETS:
        raise ContainerError(f'{path}: unknown dataset {dataset!r}; this version knows '
                             f'{sorted(DATASETS)}')
    model = build_model(arch, dataset)
    expected = [(name, tuple(layer.weight.shape)) for name, layer in _layers(model)]
    if expected != shapes:
        raise ContainerError(f'{path}: architecture mismatch: the file has layers {shapes}, '
                             f'{arch} has {expected}')
    return model


# ---------------------------------------------------------------- sections
def _section(tag, payload, crc_start=0):
    framed = tag + varint(len(payload)) + payload
    return framed + struct.pack('<I', zlib.crc32(framed, crc_start))


def frame(version: int, sections: list[tuple[bytes, bytes]]) -> bytes:
    """The bytes of a file of format `version` holding [(tag, payload)] sections, each
    with its CRC (from version 4 on, continuing from the section before's)."""
    out, chain = [MAGIC, bytes([version])], _crc_start(version)
    for tag, payload in sections:
        out.append(_section(tag, payload, chain))
        chain = struct.unpack('<I', out[-1][-4:])[0] if version >= 4 else 0
    return b''.join(out)


def _crc_start(version):
    """Where the header section's CRC starts: from version 3 on, the magic and version
    byte are under it, since the version decides how layers are read (2 and 3 differ in
    one bit)."""
    return zlib.crc32(MAGIC + bytes([version])) if version >= 3 else 0


def _split_sections(data, path):
    """(version, [(tag, payload)]) of a file, every length and CRC checked; the header
    first."""
    if data[:len(MAGIC)] != MAGIC:
        raise ContainerError(f'{path}: not a .dcz file (wrong magic)')
    if len(data) <= len(MAGIC):
        raise ContainerError(f'{path}: truncated file (no version)')
    version = data[len(MAGIC)]
    if version not in READABLE_VERSIONS:
        raise ContainerError(f'{path}: unknown format version {version} (this version reads '
                             f'{READABLE_VERSIONS}); update this project or re-pack the model')
    sections = []
    pos = len(MAGIC) + 1
    chain = _crc_start(version)  # the header's CRC start
    while pos < len(data):
        start = pos
        try:
            length, pos = read_varint(data, pos + 1, path)
        except HuffmanFormatError:
            raise ContainerError(f'{path}: truncated or corrupt section {len(sections)}') from None
        end = pos + length
        if end + 4 > len(data):
            raise ContainerError(f'{path}: truncated file (section {len(sections)} claims '
                                 f'{length} bytes, the file ends first)')
        (crc,) = struct.unpack('<I', data[end:end + 4])
        if zlib.crc32(data[start:end], chain) != crc:
            moved = ', or its sections were moved or come from other files' if version >= 4 else ''
            raise ContainerError(f'{path}: checksum mismatch in section {len(sections)}: the '
                                 f'file is corrupt{moved}')
        sections.append((data[start:start + 1], data[pos:end]))
        chain = crc if version >= 4 else 0  # version 4 chains every CRC to the one before
        pos = end + 4
    if not sections or sections[0][0] != HEADER:
        raise ContainerError(f'{path}: truncated file (no header section)')
    return version, sections


def _header_payload(arch, dataset, flags, layers):
    out = [_text(arch), _text(dataset), bytes([flags]), varint(len(layers))]
    for name, layer in layers:
        shape = layer.weight.shape
        out += [_text(name), varint(len(shape))] + [varint(d) for d in shape]
    return b''.join(out)


def _parse_header(payload, version):
    arch, pos = _read_text(payload, 0)
    dataset = 'cifar10'  # version 1 stored CIFAR-10 AlexNets only
    if version >= 2:
        dataset, pos = _read_text(payload, pos)
    flags = payload[pos]
    count, pos = read_varint(payload, pos + 1, 'header')
    shapes = []
    for _ in range(min(count, len(payload))):
        name, pos = _read_text(payload, pos)
        ndim, pos = read_varint(payload, pos, 'header')
        dims = []
        for _ in range(min(ndim, len(payload))):
            d, pos = read_varint(payload, pos, 'header')
            dims.append(d)
        shapes.append((name, tuple(dims)))
    if pos != len(payload) or flags & ~(FLOAT16 | SHARED_BIASES):
        raise Corrupt('header')
    return arch, dataset, flags, shapes


def _text(s):
    raw = s.encode()
    return varint(len(raw)) + raw


def _read_text(payload, pos):
    n, pos = read_varint(payload, pos, 'header')
    if pos + n > len(payload):
        raise Corrupt('header')
    return payload[pos:pos + n].decode(), pos + n


# ---------------------------------------------------------------- layers
def _encode_layer(weight, bias, alive, value_dtype, bias_bits):
    """(payload, size report) of one layer; weight and bias are the cleaned numpy arrays."""
    rows = weight.reshape(len(alive), -1)[alive].reshape(-1)
    positions = np.flatnonzero(rows)
    codebook, value_index = _codebook(rows[positions], value_dtype)
    buckets, extra = _gap_codes(positions)
    n_buckets = int(buckets.max()) + 1 if len(buckets) else 0
    head = varint(len(positions)) + varint(len(codebook)) + varint(n_buckets)
    bits = BitWriter()
    values = bits.table(np.bincount(value_index, minlength=len(codebook)))
    positions_table = bits.table(np.bincount(buckets, minlength=n_buckets), sparse=True)
    bias_floats = bias[alive]
    if bias_bits is not None:
        bias_floats, bias_index = _codebook(share_weights(bias_floats, bias_bits), value_dtype,
                                            nonzero=False)
        head += varint(len(bias_floats))
        bias_table = bits.table(np.bincount(bias_index, minlength=len(bias_floats)))
    sizes = {'table_bits': bits.size}

    def measure(key, write):
        before = bits.size
        write()
        sizes[key] = bits.size - before

    measure('value_bits', lambda: bits.codes(values, value_index))
    measure('position_bits', lambda: (bits.codes(positions_table, buckets), bits.raw(extra, buckets)))
    if bias_bits is not None:
        measure('bias_code_bits', lambda: bits.codes(bias_table, bias_index))
    measure('codebook_bits', lambda: bits.floats(codebook, value_dtype))
    measure('bias_float_bits', lambda: bits.floats(bias_floats, value_dtype))
    report = {'nonzeros': len(positions), 'values': len(codebook), 'live_units': int(alive.sum()),
              **sizes}
    return head + bits.bytes(), report


def _decode_layer(payload, shape, alive, value_dtype, shared_biases, version):
    """(weight, bias) numpy arrays of one layer payload; Corrupt if it is inconsistent."""
    units, per_unit = shape[0], int(np.prod(shape[1:]))
    live_count = int(alive.sum())
    capacity = live_count * per_unit
    nonzeros, pos = read_varint(payload, 0, 'layer')
    k, pos = read_varint(payload, pos, 'layer')
    if nonzeros > capacity or k > min(nonzeros, MAX_ALPHABET):
        raise Corrupt(f'{nonzeros} non-zeros, {k} values in a layer of {capacity} live weights')
    raw_floats = version < 3  # versions 1 and 2 stored the floats as plain bytes
    if raw_floats:
        codebook, pos = _read_floats(payload, pos, k, value_dtype)
    n_buckets, pos = read_varint(payload, pos, 'layer')
    # no gap exceeds the capacity, so no bucket exceeds its bit length
    if n_buckets > capacity.bit_length() or (n_buckets == 0) != (nonzeros == 0):
        raise Corrupt(f'{n_buckets} position buckets')
    bias_count = live_count
    if shared_biases:
        bias_count, pos = read_varint(payload, pos, 'layer')
        if bias_count > min(live_count, MAX_ALPHABET) or (bias_count == 0) != (live_count == 0):
            raise Corrupt(f'{bias_count} shared bias values')
    if raw_floats:
        bias_floats, pos = _read_floats(payload, pos, bias_count, value_dtype)
    bits = BitReader(payload[pos:])
    values = bits.table(k)
    positions_table = bits.table(n_buckets, sparse=True)
    bias_table = bits.table(bias_count) if shared_biases else None
    value_index = bits.codes(values, nonzeros)
    buckets = bits.codes(positions_table, nonzeros)
    gaps = bits.raw(buckets) + (np.uint64(1) << buckets.astype(np.uint64))
    positions = np.cumsum(gaps.astype(np.int64)) - 1
    if nonzeros and positions[-1] >= capacity:
        raise Corrupt('a position past the end of the layer')
    bias_index = bits.codes(bias_table, live_count) if shared_biases else None
    if not raw_floats:
        codebook = bits.floats(k, value_dtype)
        bias_floats = bits.floats(bias_count, value_dtype)
    bits.finish()
    if (codebook == 0).any() or not np.isfinite(codebook).all():
        raise Corrupt('zero or non-finite value in the codebook')
    live_bias = bias_floats if bias_index is None else bias_floats[bias_index]
    if not np.isfinite(live_bias).all():
        raise Corrupt('a non-finite bias')
    weight = np.zeros((units, per_unit), dtype=np.float32)
    live_rows = np.zeros(capacity, dtype=np.float32)
    live_rows[positions] = codebook[value_index]
    weight[alive] = live_rows.reshape(-1, per_unit)
    bias = np.zeros(units, dtype=np.float32)
    bias[alive] = live_bias
    return weight.reshape(shape), bias


def _codebook(values, value_dtype, nonzero=True):
    """(ascending distinct values as stored, index of each value). Stored as float16, a
    non-zero value keeps its sign and stays non-zero."""
    stored = _stored(values, value_dtype)
    if nonzero:
        lost = (stored == 0) & (values != 0)
        stored[lost] = np.copysign(np.finfo(value_dtype).smallest_subnormal, values[lost])
    codebook, index = np.unique(stored, return_inverse=True)
    if len(codebook) > MAX_ALPHABET:
        raise ContainerError(f'{len(codebook)} distinct values in one layer; the container takes '
                             f'at most {MAX_ALPHABET}: weight-share the model first (weight_share.py)')
    return codebook, index.reshape(-1)


def _stored(values, value_dtype):
    """values in value_dtype, refusing any that its range cannot hold."""
    values = np.asarray(values)
    largest = float(np.abs(values).max()) if values.size else 0.0
    if largest > np.finfo(value_dtype).max:
        raise ContainerError(f'a value of {largest:g} does not fit in {value_dtype.name}; '
                             'store this model without the float16 option')
    return values.astype(value_dtype)


def _read_floats(payload, pos, count, value_dtype):
    end = pos + count * value_dtype.itemsize
    if end > len(payload):
        raise Corrupt('truncated values')
    return np.frombuffer(payload[pos:end], dtype=value_dtype).astype(np.float32), end


def _gap_codes(positions):
    """Elias-gamma parts of each gap (distance to the previous position, the first from
    -1): its bucket, the bit length minus one, and the bits below the leading one."""
    gaps = np.diff(positions, prepend=-1).astype(np.uint64)  # each >= 1
    buckets = np.zeros(len(gaps), dtype=np.int64)
    for shift in (32, 16, 8, 4, 2, 1):  # exact integer bit length, no float rounding
        step = (gaps >> (buckets + shift).astype(np.uint64)) > 0
        buckets += shift * step
    return buckets, gaps - (np.uint64(1) << buckets.astype(np.uint64))


# ---------------------------------------------------------------- bit streams
class CodeTable:
    """A canonical Huffman code over the present symbols of an alphabet, and each
    symbol's code and length (0 for absent ones)."""

    def __init__(self, present, lengths):
        self.symbols = np.flatnonzero(present)
        self.code = HuffmanCode(lengths)  # over the present symbols, in order
        self.lengths = np.zeros(len(present), dtype=np.int64)
        self.lengths[self.symbols] = self.code.lengths
        self.codes = np.zeros(len(present), dtype=np.uint64)
        self.codes[self.symbols] = self.code.codes


class BitWriter:
    """Collects codes (MSB first) and packs them into zero-padded bytes."""

    def __init__(self):
        self.parts = []
        self.size = 0

    def raw(self, values: np.ndarray | list[int], widths: np.ndarray | list[int]) -> None:
        """Write each value in its width's number of bits (MSB first)."""
        widths = np.asarray(widths, dtype=np.int64)
        self.parts.append((np.asarray(values, dtype=np.uint64), widths))
        self.size += int(widths.sum())

    def table(self, counts: np.ndarray, sparse: bool = False) -> CodeTable:
        """Write the code of an alphabet with these symbol counts; return it. Sparse: a
        presence bit per symbol first (absent symbols get no code); otherwise every
        symbol is present. Then 4 bits per present symbol's code length, unless only one
        is present (it then costs no bits at all)."""
        present = np.asarray(counts) > 0 if sparse else np.ones(len(counts), dtype=bool)
        if sparse and len(present) > 1:
            self.raw(present, np.ones(len(present)))
        lengths = HuffmanCode.from_counts(np.asarray(counts)[present], MAX_CODE_LENGTH).lengths
        if len(lengths) > 1:
            self.raw(lengths, np.full(len(lengths), LENGTH_BITS))
        return CodeTable(present, lengths)

    def codes(self, table: CodeTable, symbols: np.ndarray) -> None:
        """Write the codes of symbols in table's code."""
        self.raw(table.codes[symbols], table.lengths[symbols])

    def floats(self, values: np.ndarray, dtype: np.dtype) -> None:
        """values stored as dtype (float32 or float16), every bit kept: the lowest exponent
        and the width of their range, the Huffman code of the exponents over it, the
        exponent codes of all values, then each value's sign and mantissa. Nothing for no
        values."""
        if not len(values):
            return
        exponent_bits, mantissa_bits = FLOAT_FIELDS[dtype.itemsize]
        words = _stored(values, dtype).view(f'<u{dtype.itemsize}').astype(np.uint64)
        exponents = (words >> np.uint64(mantissa_bits)) & np.uint64((1 << exponent_bits) - 1)
        low, high = int(exponents.min()), int(exponents.max())
        self.raw([low, high - low], [exponent_bits, exponent_bits])
        shifted = (exponents - np.uint64(low)).astype(np.int64)
        table = self.table(np.bincount(shifted, minlength=high - low + 1), sparse=True)
        self.codes(table, shifted)
        sign = words >> np.uint64(exponent_bits + mantissa_bits)
        mantissa = words & np.uint64((1 << mantissa_bits) - 1)
        self.raw((sign << np.uint64(mantissa_bits)) | mantissa, np.full(len(words), 1 + mantissa_bits))

    def bytes(self) -> bytes:
        """Everything written so far, packed into zero-padded bytes."""
        if not self.parts:
            return b''
        return pack_codes(np.concatenate([c for c, _ in self.parts]),
                          np.concatenate([w for _, w in self.parts]))


class BitReader:
    """Reads what BitWriter wrote, in the same order; Corrupt if it does not fit."""

    def __init__(self, body):
        self.body = body
        self.bits = np.unpackbits(np.frombuffer(body, dtype=np.uint8))
        self.pos = 0

    def raw(self, widths: np.ndarray | list[int]) -> np.ndarray:
        """The next unsigned integers of these bit widths; Corrupt if the stream ends first."""
        widths = np.asarray(widths, dtype=np.int64)
        starts = self.pos + np.cumsum(widths) - widths
        end = self.pos + int(widths.sum())
        if end > len(self.bits):
            raise Corrupt('truncated bit stream')
        self.pos = end
        width = int(widths.max()) if len(widths) else 0
        if width == 0:
            return np.zeros(len(widths), dtype=np.uint64)
        return bit_windows(self.body, starts, width) >> (width - widths).astype(np.uint64)

    def table(self, count: int, sparse: bool = False) -> CodeTable:
        """The code that BitWriter.table wrote for an alphabet of count symbols, checked
        to be complete."""
        present = np.ones(count, dtype=bool)
        if sparse and count > 1:
            present = self.raw(np.ones(count)).astype(bool)
        used = int(present.sum())
        lengths = np.zeros(used, dtype=np.int64)
        if used > 1:
            lengths = self.raw(np.full(used, LENGTH_BITS)).astype(np.int64)
            # a complete prefix code: Kraft sum exactly 1, no empty code
            if (lengths == 0).any() or np.sum(2.0 ** -lengths) != 1.0:
                raise Corrupt('code lengths do not form a complete code')
        if count and not used:
            raise Corrupt('an alphabet with no symbol present')
        return CodeTable(present, lengths)

    def codes(self, table: CodeTable, n: int) -> np.ndarray:
        """n symbols of table's code."""
        if n and not len(table.symbols):
            raise Corrupt(f'{n} symbols from an empty alphabet')
        if len(table.symbols) <= 1 or n == 0:  # no bits to read (and no packing of the rest)
            return np.full(n, table.symbols[0] if n else 0, dtype=np.int64)
        index, used = table.code.decode(np.packbits(self.bits[self.pos:]).tobytes(), n, 'bit stream')
        self.pos += used
        return table.symbols[index]

    def floats(self, n: int, dtype: np.dtype) -> np.ndarray:
        """n values that BitWriter.floats wrote as dtype, as float32."""
        if not n:
            return np.zeros(0, dtype=np.float32)
        exponent_bits, mantissa_bits = FLOAT_FIELDS[dtype.itemsize]
        low, width = (int(v) for v in self.raw([exponent_bits, exponent_bits]))
        if low + width >= (1 << exponent_bits) - 1:  # all ones: infinity or NaN
            raise Corrupt(f'float exponents {low} to {low + width}')
        exponents = self.codes(self.table(width + 1, sparse=True), n).astype(np.uint64) + np.uint64(low)
        rest = self.raw(np.full(n, 1 + mantissa_bits))
        words = (((rest >> np.uint64(mantissa_bits)) << np.uint64(exponent_bits + mantissa_bits))
                 | (exponents << np.uint64(mantissa_bits)) | (rest & np.uint64((1 << mantissa_bits) - 1)))
        return words.astype(f'<u{dtype.itemsize}').view(dtype).astype(np.float32)

    def finish(self) -> None:
        """Refuse (Corrupt) anything after the bit stream but its zero padding."""
        if len(self.bits) - self.pos >= 8 or self.bits[self.pos:].any():
            raise Corrupt('trailing data after the bit stream')


def _write_bytes(path, data):
    with open(path, 'wb') as f:
        f.write(data)
