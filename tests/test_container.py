"""The .dcz container: bit-exact round trips, lossless clean-up, lossy extras, and refusal
of every kind of damaged or foreign file."""
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huffman_encode import states_equal as params_equal
from net import container
from net.container import (
    ContainerError,
    decode_model,
    encode_model,
    load_compressed,
    save_compressed,
    strip_dead_units,
)
from net.quantization import apply_bias_sharing, apply_grid
from tests.conftest import TinyNet, raw_sections

INPUT = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.setitem(container.MODELS, 'tiny', TinyNet)


def make_model(seed=0, kept=0.3, values=8, dead_fc1_units=0):
    """A TinyNet with about `kept` of each weight kept, at most `values` distinct
    non-zeros per layer, and fc1 units that fc2 does not read."""
    torch.manual_seed(seed)
    model = TinyNet()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in model.prunable_layers():
            book = torch.randn(values, generator=g)
            book[book == 0] = 1.0
            index = torch.randint(0, values, layer.weight.shape, generator=g)
            keep = torch.rand(layer.weight.shape, generator=g) < kept
            layer.weight.copy_(torch.where(keep, book[index], torch.zeros(())))
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g))
        model.fc2.weight[:, :dead_fc1_units] = 0
    return model


@pytest.mark.parametrize('kept', [0.0, 0.01, 0.3, 1.0])
@pytest.mark.parametrize('values', [1, 2, 7, 40])
def test_round_trip_is_bit_exact_and_computes_the_same(kept, values):
    model = make_model(kept=kept, values=values, dead_fc1_units=5)
    data, report = encode_model(model)
    decoded = decode_model(data)
    assert params_equal(decoded, strip_dead_units(model))
    assert torch.equal(decoded(INPUT), model(INPUT))
    assert report['bytes'] == len(data)
    for name, layer in decoded.prunable_layers():
        assert torch.equal(layer.weight_mask, (layer.weight != 0).float()), name


def test_dead_units_lose_incoming_weights_and_bias_but_not_function():
    model = make_model(kept=0.5, dead_fc1_units=6)
    clean = strip_dead_units(model)
    assert (clean.fc1.weight[:6] == 0).all() and (clean.fc1.bias[:6] == 0).all()
    assert torch.equal(clean.fc1.weight[6:], model.fc1.weight[6:])
    assert torch.equal(clean(INPUT), model(INPUT))
    assert model.fc1.weight[:6].count_nonzero() > 0  # the caller's model is untouched
    _, report = encode_model(model)
    fc1 = next(r for r in report['layers'] if r['layer'] == 'fc1')
    assert fc1['live_units'] == 10
    live_biases = container.BitWriter()
    live_biases.numbers(model.fc1.bias.detach().numpy()[6:], np.dtype('<f4'))
    assert fc1['bias_bits'] == live_biases.size  # the 10 live biases, no more


def test_one_value_per_layer_costs_no_value_bits():
    _, report = encode_model(make_model(kept=0.5, values=1))
    assert all(r['value_bits'] == 0 and r['values'] == 1 for r in report['layers'])


def test_dense_layers_cost_no_position_bits():
    _, report = encode_model(make_model(kept=1.0))
    assert all(r['position_bits'] == 0 for r in report['layers'])


def test_sparser_models_take_fewer_bytes():
    sizes = [encode_model(make_model(kept=k))[1]['bytes'] for k in (0.5, 0.1, 0.01)]
    assert sizes[0] > sizes[1] > sizes[2]


def test_float16_is_smaller_keeps_zeros_and_signs():
    model = make_model(kept=0.3)
    with torch.no_grad():
        model.fc1.weight[15, :2] = torch.tensor([1e-9, -1e-9])  # below float16's smallest
    data, report = encode_model(model, float16=True)
    decoded = decode_model(data)
    clean = strip_dead_units(model)
    assert report['bytes'] < encode_model(model)[1]['bytes']
    for (name, a), (_, b) in zip(decoded.prunable_layers(), clean.prunable_layers(), strict=True):
        assert torch.equal(a.weight != 0, b.weight != 0), name
        assert torch.equal(torch.sign(a.weight), torch.sign(b.weight)), name
        assert torch.allclose(a.weight, b.weight.half().float(), atol=6e-8), name


