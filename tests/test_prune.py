import numpy as np
import pytest
import torch

import pruning
from net.checkpoint import load_model, save_model
from net.models import AlexNet
from net.prune import DEFAULT_PRUNE_RATE, validate_rates
from recipe import settings, training


def test_alexnet_has_the_homework_shapes():
    model = AlexNet()
    assert sum(p.numel() for p in model.parameters()) == 20_344_650
    assert [n for n, _ in model.prunable_layers()] == list(DEFAULT_PRUNE_RATE)
    out = model(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(2))


def test_prune_zeroes_exactly_the_weights_below_threshold(tiny):
    layer = tiny.fc2
    before = layer.weight.data.clone()
    tiny._prune(layer, 0.1)
    small = before.abs() < 0.1
    assert (layer.weight.data[small] == 0).all()
    assert torch.equal(layer.weight.data[~small], before[~small])
    assert torch.equal(layer.weight_mask, (~small).float())
    # Pruned weights are +0.0, so the sparse encodings reproduce them bit for bit.
    assert not torch.signbit(layer.weight.data[small]).any()


@pytest.mark.parametrize('kept', [0, 30, 84, 100])
def test_prune_by_percentile_keeps_the_requested_share(tiny, kept):
    # 1..N distinct magnitudes with random signs: the kept count is exact.
    for _, layer in tiny.prunable_layers():
        n = layer.weight.numel()
        values = torch.arange(1, n + 1, dtype=torch.float32)[torch.randperm(n)]
        layer.weight.data = (values * torch.sign(torch.randn(n))).view_as(layer.weight)
    tiny.prune_by_percentile(kept)
    for _, layer in tiny.prunable_layers():
        n = layer.weight.numel()
        threshold = np.percentile(np.arange(1, n + 1), 100 - kept)
        expected = int((np.arange(1, n + 1) >= threshold).sum())
        assert int(torch.count_nonzero(layer.weight)) == expected
        assert abs(expected - n * kept / 100) <= 1
        assert int(layer.weight_mask.sum()) == expected


def test_prune_by_percentile_per_layer_on_alexnet():
    torch.manual_seed(0)
    model = AlexNet()
    model.prune_by_percentile(DEFAULT_PRUNE_RATE)
    for name, layer in model.prunable_layers():
        share = 100 * int(torch.count_nonzero(layer.weight)) / layer.weight.numel()
        assert share == pytest.approx(DEFAULT_PRUNE_RATE[name], abs=0.01), name


def test_prune_by_std_covers_conv_and_fc(tiny):
    before = {n: m.weight.data.clone() for n, m in tiny.prunable_layers()}
    tiny.prune_by_std(0.5)
    for name, layer in tiny.prunable_layers():
        threshold = before[name].std().item() * 0.5
        expected = before[name].abs() >= threshold
        assert torch.equal(layer.weight.data != 0, expected), name


def test_masks_survive_save_load_and_device_moves(tiny, tmp_path):
    tiny.prune_by_percentile(50)
    path = tmp_path / 'm.ptmodel'
    save_model(tiny, path)
    loaded = torch.load(path, weights_only=False)
    for (_, a), (_, b) in zip(tiny.prunable_layers(), loaded.prunable_layers(), strict=True):
        assert torch.equal(a.weight_mask, b.weight_mask)
    moved = loaded.to('cpu', dtype=torch.float64)
    assert moved.fc1.weight_mask.dtype == torch.float64


def test_alexnet_checkpoint_loads_safely(tmp_path):
    model = AlexNet()
    model.prune_by_percentile(DEFAULT_PRUNE_RATE)
    path = tmp_path / 'a.ptmodel'
    save_model(model, path)
    loaded = load_model(path)
    assert torch.equal(loaded.fc2.weight_mask, model.fc2.weight_mask)


@pytest.mark.parametrize('rates, message', [
    ({'fc9': 10}, 'unknown layer'),
    ({'fc1': 101}, 'between 0 and 100'),
    ({'fc1': -1}, 'between 0 and 100'),
    ({'fc1': 'ten'}, 'between 0 and 100'),
])
def test_bad_rates_are_refused(rates, message):
    with pytest.raises(ValueError, match=message):
        validate_rates(AlexNet(), rates)


def retrain(model, data, optimizer, tmp_path):
    args = pruning.parse_args(['--optimizer', optimizer, '--batch-size', '16', '--re-lr', '0.05',
                               '--weight-decay', '0.01', '--log', str(tmp_path / 'log.txt')])
    generator = torch.Generator().manual_seed(0)
    training.train(model, data, settings.retraining(args), 2, 'test', generator, [])


