"""Checkpoints: a .ptmodel whose bytes, dtypes, masks, values or settings are not what this
project writes is refused in one line (or, for other float dtypes, converted and noted)."""
import os

import numpy as np
import pytest
import torch

from net.checkpoint import CheckpointError, load_model, save_model
from net.models import build_model
from tests.conftest import dead_pid


def lenet5(prune=True):
    torch.manual_seed(0)
    model = build_model('lenet5', 'mnist')
    if prune:
        model.prune_by_percentile()
    return model


def saved(tmp_path, model, name='m.ptmodel'):
    save_model(model, tmp_path / name)
    return tmp_path / name


def same_parameters(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(),
                                                  strict=True))


def test_every_seeded_byte_flip_is_refused_or_loads_the_same_model(tmp_path):
    model = lenet5()
    data = saved(tmp_path, model).read_bytes()
    rng = np.random.default_rng(0)
    refused = 0
    for offset in rng.integers(0, len(data), 40):
        damaged = bytearray(data)
        damaged[offset] ^= 1 << int(rng.integers(0, 8))
        (tmp_path / 'flip.ptmodel').write_bytes(bytes(damaged))
        try:
            loaded = load_model(tmp_path / 'flip.ptmodel')
        except CheckpointError:
            refused += 1
            continue
        assert same_parameters(loaded, model), offset
    assert refused >= 35  # nearly every byte is a tensor byte, under a zip CRC


def test_a_flipped_weight_byte_names_the_failed_checksum(tmp_path):
    path = saved(tmp_path, lenet5())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the largest tensor, fc1's weights
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match='is corrupt: .* fails its checksum; re-run `python '
                                              'pruning.py`'):
        load_model(path)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_are_converted_with_a_note(tmp_path, capsys, dtype):
    model = lenet5().to(dtype)
    loaded = load_model(saved(tmp_path, model))
    assert capsys.readouterr().out == (f'note: {tmp_path / "m.ptmodel"} holds {dtype} tensors; '
                                       'converted to float32\n')
    assert all(p.dtype == torch.float32 for p in [*loaded.parameters(), *loaded.buffers()])
    assert same_parameters(loaded, model.float())


def damage(model, change):
    with torch.no_grad():
        change(model)
    return model


@pytest.mark.parametrize('change, message', [
    (lambda m: m.fc1.weight.view(-1).__setitem__(7, float('nan')), 'fc1.weight holds NaN or infinite'),
    (lambda m: m.conv2.bias.__setitem__(0, float('inf')), 'conv2.bias holds NaN or infinite'),
    (lambda m: m.fc2.register_buffer('weight_mask', torch.ones(3, 3)),
     r'fc2.weight_mask has shape \(3, 3\), its weight \(10, 500\)'),
    (lambda m: m.fc2.weight_mask.view(-1).__setitem__(0, 0.5), 'fc2.weight_mask holds values other'),
    (lambda m: m.fc1.weight_mask.zero_(), 'fc1 has non-zero weights where its mask prunes them'),
    (lambda m: setattr(m.conv1, 'stride', (2, 2)), r'conv1.stride is \(2, 2\), not \(1, 1\)'),
    (lambda m: setattr(m, 'input_size', 32), 'lenet5.input_size is 32, not 28'),
    (lambda m: setattr(m, 'input_size', 28.0), 'lenet5.input_size is 28.0, not 28'),
    (lambda m: setattr(m.fc2, 'hook', 'x'), 'unexpected attribute fc2.hook'),
    (lambda m: setattr(m, 'fc9', torch.nn.Linear(2, 2)), 'is not lenet5 for mnist: fc9.weight has shape'),
    (lambda m: m.fc1.register_buffer('weight_mask', m.fc1.weight_mask.long()),
     'holds torch.int64 tensors; a model of this project holds float32'),
    (lambda m: (m.fc2.weight.zero_(), m.fc2.weight_mask.zero_()), 'fc2 keeps no weights'),
])
def test_damaged_or_edited_contents_are_refused(tmp_path, change, message):
    with pytest.raises(CheckpointError, match=message):
        load_model(saved(tmp_path, damage(lenet5(), change)))


def test_an_unpruned_model_has_no_masks_to_check(tmp_path):
    assert same_parameters(load_model(saved(tmp_path, lenet5(prune=False))), lenet5(prune=False))


def test_the_same_model_saves_to_the_same_bytes(tmp_path):
    # Each save goes through a new temporary name; the bytes must not depend on it.
    first, second = saved(tmp_path, lenet5(), 'a.ptmodel'), saved(tmp_path, lenet5(), 'b.ptmodel')
    assert first.read_bytes() == second.read_bytes()


def test_temporaries_of_killed_runs_are_removed_by_the_next_write(tmp_path):
    from net.huffmancoding import huffman_encode_model
    stale_file = tmp_path / f'.tmp-{dead_pid()}-abc-m.ptmodel'
    stale_folder = tmp_path / f'.tmp-{dead_pid()}-encodings-xyz'
    live = tmp_path / f'.tmp-{os.getpid()}-def-m.ptmodel'  # a run still writing: kept
    for path in (stale_file, live):
        path.write_bytes(b'half a checkpoint')
    stale_folder.mkdir()
    (stale_folder / 'conv1.bias.bin').write_bytes(b'x')
    saved(tmp_path, lenet5())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(['m.ptmodel', live.name])
    stale_folder.mkdir()  # killed while encoding, this time
    huffman_encode_model(lenet5(), tmp_path / 'enc', None)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(['m.ptmodel', 'enc', live.name])


def test_written_files_get_the_users_permissions(tmp_path):
    import util
    from net.huffmancoding import huffman_encode_model
    old = os.umask(0o027)
    try:
        saved(tmp_path, lenet5())
        util.write_json(str(tmp_path / 'r.json'), {'a': 1})
        huffman_encode_model(lenet5(), tmp_path / 'enc', None)
    finally:
        os.umask(old)
    assert (tmp_path / 'm.ptmodel').stat().st_mode & 0o777 == 0o640
    assert (tmp_path / 'r.json').stat().st_mode & 0o777 == 0o640
    assert (tmp_path / 'enc').stat().st_mode & 0o777 == 0o750


def test_a_dcz_file_or_a_legacy_checkpoint_says_what_it_is(tmp_path):
    import pickle
    (tmp_path / 'model.dcz').write_bytes(b'DCZ\x04...')
    with pytest.raises(CheckpointError, match='is a .dcz file, not a checkpoint: test it with '
                                              '`python huffman_encode.py --unpack'):
        load_model(tmp_path / 'model.dcz')
    (tmp_path / 'old.ptmodel').write_bytes(pickle.dumps({'a': 1}, protocol=2))
    with pytest.raises(CheckpointError, match="in torch's legacy format"):
        load_model(tmp_path / 'old.ptmodel')