@pytest.mark.parametrize('bias_bits', [1, 2])
def test_shared_biases_hold_few_values(bias_bits):
    model = make_model(kept=0.3)
    decoded = decode_model(encode_model(model, bias_bits=bias_bits)[0])
    for name, layer in decoded.prunable_layers():
        assert len(layer.bias.unique()) <= 2 ** bias_bits + 1, name  # + zero
    assert params_equal_weights(decoded, strip_dead_units(model))


def params_equal_weights(a, b):
    return all(torch.equal(x.weight, y.weight) for (_, x), (_, y)
               in zip(a.prunable_layers(), b.prunable_layers(), strict=True))


def test_save_and_load_a_file(tmp_path):
    model = make_model()
    path = tmp_path / 'm.dcz'
    report = save_compressed(model, str(path))
    assert os.path.getsize(path) == report['bytes']
    assert params_equal(load_compressed(str(path)), strip_dead_units(model))


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / 'm.dcz'
    save_compressed(make_model(seed=1), str(path))
    before = path.read_bytes()

    def fail_halfway(tmp, data):
        with open(tmp, 'wb') as f:
            f.write(data[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(container, '_write_bytes', fail_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_compressed(make_model(seed=2), str(path))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ['m.dcz']


# ---------------------------------------------------------------- refusals
def test_a_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / 'huge.dcz'
    with open(path, 'wb') as f:  # sparse: 2 GiB on disk in a few bytes
        f.write(container.MAGIC)
        f.truncate(2 << 30)
    monkeypatch.setattr(container, 'decode_model', lambda *a: pytest.fail('read'))
    with pytest.raises(ContainerError, match='is 2,147,483,648 bytes, more than any .dcz file'):
        load_compressed(path)
    path.write_bytes(b'PK\x03\x04' + bytes(100))
    with pytest.raises(ContainerError, match='not a .dcz file .wrong magic.'):
        load_compressed(path)


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ContainerError, match='not found: write it first with `python huffman_enc'):
        load_compressed(str(tmp_path / 'none.dcz'))


def test_unshared_weights_are_refused(monkeypatch):
    monkeypatch.setattr(container, 'MAX_ALPHABET', 4)
    with pytest.raises(ContainerError, match='weight-share the model first'):
        encode_model(make_model(values=5))


def test_nan_weights_are_refused():
    model = make_model()
    with torch.no_grad():
        model.fc2.weight[0, 0] = float('nan')
    with pytest.raises(ContainerError, match='layer fc2 holds NaN'):
        encode_model(model)


class Other(TinyNet):
    """A model class outside the zoo (a user's)."""


def test_a_model_outside_the_zoo_loads_into_a_fresh_instance_only():
    model = make_model()
    other = Other()
    other.load_state_dict(model.state_dict())
    data, report = encode_model(other)
    assert report['architecture'] == 'Other'
    with pytest.raises(ContainerError, match="'Other' is not a model of this project's zoo .*"
                                             r"load_compressed\(path, model=\.\.\.\)"):
        decode_model(data)
    with pytest.raises(ContainerError, match='holds a Other, not a tiny: load it into a fresh Other'):
        decode_model(data, model=TinyNet())
    fresh = Other()
    assert decode_model(data, model=fresh) is fresh
    assert params_equal(fresh, strip_dead_units(other))


@pytest.fixture
def encoded(registered):
    return encode_model(make_model(kept=0.05, values=5, dead_fc1_units=3))[0]


def cheap_model(kept=0.05):
    """The `encoded` fixture's model with shared biases and every value on a 6-bit grid:
    what format 5 stores as fixed point, with shared biases."""
    model = make_model(kept=kept, values=5, dead_fc1_units=3)
    apply_bias_sharing(model, 2)
    apply_grid(model, 6, biases=True)
    return model


@pytest.fixture(params=['encoded', 'cheap', 'tiny-v4.dcz', 'tiny-v3.dcz'])
def stored(request, registered):
    """The bytes of a file of each kind the decoder reads: format 5 with float values,
    format 5 with fixed-point values and shared biases, and older formats."""
    if request.param == 'encoded':
        return request.getfixturevalue('encoded')
    if request.param == 'cheap':
        return encode_model(cheap_model())[0]
    return old_file(request.param)


def test_wrong_magic(encoded):
    with pytest.raises(ContainerError, match=r'x.dcz: not a .dcz file \(wrong magic\)'):
        decode_model(b'PK' + encoded[2:], 'x.dcz')


def test_unknown_version(encoded):
    with pytest.raises(ContainerError, match='unknown format version 7'):
        decode_model(encoded[:3] + bytes([7]) + encoded[4:])


FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


def old_file(name):
    """A file written by an earlier format version (made from make_model(kept=0.05,
    values=5, dead_fc1_units=3), the `encoded` fixture's model)."""
    with open(os.path.join(FIXTURES, name), 'rb') as f:
        return f.read()


@pytest.mark.parametrize('version, has_lossy', [(2, True), (3, False), (4, True)])
def test_older_versions_still_load(version, has_lossy):
    model = make_model(kept=0.05, values=5, dead_fc1_units=3)
    data = old_file(f'tiny-v{version}.dcz')
    assert data[3] == version
    assert params_equal(decode_model(data), strip_dead_units(model))
    if has_lossy:  # float16 values, 2-bit shared biases: the same lossy model as today's encoder makes
        lossy = decode_model(encode_model(model, float16=True, bias_bits=2)[0])
        assert params_equal(decode_model(old_file(f'tiny-v{version}-lossy.dcz')), lossy)


def test_a_version_5_header_with_the_old_shared_biases_flag_is_refused(encoded):
    # format 5 decides per layer whether biases are shared; the header flag is 1-4's
    sections = container._split_sections(encoded, 'x')[1]
    header = bytearray(sections[0][1])
    _, pos = container._read_text(header, 0)
    _, pos = container._read_text(header, pos)
    header[pos] |= container.SHARED_BIASES
    with pytest.raises(ContainerError, match='corrupt header section'):
        decode_model(container.frame(5, [(container.HEADER, bytes(header)), *sections[1:]]))


@pytest.mark.parametrize('splice', [
    lambda a, b: a[:2] + b[2:3] + a[3:],  # fc1's section from another valid file
    lambda a, b: a[:1] + [a[2], a[1]] + a[3:],  # two layer sections swapped
    lambda a, b: a[:2] + a[1:2] + a[3:],  # a section in the place of another
    lambda a, b: a[:-1] + a[-1:] + a[-1:],  # one section twice
    lambda a, b: a[:1] + a[2:],           # a section dropped
])
def test_sections_from_other_files_or_moved_are_refused(splice):
    a = encode_model(make_model(seed=1, kept=0.2))[0]
    b = encode_model(make_model(seed=2, kept=0.2))[0]
    head = a[:len(container.MAGIC) + 1]
    with pytest.raises(ContainerError, match=r'checksum mismatch in section \d: the file is corrupt, '
                                             r'or its sections were moved|\d layer sections for 3'):
        decode_model(head + b''.join(splice(raw_sections(a), raw_sections(b))))


@pytest.mark.parametrize('data, version', [('encoded', 2), ('encoded', 3), ('encoded', 4),
                                           ('tiny-v2.dcz', 3), ('tiny-v3.dcz', 4),
                                           ('tiny-v4.dcz', 5)])
def test_a_changed_version_byte_is_refused(encoded, data, version):
    # Versions differ in a bit or two and read layers differently: the header's CRC decides
    data = encoded if data == 'encoded' else old_file(data)
    with pytest.raises(ContainerError, match='checksum mismatch in section 0'):
        decode_model(data[:3] + bytes([version]) + data[4:])


def test_version_1_files_without_a_dataset_load_as_cifar10():
    version_2 = old_file('tiny-v2.dcz')
    _, sections = container._split_sections(version_2, 'x')
    header = sections[0][1]
    _, arch_end = container._read_text(header, 0)
    _, dataset_end = container._read_text(header, arch_end)
    version_1 = container.frame(1, [(container.HEADER, header[:arch_end] + header[dataset_end:]),
                                    *sections[1:]])
    model = decode_model(version_1)
    assert model.dataset == 'cifar10'
    assert params_equal(model, decode_model(version_2))


def test_unknown_dataset(encoded, monkeypatch):
    monkeypatch.delitem(container.DATASETS, 'cifar10')
    with pytest.raises(ContainerError, match="unknown dataset 'cifar10'"):
        decode_model(encoded)


def test_unknown_architecture(encoded, monkeypatch):
    monkeypatch.delitem(container.MODELS, 'tiny')
    with pytest.raises(ContainerError, match="'tiny' is not a model of this project's zoo"):
        decode_model(encoded)


def test_architecture_mismatch(encoded, monkeypatch):
    class Wider(TinyNet):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.fc1 = torch.nn.Linear(4 * 8 * 8, 17)
            self.fc2 = torch.nn.Linear(17, 10)
    monkeypatch.setitem(container.MODELS, 'tiny', Wider)
    with pytest.raises(ContainerError, match=r'architecture mismatch: the file has layers .*fc1'):
        decode_model(encoded)


def test_every_truncation_is_refused(encoded):
    for end in range(len(encoded)):
        with pytest.raises(ContainerError):
            decode_model(encoded[:end])


def test_every_single_bit_flip_is_refused(stored):
    for byte in range(len(stored)):
        for bit in range(8):
            damaged = bytearray(stored)
            damaged[byte] ^= 1 << bit
            with pytest.raises(ContainerError):
                decode_model(bytes(damaged))


def test_trailing_garbage_is_refused(encoded):
    with pytest.raises(ContainerError):
        decode_model(encoded + b'\x00')


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), kept=st.floats(0, 1), values=st.integers(1, 40),
       dead=st.integers(0, 16), float16=st.booleans())
