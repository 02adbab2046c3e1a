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

Layer payload (one prunable layer; a "unit" is an output neuron or conv filter), version 5:
    varint non-zeros | varint distinct values k | varint position buckets
    | varint shared bias values (0: each live unit's bias stored as a number)
    | bitstream (MSB first, zero-padded to a byte):
        an order bit (1: the live units' weights are scanned column by column, 0: row by
        row; the encoder takes whichever codes the positions in fewer bits);
        positions: a presence bit per bucket, the code lengths of the present ones, the
        bucket codes, then the buckets' extra bits;
        values: the code lengths (4 bits each) of the k values, then the value codes;
        the codebook: k numbers, ascending;
        the biases: the live units' biases as numbers, or (when smaller) the code
        lengths of the shared values, each live unit's code, then the shared values as
        numbers, ascending.
Codes are canonical Huffman codes, stored as their lengths only; an alphabet of one
symbol needs neither lengths nor codes. Positions are the gaps between successive
non-zeros over the layer's live units, flattened, each coded as its bit length (Huffman)
plus the bits after the leading one (Elias gamma with learned bucket codes).
Numbers keep every bit, in the smaller of two forms (one bit says which): floats, or
fixed point. Floats: an array's exponents, which span a few binades only, are
Huffman-coded over the range present: its lowest exponent and width (raw, 8 bits each,
5 for float16), a presence bit per exponent in the range (when it holds more than one),
the code lengths of the present ones (when more than one is present), the exponent codes
of all values, then every value's sign and mantissa, raw. Fixed point: the exponent e of
a step 2**e that every value is a multiple of (9 bits, e + 149), then the multiples'
magnitudes plus one as Elias gamma codes with learned buckets (the largest bucket in 5
bits, the buckets' code as for positions, the codes, the extra bits) and a sign bit per
non-zero multiple; an ascending array stores its first multiple so and then each one's
distance from the one before. A codebook trained on a fixed-point grid
(weight_share.py --grid-bits) takes a few bits per value this way.
Versions 3 and 4 coded the bits in another order (value code lengths, positions' table,
shared-bias code lengths; value codes, bucket codes, extra bits, shared-bias codes; then
codebook and biases as floats), always row by row, and marked shared biases by a header
flag (value 2) instead of the count. Versions 1 and 2 stored the codebook right after k
and the biases (raw, or their count and codebook) right after the bucket count, as plain
little-endian floats.
The CRCs cover every section; the magic and version byte before them are checked by
value, and from version 3 on the header's CRC covers them too. Versions 1 to 3 check
each section alone.

Version 6 is version 5 with a tensors section (tag 'T') after the layers, written only
for models that have such tensors (the others' files stay version 5, byte for byte): it
holds every other tensor of the model's state but the masks (batch-norm weights and
running statistics, any other buffer): varint count, then per tensor its name, dtype
byte (1: float32, 3: int64), varint rank and dimensions, an int64 tensor's values as
zigzag varints; then a bitstream of the float32 tensors' values, in that order, as one
array of numbers (above), float32 even with the float16 option. A layer without a bias
is stored with zero biases (a few bits), and decoded so.

Only live units are stored. In a chain of layers (a model whose ``chain`` is True: this
project's AlexNet, LeNets and VGG-16), saving first removes, without changing the
network's function, every unit that no later weight reads: its incoming weights and bias
are zeroed. The last layer's units are all live; a layer's live units are then those the
next layer reads, so the decoder, working from the last layer back, knows them before
it reads a layer: positions range over live units only and dead units need no bias.
Loading returns that cleaned model exactly (bit for bit; cleaning also turns -0.0
weights into +0.0). In any other model (ResNet-18, a model of your own) every unit is live.

Any nn.Module can be stored: a model of this project's zoo is rebuilt from the names in
the header; another is loaded into a fresh instance of its class that the caller gives
(``load_compressed(path, model=MyNet())``), whose layer names and shapes must match.

Lossy options, off by default: ``float16`` stores codebooks and biases as float16;
``bias_bits`` weight-shares each layer's live biases (k-means: 2**bias_bits non-zero
values, zeros stay zero) before they are stored. Neither is needed for a model whose
biases were shared and trained so (weight_share.py --bias-bits): its file is lossless.
"""
import copy
import itertools
import os
import struct
import zlib

import numpy as np
import torch

from .codec import HuffmanCode, HuffmanFormatError, bit_windows, pack_codes, read_varint, varint
from .files import atomic_write
from .models import DATASETS, MODELS, build_model
from .prune import is_chain, live_units_of, prunable_layers, set_mask, state_without_masks, units_read
from .quantization import check_bits, share_weights

MAGIC = b'DCZ'
# Far above the largest model (VGG-16, 134 MB as dense float32): bigger files are refused
# before they are read.
MAX_FILE_BYTES = 1 << 30
VERSION = 5
TENSORS_VERSION = 6  # version 5 with a tensors section: only files of models with such tensors
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6)
HEADER, LAYER, TENSORS = b'H', b'L', b'T'
TENSOR_DTYPES = {np.dtype('float32'): 1, np.dtype('int64'): 3}
FLOAT16, SHARED_BIASES = 1, 2  # header flag bits (SHARED_BIASES: versions 1 to 4)
LENGTH_BITS = 4
MAX_CODE_LENGTH = (1 << LENGTH_BITS) - 1
MAX_ALPHABET = 1 << MAX_CODE_LENGTH  # a balanced code of this many symbols still fits
FLOAT_FIELDS = {2: (5, 10), 4: (8, 23)}  # bytes per float -> exponent, mantissa bits
# A fixed-point step is 2**e, e from float32's smallest (its least subnormal) to its largest
# lowest bit, stored as e - MIN_EXPONENT in EXPONENT_FIELD bits.
MIN_EXPONENT, MAX_EXPONENT, EXPONENT_FIELD = -149, 127, 9


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


def load_compressed(path: str, device: str | torch.device = 'cpu',
                    model: torch.nn.Module | None = None) -> torch.nn.Module:
    """The model stored in a .dcz file, with masks marking its non-zeros: a new model of
    the zoo, or `model` (a fresh instance of the stored model's class) filled in."""
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
    return decode_model(data, path, model).to(device)


def architecture_name(model: torch.nn.Module) -> str:
    """The registry name of a zoo model's class (loading rebuilds it), else the class's
    name (loading fills in an instance the caller gives)."""
    arch = getattr(model, 'arch', None)
    return arch if MODELS.get(arch) is type(model) else type(model).__name__


def encode_model(model: torch.nn.Module, float16: bool = False,
                 bias_bits: int | None = None) -> tuple[bytes, dict]:
    """(file bytes, report) of model. The report gives per layer the non-zeros, distinct
    values and bytes per part, the total bytes, and the ratio to dense float32."""
    if bias_bits is not None:
        check_bits(bias_bits)
    arch = architecture_name(model)
    _check_dtypes(model)
    clean = strip_dead_units(model)
    layers = _layers(clean)
    weights = [layer.weight.detach().cpu().numpy() for _, layer in layers]
    biases = [_bias(layer) for _, layer in layers]
    for (name, _), weight, bias in zip(layers, weights, biases, strict=True):
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise ContainerError(f'layer {name} holds NaN or infinite values; cannot store it')
    live = [alive.numpy() for alive in live_units_of(clean)]
    flags = FLOAT16 if float16 else 0
    value_dtype = np.dtype('<f2' if float16 else '<f4')
    header = _header_payload(arch, getattr(model, 'dataset', ''), flags, layers)
    sections, rows = [(HEADER, header)], []
    for (name, layer), weight, bias, alive in zip(layers, weights, biases, live, strict=True):
        payload, row = _encode_layer(weight, bias, alive, value_dtype, bias_bits)
        sections.append((LAYER, payload))
        dense_bytes = 4 * sum(p.numel() for p in layer.parameters(recurse=False))
        rows.append({'layer': name, 'dense_bytes': dense_bytes, **row,
                     'bytes': len(_section(LAYER, payload))})
    tensors = other_tensors(clean)
    if tensors:
        sections.append((TENSORS, _tensors_payload(tensors)))
    data = frame(TENSORS_VERSION if tensors else VERSION, sections)
    dense = sum(4 * p.numel() for p in model.parameters())
    tensor_bytes = len(_section(TENSORS, sections[-1][1])) if tensors else 0
    report = {'architecture': arch, 'dataset': getattr(model, 'dataset', ''), 'float16': float16,
              'bias_bits': bias_bits, 'tensor_bytes': tensor_bytes,
              'header_bytes': len(data) - sum(r['bytes'] for r in rows) - tensor_bytes,
              'layers': rows, 'bytes': len(data), 'dense_bytes': dense, 'ratio': dense / len(data)}
    return data, report


def decode_model(data: bytes, path: str = 'model.dcz',
                 model: torch.nn.Module | None = None) -> torch.nn.Module:
    """The model encoded in data (bytes of a .dcz file), or `model` filled in with it (see
    load_compressed); ContainerError if it is not one, or not that model's."""
    version, sections = _split_sections(bytes(data), path)
    try:
        arch, dataset, flags, shapes = _parse_header(sections[0][1], version)
    except (Corrupt, HuffmanFormatError, UnicodeDecodeError, IndexError):
        raise ContainerError(f'{path}: corrupt header section') from None
    if model is None:
        model = _build(arch, dataset, path)
    _fits(model, arch, dataset, shapes, path)
    layers = _layers(model)
    tensors = other_tensors(model)
    if len(sections) != 1 + len(layers) + bool(tensors):
        raise ContainerError(f'{path}: {len(sections) - 1} sections for {len(layers)} layers'
                             f'{" and their tensors" if tensors else ""} (truncated or corrupt)')
    if tensors:
        _load_tensors(sections[-1], tensors, path)
    value_dtype = np.dtype('<f2' if flags & FLOAT16 else '<f4')
    chain = is_chain(model)
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
        if layer.bias is None and bias.any():
            raise ContainerError(f'{path}: layer {name} has no bias, the file gives it one '
                                 '(another model, or corrupt)')
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight))
            if layer.bias is not None:
                layer.bias.copy_(torch.from_numpy(bias))
        set_mask(layer, (layer.weight != 0).to(layer.weight.dtype))
        if i:
            units = layers[i - 1][1].weight.shape[0]
            alive = (units_read(layer.weight != 0, units).numpy() if chain
                     else np.ones(units, dtype=bool))
    return model


# ---------------------------------------------------------------- model structure
def _layers(model):
    """[(name, layer)] of the prunable (conv and fc) layers."""
    layers = prunable_layers(model)
    if not layers:
        raise ContainerError(f'cannot store a {type(model).__name__}: it has no conv or fc layer')
    return layers


def _check_dtypes(model):
    """Refuse a model with a tensor the file cannot hold exactly (float32 and int64 ones)."""
    for name, tensor in state_without_masks(model).items():
        if tensor.dtype not in (torch.float32, torch.int64):
            raise ContainerError(f'cannot store {name}: a {str(tensor.dtype).removeprefix("torch.")} '
                                 'tensor (the container holds float32 and int64 ones); convert '
                                 'the model with .float()')


def _bias(layer):
    """A layer's bias as numpy, zeros for a layer without one."""
    if layer.bias is None:
        return np.zeros(layer.weight.shape[0], dtype=np.float32)
    return layer.bias.detach().cpu().numpy()


def other_tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """[(name, tensor)] of model's state but the conv/fc weights and biases and the masks,
    in state order: what the tensors section holds."""
    layers = {f'{name}.{part}' for name, _ in prunable_layers(model) for part in ('weight', 'bias')}
    return [(name, tensor) for name, tensor in state_without_masks(model).items() if name not in layers]


def _describe(tensor):
    """'name (dtype, shape)' of a (name, dtype, shape) triple, or None's 'no tensor'."""
    if tensor is None:
        return 'no tensor'
    name, dtype, shape = tensor
    return f'{name} ({dtype}, shape {list(shape)})'


def _tensors_payload(tensors):
    out, floats = [varint(len(tensors))], []
    for name, tensor in tensors:
        values = tensor.detach().cpu().numpy()
        if values.dtype == np.float32 and not np.isfinite(values).all():
            raise ContainerError(f'{name} holds NaN or infinite values; cannot store it')
        out += [_text(name), bytes([TENSOR_DTYPES[values.dtype]]), varint(values.ndim),
                *(varint(d) for d in values.shape)]
        if values.dtype == np.int64:
            zigzag = (values.reshape(-1) << 1) ^ (values.reshape(-1) >> 63)
            out += [varint(int(v)) for v in zigzag.astype(np.uint64)]
        else:
            floats.append(values.reshape(-1))
    # One array of numbers for all: a bitstream read per tensor would be scanned whole each time.
    bits = BitWriter()
    bits.numbers(np.concatenate(floats) if floats else np.zeros(0, np.float32), np.dtype('<f4'))
    return b''.join(out) + bits.bytes()


def _load_tensors(section, tensors, path):
    """Copy the tensors section's values into the model's tensors, after checking that its
    names, dtypes and shapes are theirs."""
    tag, payload = section
    codes = {code: dtype for dtype, code in TENSOR_DTYPES.items()}
    try:
        if tag != TENSORS:
            raise Corrupt(f'section {tag!r}')
        count, pos = read_varint(payload, 0, 'tensors')
        stored = []
        for _ in range(min(count, len(payload))):
            name, pos = _read_text(payload, pos)
            dtype = codes.get(payload[pos])
            dims, pos = _read_shape(payload, pos + 1, 'tensors')
            ints = []
            if dtype == np.int64:
                for _ in range(min(int(np.prod(dims)), len(payload))):
                    v, pos = read_varint(payload, pos, 'tensors')
                    ints.append((v >> 1) ^ -(v & 1))
            stored.append((name, dtype, dims, ints))
        expected = [(name, t.detach().cpu().numpy().dtype, tuple(t.shape)) for name, t in tensors]
        for found, wanted in itertools.zip_longest([entry[:3] for entry in stored], expected):
            if found != wanted:
                raise ContainerError(f'{path}: the file holds {_describe(found)} where the model '
                                     f'has {_describe(wanted)}: another model')
        sizes = [int(np.prod(shape)) for _, dtype, shape, _ in stored if dtype != np.int64]
        bits = BitReader(payload[pos:])
        floats = iter(np.split(bits.numbers(sum(sizes), np.dtype('<f4')), np.cumsum(sizes)[:-1]))
        bits.finish()
        values = [np.array(ints, dtype=np.int64) if dtype == np.int64 else next(floats)
                  for _, dtype, _, ints in stored]
    except (Corrupt, HuffmanFormatError, UnicodeDecodeError, IndexError, ValueError) as err:
        if isinstance(err, ContainerError):
            raise
        raise ContainerError(f'{path}: corrupt tensors section ({err})') from None
    with torch.no_grad():
        for (_, tensor), array in zip(tensors, values, strict=True):
            tensor.copy_(torch.from_numpy(array.reshape(tensor.shape)))


def strip_dead_units(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of model without the units no later weight reads: their incoming weights and
    biases are zeroed, so the network computes exactly the same function."""
    clean = copy.deepcopy(model).cpu()
    layers = _layers(clean)
    for _, layer in layers:
        layer.weight.data[layer.weight.data == 0] = 0.0  # -0.0 too: stored as no weight
        set_mask(layer, (layer.weight.data != 0).to(layer.weight.dtype))
    if not is_chain(clean):
        return clean
    try:
        clean.prune_dead_units()
        live = live_units_of(clean)
    except ValueError as err:
        raise ContainerError(f'cannot store {type(model).__name__}: {err}') from None
    for (_, layer), alive in zip(layers, live, strict=True):
        if layer.bias is not None:
            layer.bias.data[~alive] = 0.0
    return clean


def _build(arch, dataset, path):
    if arch not in MODELS:
        raise ContainerError(f'{path}: {arch!r} is not a model of this project\'s zoo '
                             f'({", ".join(sorted(MODELS))}): load it into a fresh instance of '
                             'its class, load_compressed(path, model=...)')
    if dataset not in DATASETS:
        raise ContainerError(f'{path}: unknown dataset {dataset!r}; this version knows '
                             f'{sorted(DATASETS)}')
    return build_model(arch, dataset)


def _fits(model, arch, dataset, shapes, path):
    """Refuse model unless it is the file's architecture (and dataset), with the file's
    layer names and shapes."""
    if architecture_name(model) != arch:
        raise ContainerError(f'{path} holds a {arch}, not a {architecture_name(model)}: load it '
                             f'into a fresh {arch}')
    if getattr(model, 'dataset', dataset) != dataset:
        raise ContainerError(f'{path} holds {arch} for {dataset}, not for {model.dataset}: load it '
                             f'into build_model({arch!r}, {dataset!r})')
    expected = [(name, tuple(layer.weight.shape)) for name, layer in _layers(model)]
    if expected != shapes:
        raise ContainerError(f'{path}: architecture mismatch: the file has layers {shapes}, '
                             f'{arch} has {expected}')


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
        dims, pos = _read_shape(payload, pos, 'header')
        shapes.append((name, dims))
    known = FLOAT16 | (SHARED_BIASES if version < 5 else 0)
    if pos != len(payload) or flags & ~known:
        raise Corrupt('header')
    return arch, dataset, flags, shapes


def _read_shape(payload, pos, what):
    """(a shape: varint rank, then its dimensions, as tuple, position after it)."""
    ndim, pos = read_varint(payload, pos, what)
    dims = []
    for _ in range(min(ndim, len(payload))):
        d, pos = read_varint(payload, pos, what)
        dims.append(d)
    return tuple(dims), pos


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
    """(payload, size report) of one layer (format 5); weight and bias are the cleaned
    numpy arrays."""
    matrix = weight.reshape(len(alive), -1)[alive]
    by_column = _position_bits(matrix.T) < _position_bits(matrix)
    flat = (matrix.T if by_column else matrix).reshape(-1)
    positions = np.flatnonzero(flat)
    codebook, value_index = _codebook(flat[positions], value_dtype)
    live_biases = bias[alive]
    if bias_bits is not None:
        live_biases = share_weights(live_biases, bias_bits)
    bias_part, bias_values, bias_report = _bias_block(_stored(live_biases, value_dtype), value_dtype)
    bits = BitWriter()
    bits.raw([int(by_column)], [1])
    sizes = {}

    def measure(key, write):
        before = bits.size
        result = write()
        sizes[key] = bits.size - before
        return result

    n_buckets = measure('position_bits', lambda: _write_positions(bits, positions))
    measure('value_bits', lambda: bits.codes(bits.table(np.bincount(value_index, minlength=len(codebook))),
                                             value_index))
    measure('codebook_bits', lambda: bits.numbers(codebook, value_dtype, ascending=True))
    head = varint(len(positions)) + varint(len(codebook)) + varint(n_buckets) + varint(bias_values)
    bits.extend(bias_part)
    report = {'nonzeros': len(positions), 'values': len(codebook), 'live_units': int(alive.sum()),
              'by_column': bool(by_column), **sizes, **bias_report,
              'position_entropy_bits': entropy_bits(np.diff(positions, prepend=-1)),
              'value_entropy_bits': entropy_bits(value_index)}
    return head + bits.bytes(), report


def _write_positions(writer, positions):
    """Write the position code of these positions (ascending): the gaps' buckets (a sparse
    table, then their codes), then each gap's bits below its leading one. Returns the
    number of buckets (the largest bucket + 1)."""
    buckets, extra = _gap_codes(positions)
    counts = np.bincount(buckets)
    writer.codes(writer.table(counts, sparse=True), buckets)
    writer.raw(extra, buckets)
    return len(counts)


def _position_bits(matrix):
    """Bits of the position code of matrix's non-zeros, scanned row by row."""
    writer = BitWriter()
    _write_positions(writer, np.flatnonzero(matrix.reshape(-1)))
    return writer.size


def _bias_block(biases, value_dtype):
    """(bits, shared values or 0, size report) of a layer's live biases: each bias as a
    number, or (when it is smaller) their distinct values and a Huffman code of each
    bias's value. A -0.0 bias keeps the plain form, which keeps its sign."""
    plain = BitWriter()
    plain.numbers(biases, value_dtype)
    best = (plain, 0, {'bias_bits': plain.size})
    if not np.signbit(biases[biases == 0]).any():
        values, index = np.unique(biases, return_inverse=True)
        if 0 < len(values) <= MAX_ALPHABET:
            shared = BitWriter()
            shared.codes(shared.table(np.bincount(index, minlength=len(values))), index)
            code_bits = shared.size
            shared.numbers(values, value_dtype, ascending=True)
            if shared.size < plain.size:
                best = (shared, len(values), {'bias_bits': shared.size, 'bias_code_bits': code_bits,
                                              'bias_entropy_bits': entropy_bits(index)})
    return best


def entropy_bits(symbols: np.ndarray) -> float:
    """The order-0 entropy of a sequence, in bits for all of it: the least any code of
    one symbol at a time, with a table of its own, could take (the table not counted)."""
    counts = np.unique(np.asarray(symbols), return_counts=True)[1]
    if len(counts) <= 1:
        return 0.0
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def _decode_layer(payload, shape, alive, value_dtype, shared_biases, version):
    """(weight, bias) numpy arrays of one layer payload; Corrupt if it is inconsistent."""
    if version < 5:
        return _decode_layer_v4(payload, shape, alive, value_dtype, shared_biases, version)
    capacity = int(alive.sum()) * int(np.prod(shape[1:]))
    (nonzeros, k, n_buckets, bias_count), pos = _layer_head(payload, alive, shape, True)
    bits = BitReader(payload[pos:])
    by_column = bool(bits.raw([1])[0])
    buckets = bits.codes(bits.table(n_buckets, sparse=True), nonzeros)
    positions = _positions(bits, buckets, capacity)
    value_index = bits.codes(bits.table(k), nonzeros)
    codebook = bits.numbers(k, value_dtype, ascending=True)
    if bias_count:
        bias_index = bits.codes(bits.table(bias_count), int(alive.sum()))
        live_bias = bits.numbers(bias_count, value_dtype, ascending=True)[bias_index]
    else:
        live_bias = bits.numbers(int(alive.sum()), value_dtype)
    bits.finish()
    return _assemble(shape, alive, positions, codebook, value_index, live_bias, by_column)


def _layer_head(payload, alive, shape, with_bias_count):
    """((non-zeros, distinct values, position buckets, shared bias values), where the bit
    stream starts) of a layer payload; the last is read only if with_bias_count, else 0."""
    live_count = int(alive.sum())
    capacity = live_count * int(np.prod(shape[1:]))
    nonzeros, pos = read_varint(payload, 0, 'layer')
    k, pos = read_varint(payload, pos, 'layer')
    if nonzeros > capacity or k > min(nonzeros, MAX_ALPHABET):
        raise Corrupt(f'{nonzeros} non-zeros, {k} values in a layer of {capacity} live weights')
    n_buckets, pos = read_varint(payload, pos, 'layer')
    # no gap exceeds the capacity, so no bucket exceeds its bit length
    if n_buckets > capacity.bit_length() or (n_buckets == 0) != (nonzeros == 0):
        raise Corrupt(f'{n_buckets} position buckets')
    shared = 0
    if with_bias_count:
        shared, pos = read_varint(payload, pos, 'layer')
        if shared > min(live_count, MAX_ALPHABET):
            raise Corrupt(f'{shared} shared bias values')
    return (nonzeros, k, n_buckets, shared), pos


def _positions(bits, buckets, capacity):
    """The positions of the non-zeros, from their gaps' buckets and the extra bits that
    follow in bits; Corrupt if one is past the layer's end."""
    positions = np.cumsum(bits.gamma(buckets)) - 1
    if len(positions) and positions[-1] >= capacity:
        raise Corrupt('a position past the end of the layer')
    return positions


def _assemble(shape, alive, positions, codebook, value_index, live_bias, by_column=False):
    """The (weight, bias) arrays a layer's decoded parts describe; Corrupt if a value is
    zero or not finite."""
    if (codebook == 0).any() or not np.isfinite(codebook).all():
        raise Corrupt('zero or non-finite value in the codebook')
    if not np.isfinite(live_bias).all():
        raise Corrupt('a non-finite bias')
    units, per_unit = shape[0], int(np.prod(shape[1:]))
    live_count = int(alive.sum())
    matrix = np.zeros(live_count * per_unit, dtype=np.float32)
    matrix[positions] = codebook[value_index]
    matrix = matrix.reshape(per_unit, live_count).T if by_column else matrix.reshape(live_count, per_unit)
    weight = np.zeros((units, per_unit), dtype=np.float32)
    weight[alive] = matrix
    bias = np.zeros(units, dtype=np.float32)
    bias[alive] = live_bias
    return weight.reshape(shape), bias


def _decode_layer_v4(payload, shape, alive, value_dtype, shared_biases, version):
    """_decode_layer of format versions 1 to 4."""
    live_count = int(alive.sum())
    capacity = live_count * int(np.prod(shape[1:]))
    raw_floats = version < 3  # versions 1 and 2 stored the floats as plain bytes
    if raw_floats:  # the codebook came right after k: read it, then read on as version 3
        _, pos = read_varint(payload, 0, 'layer')
        k, pos = read_varint(payload, pos, 'layer')
        codebook, end = _read_floats(payload, pos, k, value_dtype)
        payload = payload[:pos] + payload[end:]
    (nonzeros, k, n_buckets, bias_count), pos = _layer_head(payload, alive, shape, shared_biases)
    if not shared_biases:
        bias_count = live_count
    elif (bias_count == 0) != (live_count == 0):
        raise Corrupt(f'{bias_count} shared bias values')
    if raw_floats:
        bias_floats, pos = _read_floats(payload, pos, bias_count, value_dtype)
    bits = BitReader(payload[pos:])
    values = bits.table(k)
    positions_table = bits.table(n_buckets, sparse=True)
    bias_table = bits.table(bias_count) if shared_biases else None
    value_index = bits.codes(values, nonzeros)
    positions = _positions(bits, bits.codes(positions_table, nonzeros), capacity)
    bias_index = bits.codes(bias_table, live_count) if shared_biases else None
    if not raw_floats:
        codebook = bits.floats(k, value_dtype)
        bias_floats = bits.floats(bias_count, value_dtype)
    bits.finish()
    live_bias = bias_floats if bias_index is None else bias_floats[bias_index]
    return _assemble(shape, alive, positions, codebook, value_index, live_bias)


def _codebook(values, value_dtype):
    """(ascending distinct values as stored, index of each value). Stored as float16, a
    non-zero value keeps its sign and stays non-zero."""
    stored = _stored(values, value_dtype)
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
    """Elias-gamma parts (_gamma_parts) of each gap: the distance to the previous
    position, the first from -1."""
    return _gamma_parts(np.diff(positions, prepend=-1))


def _gamma_parts(values):
    """Elias-gamma parts of each positive integer: its bucket, the bit length minus one,
    and the bits below the leading one."""
    values = np.asarray(values).astype(np.uint64)
    buckets = np.zeros(len(values), dtype=np.int64)
    for shift in (32, 16, 8, 4, 2, 1):  # exact integer bit length, no float rounding
        step = (values >> (buckets + shift).astype(np.uint64)) > 0
        buckets += shift * step
    return buckets, values - (np.uint64(1) << buckets.astype(np.uint64))


def _fixed_point(values):
    """(e, integers) with values == integers * 2**e exactly, e as large as it can be, the
    integers below 2**30 in size; None for values that have none (or a -0.0)."""
    if np.signbit(values[values == 0]).any():
        return None
    nonzero = values[values != 0].astype(np.float64)
    exponent = 0
    if len(nonzero):
        fraction, exponents = np.frexp(nonzero)  # |fraction| in [0.5, 1): 53 bits exact
        mantissa = np.abs(fraction * 2.0 ** 53).astype(np.int64)
        lowest_bit = np.frexp((mantissa & -mantissa).astype(np.float64))[1] - 1
        exponent = int((exponents - 53 + lowest_bit).min())
    integers = np.ldexp(values.astype(np.float64), -exponent)
    if len(integers) and np.abs(integers).max() >= 2 ** 30:
        return None
    return exponent, integers.astype(np.int64)


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

    def numbers(self, values: np.ndarray, dtype: np.dtype, ascending: bool = False) -> None:
        """values stored as dtype, every bit kept (format 5): a bit, then floats() (0) or,
        when that is smaller (1), fixed point: the exponent e of a step 2**e that every
        value is a multiple of (9 bits, e + 149), then the multiples as gammas() of
        magnitude + 1 and a sign bit per non-zero one. `ascending` (strictly, as in a
        codebook): the first multiple so, then each one's distance from the one before."""
        if not len(values):
            return
        stored = _stored(values, dtype).astype(np.float32)
        plain = BitWriter()
        plain.raw([0], [1])
        plain.floats(stored, dtype)
        fixed = _fixed_point(stored)
        if fixed is not None:
            exponent, integers = fixed
            writer = BitWriter()
            writer.raw([1, exponent - MIN_EXPONENT], [1, EXPONENT_FIELD])
            signed = integers[:1] if ascending else integers
            steps = np.abs(signed) + 1
            if ascending:
                steps = np.concatenate([steps, np.diff(integers)])
            writer.gammas(steps)
            writer.raw(signed[signed != 0] < 0, np.ones(int(np.count_nonzero(signed))))
            if writer.size < plain.size:
                plain = writer
        self.extend(plain)

    def gammas(self, values: np.ndarray) -> None:
        """Positive integers (below 2**31) as Elias-gamma codes with learned buckets: the
        largest bucket (5 bits), the buckets' Huffman code (sparse), their codes, then
        each value's bits below its leading one."""
        buckets, extra = _gamma_parts(values)
        top = int(buckets.max()) if len(buckets) else 0
        self.raw([top], [5])
        self.codes(self.table(np.bincount(buckets, minlength=top + 1), sparse=True), buckets)
        self.raw(extra, buckets)

    def extend(self, other: 'BitWriter') -> None:
        """Append everything another writer holds."""
        self.parts += other.parts
        self.size += other.size

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

    def numbers(self, n: int, dtype: np.dtype, ascending: bool = False) -> np.ndarray:
        """n values that BitWriter.numbers wrote, as float32."""
        if not n:
            return np.zeros(0, dtype=np.float32)
        if not self.raw([1])[0]:
            return self.floats(n, dtype)
        exponent = int(self.raw([EXPONENT_FIELD])[0]) + MIN_EXPONENT
        if exponent > MAX_EXPONENT:
            raise Corrupt(f'a fixed-point step of 2**{exponent}')
        steps = self.gammas(n)
        signed = steps[:1] - 1 if ascending else steps - 1
        negative = self.raw(np.ones(int(np.count_nonzero(signed)))).astype(bool)
        signed[np.flatnonzero(signed)[negative]] *= -1
        integers = np.concatenate([signed, signed[0] + np.cumsum(steps[1:])]) if ascending else signed
        with np.errstate(over='ignore'):  # a crafted file's; the callers refuse infinities
            return np.ldexp(integers.astype(np.float64), exponent).astype(np.float32)

    def gammas(self, n: int) -> np.ndarray:
        """n integers that BitWriter.gammas wrote."""
        top = int(self.raw([5])[0])
        return self.gamma(self.codes(self.table(top + 1, sparse=True), n))

    def gamma(self, buckets: np.ndarray) -> np.ndarray:
        """The integers of these Elias-gamma buckets, their bits below the leading one
        read next."""
        return (self.raw(buckets) + (np.uint64(1) << buckets.astype(np.uint64))).astype(np.int64)

    def finish(self) -> None:
        """Refuse (Corrupt) anything after the bit stream but its zero padding."""
        if len(self.bits) - self.pos >= 8 or self.bits[self.pos:].any():
            raise Corrupt('trailing data after the bit stream')


def _write_bytes(path, data):
    with open(path, 'wb') as f:
        f.write(data)