@pytest.mark.parametrize('flags, expected', [
    ([], ('adam', 1e-3, 1e-4, 'adam', 3e-4, 1e-4)),
    (['--optimizer', 'sgd', '--re-optimizer', 'adam'], ('sgd', 0.005, 5e-4, 'adam', 3e-4, 1e-4)),
    (['--optimizer', 'sgd', '--weight-decay', '0.01'], ('sgd', 0.005, 0.01, 'sgd', 0.002, 0.01)),
    (['--optimizer', 'sgd', '--re-optimizer', 'adam', '--weight-decay', '0.01'],
     ('sgd', 0.005, 0.01, 'adam', 3e-4, 1e-4)),
    (['--schedule', 'constant', '--optimizer', 'sgd', '--re-optimizer', 'adam'],
     ('sgd', 0.005, 5e-4, 'adam', 1e-3, 1e-4)),
    (['--re-optimizer', 'sgd', '--re-weight-decay', '0'], ('adam', 1e-3, 1e-4, 'sgd', 0.002, 0.0)),
])
def test_each_phase_has_its_optimizer_defaults(flags, expected):
    args = pruning.parse_args(flags)
    assert (args.optimizer, args.lr, args.weight_decay,
            args.re_optimizer, args.re_lr, args.re_weight_decay) == expected


def test_initial_training_and_retraining_use_their_own_optimizers(tiny, synthetic_data, tmp_path,
                                                                   monkeypatch):
    made = []
    real = training.make_optimizer
    monkeypatch.setattr(training, 'make_optimizer',
                        lambda params, name, lr, decay, *rest: made.append((name, lr, decay))
                        or real(params, name, lr, decay, *rest))
    args = pruning.parse_args(['--optimizer', 'sgd', '--re-optimizer', 'adam',
                               '--batch-size', '16', '--log', str(tmp_path / 'log.txt')])
    generator = torch.Generator().manual_seed(0)
    training.train(tiny, synthetic_data, settings.initial_training(args), 1, 'initial', generator, [])
    training.train(tiny, synthetic_data, settings.retraining(args), 1, 'retrain1', generator, [])
    assert made == [('sgd', 0.005, 5e-4), ('adam', 3e-4, 1e-4)]


@pytest.mark.parametrize('re_augment, paddings', [('crop-flip', [4, 4]), ('flip', [0, 0]), ('none', [])])
def test_retraining_augments_as_re_augment_says(tiny, synthetic_data, tmp_path, augment_paddings,
                                                re_augment, paddings):
    args = pruning.parse_args(['--re-augment', re_augment, '--batch-size', '32',
                               '--log', str(tmp_path / 'log.txt')])
    generator = torch.Generator().manual_seed(0)
    training.train(tiny, synthetic_data, settings.initial_training(args), 1, 'initial', generator, [])
    training.train(tiny, synthetic_data, settings.retraining(args), 1, 'retrain1', generator, [])
    assert augment_paddings == [4, 4] + paddings  # two batches each; the initial training crops and flips


@pytest.mark.parametrize('optimizer', ['adam', 'sgd'])
def test_pruned_weights_stay_zero_through_retraining(tiny, synthetic_data, optimizer, tmp_path):
    tiny.prune_by_percentile(30)
    masks = {n: m.weight_mask.clone() for n, m in tiny.prunable_layers()}
    kept_before = {n: m.weight.data.clone() for n, m in tiny.prunable_layers()}
    retrain(tiny, synthetic_data, optimizer, tmp_path)
    for name, layer in tiny.prunable_layers():
        pruned = masks[name] == 0
        assert (layer.weight.data[pruned] == 0).all(), name
        # Kept weights did train: the test would notice a frozen model.
        assert not torch.equal(layer.weight.data[~pruned], kept_before[name][~pruned]), name


def test_without_masking_weight_decay_and_momentum_revive_weights(tiny, synthetic_data, tmp_path):
    """The failure the masking prevents: an unmasked optimizer moves pruned weights."""
    tiny.prune_by_percentile(30)
    pruned = tiny.fc1.weight_mask == 0
    tiny.mask_gradients = tiny.apply_masks = lambda: None
    retrain(tiny, synthetic_data, 'sgd', tmp_path)
    assert (tiny.fc1.weight.data[pruned] != 0).any()