def test_random_models_round_trip(seed, kept, values, dead, float16):
    model = make_model(seed, kept, values, dead)
    decoded = decode_model(encode_model(model, float16=float16)[0])
    clean = strip_dead_units(model)
    if float16:
        for a, b in zip(decoded.parameters(), clean.parameters(), strict=True):
            assert torch.equal(a != 0, b != 0)
            assert torch.allclose(a, b.half().float(), rtol=0, atol=6e-8)
    else:
        assert params_equal(decoded, clean)


# `stored` is immutable bytes: sharing it between examples is safe.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_corruptions_are_refused(stored, data):
    damaged = bytearray(stored)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    tail = data.draw(st.binary(max_size=8))
    damaged = bytes(damaged[:cut]) + tail
    if damaged == stored:
        return
    with pytest.raises(ContainerError):
        decode_model(damaged)


def reframe_layer(data, index, payload):
    """data with layer section `index` replaced by payload, framed with a valid CRC."""
    sections = container._split_sections(data, 'x')[1]
    sections[1 + index] = (container.LAYER, payload)
    return container.frame(data[3], sections)


# Checksums stop random damage before the layer parser: these files are crafted past
# them, so every consistency check of the parser is exercised.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_crafted_layer_payloads_are_refused_or_consistent(stored, data):
    index = data.draw(st.integers(0, 2))
    payload = bytearray(container._split_sections(stored, 'x')[1][1 + index][1])
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(payload) - 1))
        payload[at] ^= data.draw(st.integers(1, 255))
    payload = bytes(payload[:data.draw(st.integers(0, len(payload)))])
    try:
        model = decode_model(reframe_layer(stored, index, payload))
    except ContainerError:
        return
    claimed = container.read_varint(payload, 0, 'x')[0]
    layer = model.prunable_layers()[index][1]
    assert int(layer.weight.count_nonzero()) == claimed
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_huge_position_gaps_are_refused(encoded):
    # a gap bucket no layer of this size can hold: the bucket count is checked
    payload = container._split_sections(encoded, 'x')[1][3][1]  # fc2, 16 x 10 live weights
    nonzeros, pos = container.read_varint(payload, 0, 'x')
    k, pos = container.read_varint(payload, pos, 'x')
    crafted = payload[:pos] + container.varint(64) + payload[pos + 1:]
    with pytest.raises(ContainerError, match='position buckets'):
        decode_model(reframe_layer(encoded, 2, crafted))


