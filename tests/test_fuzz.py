"""Seeded, bounded fuzzing of every file the project reads: the homework encodings, the .dcz
file and checkpoints. Each damaged case must be refused with the project's own error (one
line), or load exactly the original model; never another model, never a traceback.

    pytest tests/test_fuzz.py -s   # prints the tally per kind
"""
import functools
import os
import shutil

import numpy as np
import pytest
import torch

from net.checkpoint import CheckpointError, load_model, save_model
from net.container import ContainerError, decode_model, encode_model, strip_dead_units
from net.huffmancoding import HuffmanFormatError, huffman_decode_model, huffman_encode_model
from net.models import build_model
from net.quantization import apply_bias_sharing, apply_grid, apply_weight_sharing
from tests.conftest import raw_sections

CASES = 150  # per kind; seeded, so every run tries the same ones
PROJECT_ERRORS = (CheckpointError, ContainerError, HuffmanFormatError, ValueError)


def shared_lenet5(seed):
    torch.manual_seed(seed)
    model = build_model('lenet5', 'mnist')
    model.prune_by_percentile()
    apply_weight_sharing(model, 5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('bias'):  # distinct, as trained biases are
                param.normal_(0, 0.1)
    return model


def cheap_lenet5(seed):
    """shared_lenet5 stored the cheaper way: biases shared, codebooks on a 6-bit grid (the
    .dcz file's shared-bias blocks and fixed-point codebooks)."""
    model = shared_lenet5(seed)
    apply_bias_sharing(model, 3)
    apply_grid(model, 6, biases=True)
    return model


def same(a, b):
    return all(torch.equal(p.view(torch.int32), q.view(torch.int32))
               for p, q in zip(a.parameters(), b.parameters(), strict=True))


def outcome(load, original):
    """'refused' (the project's own error, one line) or 'identical'; a model that differs
    from the original fails the test, and so does any other exception."""
    try:
        loaded = load()
    except PROJECT_ERRORS as err:
        assert '\n' not in str(err), err
        return 'refused'
    assert same(loaded, original), 'a damaged file loaded another model'
    return 'identical'


def tally(kind, outcomes):
    counts = {k: outcomes.count(k) for k in ('refused', 'identical')}
    print(f'\n{kind}: {len(outcomes)} cases, {counts["refused"]} refused, '
          f'{counts["identical"]} loaded bit-identically')
    # Most damage must be caught; the rest (bytes appended after a zip's end, a splice of
    # equal bytes) leaves the model as it was.
    assert counts['refused'] >= len(outcomes) / 2


def damaged_bytes(data, rng, other):
    """data with one seeded kind of damage: a bit flip, a truncation, appended bytes, or a
    run of bytes from another valid file of the same kind."""
    kind = rng.integers(4)
    data = bytearray(data)
    if kind == 0:
        data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        del data[rng.integers(len(data)):]
    elif kind == 2:
        data += rng.bytes(int(rng.integers(1, 16)))
    else:
        start, length = int(rng.integers(len(data))), int(rng.integers(1, 64))
        data[start:start + length] = other[start:start + length]
    return bytes(data)


# ---------------------------------------------------------------- homework encodings
def decoded_from(directory):
    decoded = build_model('lenet5', 'mnist')
    huffman_decode_model(decoded, directory)
    return decoded


def test_damaged_encodings(tmp_path):
    model, other = shared_lenet5(0), shared_lenet5(1)
    huffman_encode_model(model, tmp_path / 'enc', None)
    huffman_encode_model(other, tmp_path / 'other', None)
    names = sorted(os.listdir(tmp_path / 'enc'))
    rng = np.random.default_rng(0)
    outcomes = []
    for _ in range(CASES):
        case = tmp_path / 'case'
        shutil.rmtree(case, ignore_errors=True)
        shutil.copytree(tmp_path / 'enc', case)
        a, b = (names[i] for i in rng.choice(len(names), 2, replace=False))
        action = rng.integers(5)
        if action == 0:  # two files swapped
            data = (case / a).read_bytes()
            (case / a).write_bytes((case / b).read_bytes())
            (case / b).write_bytes(data)
        elif action == 1:  # a file dropped, or one put beside them
            (case / a).unlink() if rng.integers(2) else (case / 'x.bin').write_bytes(b'x')
        elif action == 2:  # the same file from the other model's encodings
            shutil.copy(tmp_path / 'other' / a, case / a)
        else:
            other_bytes = (tmp_path / 'other' / a).read_bytes()
            (case / a).write_bytes(damaged_bytes((case / a).read_bytes(), rng, other_bytes))

        outcomes.append(outcome(functools.partial(decoded_from, case), model))
    tally('encodings/', outcomes)


# ---------------------------------------------------------------- the .dcz file
@pytest.mark.parametrize('make', [shared_lenet5, cheap_lenet5])
def test_damaged_dcz_files(make):
    model, other = make(0), make(1)
    data, other_data = encode_model(model)[0], encode_model(other)[0]
    sections, other_sections = raw_sections(data), raw_sections(other_data)
    head = data[:4]
    rng = np.random.default_rng(1)
    original = strip_dead_units(model)
    outcomes = []
    for _ in range(CASES):
        picked = list(sections)
        i, j = rng.choice(len(sections), 2, replace=False)
        action = rng.integers(6)
        if action == 0:
            picked[i] = other_sections[i]  # a section from another valid file
        elif action == 1:
            picked[i], picked[j] = picked[j], picked[i]
        elif action == 2:
            picked.insert(i, picked[j])  # one section twice
        elif action == 3:
            del picked[i]
        damaged = head + b''.join(picked)
        if action >= 4:
            damaged = damaged_bytes(damaged, rng, other_data)
        outcomes.append(outcome(lambda damaged=damaged: decode_model(damaged), original))
    tally('.dcz', outcomes)


# ---------------------------------------------------------------- checkpoints
class Exploit:
    def __reduce__(self):
        return (os.system, ('echo pwned > pwned',))


def crafted_checkpoints(model):
    """(name, object to torch.save) of malformed models and foreign objects."""
    def edited(change):
        copy = shared_lenet5(0)
        with torch.no_grad():
            change(copy)
        return copy
    return [
        ('hostile pickle', Exploit()),
        ('a state dict', model.state_dict()),
        ('another architecture', build_model('lenet300', 'mnist')),
        ('NaN weight', edited(lambda m: m.fc1.weight.view(-1).__setitem__(0, float('nan')))),
        ('mask of 2s', edited(lambda m: m.fc1.weight_mask.mul_(2))),
        ('mask of another shape', edited(lambda m: m.fc2.register_buffer('weight_mask', torch.ones(2)))),
        ('a weight under a zero mask', edited(lambda m: m.conv1.weight_mask.zero_())),
        ('a tampered stride', edited(lambda m: setattr(m.conv2, 'stride', (3, 3)))),
        ('a tampered input size', edited(lambda m: setattr(m, 'input_size', 64))),
        ('an unknown dataset', edited(lambda m: setattr(m, 'dataset', 'imagenet'))),
    ]


def test_damaged_and_crafted_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = shared_lenet5(0)
    save_model(model, tmp_path / 'm.ptmodel')
    save_model(shared_lenet5(1), tmp_path / 'other.ptmodel')
    data, other = (tmp_path / 'm.ptmodel').read_bytes(), (tmp_path / 'other.ptmodel').read_bytes()
    rng = np.random.default_rng(2)
    outcomes = []
    load = functools.partial(load_model, tmp_path / 'case.ptmodel', arch='lenet5', dataset='mnist')
    for _ in range(CASES):
        (tmp_path / 'case.ptmodel').write_bytes(damaged_bytes(data, rng, other))
        outcomes.append(outcome(load, model))
    for name, obj in crafted_checkpoints(model):
        torch.save(obj, tmp_path / 'case.ptmodel')
        assert outcome(load, model) == 'refused', name
        outcomes.append('refused')
    assert not (tmp_path / 'pwned').exists()
    for dtype in (torch.float64, torch.float16, torch.bfloat16):  # converted, noted
        save_model(shared_lenet5(0).to(dtype), tmp_path / 'case.ptmodel')
        outcomes.append(outcome(load, shared_lenet5(0).to(dtype).float()))
    tally('checkpoints', outcomes)