# ---------------------------------------------------------------- coding parts
@pytest.mark.parametrize('top', [1, 5, 31, 40])
def test_gap_codes_are_exact_around_powers_of_two(top):
    gaps = np.array([1, 2, 3, (1 << top) - 1, 1 << top, (1 << top) + 1], dtype=np.int64)
    positions = np.cumsum(gaps) - 1
    buckets, extra = container._gap_codes(positions)
    assert buckets.tolist() == [g.bit_length() - 1 for g in gaps.tolist()]
    assert ((np.uint64(1) << buckets.astype(np.uint64)) + extra == gaps.astype(np.uint64)).all()
    assert (extra < (np.uint64(1) << buckets.astype(np.uint64))).all()


FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 1.1754944e-38, 3.4028235e38, -3.4028235e38,
               0.1, 2.0 ** -60, 123456.789,
               2.0 ** -24, -(2.0 ** -20), 65504.0, -65504.0]  # float16: subnormals, largest


@pytest.mark.parametrize('dtype', ['<f4', '<f2'])
@pytest.mark.parametrize('values', [[], [0.5], [-0.0], [0.25, 0.25, 0.25], FLOAT_EDGES,
                                    np.random.default_rng(0).normal(0, 0.05, 300).tolist()])
def test_floats_round_trip_bit_exact(dtype, values):
    dtype = np.dtype(dtype)
    stored = np.array(values, dtype=np.float32)
    if dtype.itemsize == 2:
        stored = stored[np.abs(stored) <= np.finfo(np.float16).max]
    writer = container.BitWriter()
    writer.floats(stored, dtype)
    reader = container.BitReader(writer.bytes())
    decoded = reader.floats(len(stored), dtype)
    reader.finish()
    assert decoded.dtype == np.float32
    expected = stored.astype(dtype).astype(np.float32)
    assert decoded.view(np.uint32).tolist() == expected.view(np.uint32).tolist()  # -0.0 too


def test_floats_of_a_few_binades_cost_less_than_raw():
    biases = np.random.default_rng(0).normal(0, 0.05, 1000).astype(np.float32)
    writer = container.BitWriter()
    writer.floats(biases, np.dtype('<f4'))
    assert writer.size < 28 * len(biases)  # raw: 32; sign and mantissa alone: 24


@pytest.mark.parametrize('dtype, low, width', [('<f4', 250, 5), ('<f2', 28, 3)])
def test_infinite_float_exponents_are_refused(dtype, low, width):
    # an exponent of all ones (255 in float32, 31 in float16) means infinity or NaN
    dtype = np.dtype(dtype)
    bits = container.FLOAT_FIELDS[dtype.itemsize][0]
    writer = container.BitWriter()
    writer.raw([low, width], [bits, bits])
    with pytest.raises(container.Corrupt, match=f'float exponents {low} to {low + width}'):
        container.BitReader(writer.bytes()).floats(3, dtype)


# ---------------------------------------------------------------- format 5's cheaper parts
def test_fixed_point_values_and_shared_biases_are_found_and_cost_less():
    model = cheap_model(kept=0.3)
    data, report = encode_model(model)
    assert params_equal(decode_model(data), strip_dead_units(model))
    plain = encode_model(make_model(kept=0.3, values=5, dead_fc1_units=3))[1]
    for cheap, float_row in zip(report['layers'], plain['layers'], strict=True):
        assert cheap['codebook_bits'] < float_row['codebook_bits'] / 2, cheap['layer']
        assert cheap['bias_bits'] < float_row['bias_bits'] / 2, cheap['layer']
        assert 'bias_code_bits' not in float_row  # distinct float biases: stored one by one
    fc2 = report['layers'][-1]  # 10 biases, at most 4 values: an index each is cheaper
    assert fc2['bias_code_bits'] > 0 and fc2['bias_entropy_bits'] <= fc2['bias_code_bits']


@pytest.mark.parametrize('line, by_column', [('column', True), ('row', False)])
def test_positions_are_scanned_by_column_when_that_is_cheaper(line, by_column):
    model = make_model(kept=0.0)
    with torch.no_grad():
        model.fc2.weight.fill_(1.0)  # every fc1 unit is read
        if line == 'column':
            model.fc1.weight[:, 5] = 0.5  # every unit reads input 5
        else:
            model.fc1.weight[3, :] = 0.5  # unit 3 reads every input
    data, report = encode_model(model)
    assert report['layers'][1]['by_column'] is by_column
    assert report['layers'][2]['by_column'] is False  # dense: no cheaper way round
    assert params_equal(decode_model(data), strip_dead_units(model))


@pytest.mark.parametrize('dtype', ['<f4', '<f2'])
@pytest.mark.parametrize('ascending', [False, True])
@pytest.mark.parametrize('values', [[0.5], [-0.0], [0.0, 0.0], [-3.0, 0.0, 0.25],
                                    [2.0 ** -149, 2.0 ** -140], [2.0 ** 20, 2.0 ** -20],
                                    FLOAT_EDGES, np.arange(-40, 90, 3) / 64])
def test_numbers_round_trip_bit_exact(dtype, ascending, values):
    dtype = np.dtype(dtype)
    stored = np.array(values, dtype=np.float32)
    stored = stored[np.abs(stored) <= np.finfo(dtype).max].astype(dtype).astype(np.float32)
    if ascending:
        stored = np.unique(stored)  # a codebook: strictly ascending (-0.0 may stay)
    writer = container.BitWriter()
    writer.numbers(stored, dtype, ascending)
    reader = container.BitReader(writer.bytes())
    decoded = reader.numbers(len(stored), dtype, ascending)
    reader.finish()
    assert reader.pos == writer.size
    assert decoded.view(np.uint32).tolist() == stored.view(np.uint32).tolist()


def test_numbers_on_a_grid_take_fixed_point_and_others_floats():
    rng = np.random.default_rng(0)
    on_grid = rng.integers(-120, 120, 200) / 128
    floats = container.BitWriter()
    floats.floats(on_grid, np.dtype('<f4'))
    fixed = container.BitWriter()
    fixed.numbers(on_grid, np.dtype('<f4'))
    assert fixed.size < floats.size / 2
    normal = rng.normal(0, 0.05, 200).astype(np.float32)
    floats, either = container.BitWriter(), container.BitWriter()
    floats.floats(normal, np.dtype('<f4'))
    either.numbers(normal, np.dtype('<f4'))
    assert either.size == 1 + floats.size  # the mode bit, then floats


def test_a_fixed_point_step_past_float32_is_refused():
    writer = container.BitWriter()
    writer.raw([1, container.MAX_EXPONENT + 1 - container.MIN_EXPONENT],
               [1, container.EXPONENT_FIELD])
    with pytest.raises(container.Corrupt, match='fixed-point step of 2\\*\\*128'):
        container.BitReader(writer.bytes()).numbers(3, np.dtype('<f4'))


@pytest.mark.parametrize('symbols, bits', [([], 0.0), ([7, 7, 7], 0.0), ([0, 1, 0, 1], 4.0),
                                           ([0, 0, 0, 1], 3.245112497836532)])
def test_entropy_bits(symbols, bits):
    assert container.entropy_bits(np.array(symbols)) == pytest.approx(bits)
