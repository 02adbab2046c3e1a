"""Faster training: the compact copy of a pruned network (net/compact.py), bfloat16
autocast, fused optimizers, and the parsing of --round-settings and --round-epochs."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pruning
from net.compact import compact_copy, parameter_count, write_back
from net.prune import PruningModule, set_mask
from recipe import settings, training
from recipe.training import Phase, fit, make_optimizer


class ChainNet(PruningModule):
    """conv1 -> conv2 -> flatten (4x4 positions per channel) -> fc1 -> fc2."""
    chain = True
    arch = 'chain'
    input_size = 32
    default_rates = {}

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 4 * 4, 12)
        self.fc2 = nn.Linear(12, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 4)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x.flatten(1)))), dim=1)


def cut(layer, inputs=None, outputs=None):
    """Mask out whole input units (conv channels or fc columns of a channel's 16 features)
    or output units of a layer."""
    mask = torch.ones_like(layer.weight)
    per_unit = 16 if isinstance(layer, nn.Linear) and layer.in_features == 128 else 1
    for unit in inputs or []:
        mask[:, unit * per_unit:(unit + 1) * per_unit] = 0
    for unit in outputs or []:
        mask[unit] = 0
    layer.weight.data *= mask
    set_mask(layer, mask)


@pytest.fixture
def pruned_chain():
    """A ChainNet in which conv1's filter 1, conv2's filters 2 and 7 and fc1's units 0, 3
    and 5 are read by nothing."""
    torch.manual_seed(0)
    model = ChainNet()
    model.prune_by_percentile(60)
    cut(model.conv2, inputs=[1])
    cut(model.fc1, inputs=[2, 7])
    cut(model.fc2, inputs=[0, 3, 5])
    model.prune_dead_units()
    return model


def shapes(model):
    return {name: tuple(layer.weight.shape) for name, layer in model.prunable_layers()}


def test_compact_copy_holds_exactly_the_read_units(pruned_chain):
    small = compact_copy(pruned_chain).model
    assert shapes(small) == {'conv1': (5, 3, 3, 3), 'conv2': (6, 5, 3, 3),
                             'fc1': (9, 6 * 16), 'fc2': (10, 9)}
    assert parameter_count(small) == (5 * 27 + 5) + (6 * 45 + 6) + (9 * 96 + 9) + (10 * 9 + 10)
    assert small.fc1.in_features == 96 and small.conv2.out_channels == 6
    # The masks come along, cut the same way.
    assert torch.equal(small.fc2.weight_mask, pruned_chain.fc2.weight_mask[:, [1, 2, 4, 6, 7, 8, 9, 10, 11]])


def test_compact_copy_computes_the_same_function(pruned_chain):
    small = compact_copy(pruned_chain).model
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(small(x), pruned_chain(x), atol=1e-6)


def test_write_back_fills_the_kept_units_and_leaves_the_others(pruned_chain):
    before = {name: p.clone() for name, p in pruned_chain.named_parameters()}
    compacted = compact_copy(pruned_chain)
    with torch.no_grad():
        for _, layer in compacted.model.prunable_layers():
            layer.weight.add_(layer.weight_mask)  # pruned weights stay zero
            layer.bias.add_(1)
    write_back(pruned_chain, compacted)
    after = dict(pruned_chain.named_parameters())
    for name, p in compact_copy(pruned_chain).model.named_parameters():
        assert torch.equal(p, dict(compacted.model.named_parameters())[name]), name
    # conv1's filter 1 and fc1's unit 0 were left out: untouched.
    assert torch.equal(after['conv1.weight'][1], before['conv1.weight'][1])
    assert torch.equal(after['fc1.bias'][[0, 3, 5]], before['fc1.bias'][[0, 3, 5]])
    assert torch.equal(after['conv1.weight'][0],
                       before['conv1.weight'][0] + pruned_chain.conv1.weight_mask[0])


def test_a_model_with_parameters_outside_its_layers_is_refused():
    model = ChainNet()
    model.norm = nn.BatchNorm2d(6)
    with pytest.raises(ValueError, match='no normalisation layers'):
        compact_copy(model)


def retrain(model, data, tmp_path, *flags):
    args = pruning.parse_args(['--batch-size', '16', '--re-lr', '0.01', '--log', str(tmp_path / 'log.txt'),
                               *flags])
    training.train(model, data, settings.retraining(args), 2, 'test', torch.Generator().manual_seed(0), [])


def test_compact_retraining_keeps_the_zeros_and_trains_the_rest(pruned_chain, synthetic_data, tmp_path):
    masks = {name: layer.weight_mask.clone() for name, layer in pruned_chain.prunable_layers()}
    before = {name: p.clone() for name, p in pruned_chain.named_parameters()}
    retrain(pruned_chain, synthetic_data, tmp_path, '--compact-training')
    for name, layer in pruned_chain.prunable_layers():
        assert (layer.weight[masks[name] == 0] == 0).all(), name
        kept = masks[name] != 0
        assert not torch.equal(layer.weight[kept], before[f'{name}.weight'][kept]), name
    assert torch.equal(pruned_chain.fc1.bias[[0, 3, 5]], before['fc1.bias'][[0, 3, 5]])


def test_compact_retraining_matches_full_retraining(pruned_chain, synthetic_data, tmp_path):
    full = copy.deepcopy(pruned_chain)
    retrain(full, synthetic_data, tmp_path)
    retrain(pruned_chain, synthetic_data, tmp_path, '--compact-training')
    x = synthetic_data[2].float() / 255
    with torch.no_grad():
        assert torch.allclose(full(x), pruned_chain(x), atol=1e-4)


def test_compact_training_implies_dropping_dead_units():
    # The copy leaves unread units out; were their incoming weights kept, they would stay
    # frozen instead of being pruned at every cut.
    assert pruning.parse_args(['--compact-training']).prune_dead_units
    assert not pruning.parse_args([]).prune_dead_units


def test_an_unpruned_model_trains_without_a_copy(tiny, synthetic_data, tmp_path, monkeypatch):
    monkeypatch.setattr(training, 'compact_copy', lambda model: pytest.fail('copied'))
    retrain(tiny, synthetic_data, tmp_path, '--compact-training')


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_compact_copy_on_a_gpu(pruned_chain):
    model = pruned_chain.cuda()
    compacted = compact_copy(model)
    x = torch.randn(5, 3, 32, 32, device='cuda')
    with torch.no_grad():
        assert torch.allclose(compacted.model(x), model(x), atol=1e-5)
    write_back(model, compacted)


def test_bf16_runs_the_forward_pass_in_bfloat16(tiny, synthetic_data):
    dtypes = []
    tiny.fc1.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    for bf16 in ([], ['--bf16']):
        training = settings.initial_training(pruning.parse_args(
            ['--schedule', 'constant', '--batch-size', '64', *bf16]))
        fit(tiny, synthetic_data, training, Phase('t', 1, list(tiny.parameters()), lambda: None,
                                                  lambda: None), torch.Generator(), [])
    # One training batch and one test batch per epoch: the test pass stays float32.
    assert dtypes == [torch.float32, torch.float32, torch.bfloat16, torch.float32]
    assert all(p.dtype == torch.float32 for p in tiny.parameters())


@pytest.mark.parametrize('name', ['adam', 'sgd'])
def test_optimizers_on_the_cpu_are_fused(tiny, name):
    optimizer, _ = make_optimizer(tiny.parameters(), name, 1e-3, 0, 'constant', 4)
    assert optimizer.defaults['fused'] is True


# ---------------------------------------------------------------- round settings
def test_round_settings_come_from_a_recipe(tmp_path):
    path = tmp_path / 'recipe.json'
    path.write_text(json.dumps({'pruning': {'round_settings': {'15': {'re_augment': 'flip',
                                                                      're_lr': 0.001}}}}))
    assert pruning.parse_args(['--config', str(path)]).round_settings == {15: {'re_augment': 'flip',
                                                                          're_lr': 0.001}}


@pytest.mark.parametrize('text, message', [
    ('{"3": {"re_lr": 0.01', 'not valid JSON'),
    ('[3]', "each round's settings is a JSON object, e.g."),
    ('{"0": {"re_lr": 0.01}}', 'each key is a round number from 1'),
    ('{"x": {"re_lr": 0.01}}', 'each key is a round number from 1'),
    ('{"\u00b2": {"re_lr": 0.01}}', 'each key is a round number from 1'),  # a digit int() refuses
    ('{"3": 0.01}', 'each value a JSON object of settings'),
    ('{"3": {"epochs": 2}}', "['epochs'] cannot change by round"),
    ('{"3": {"re_augment": "cutout"}}', '(round 3): "re_augment": "cutout" is not a valid value'),
])
def test_bad_round_settings_are_one_clear_error(text, message, capsys):
    with pytest.raises(SystemExit):
        pruning.parse_args(['--round-settings', text])
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: --round-settings') and message in err and '\n' not in err


@pytest.mark.parametrize('text, message', [
    ('[]', 'is neither a number of epochs nor a JSON list of them'), ('x', 'not valid JSON'),
    *((text, 'is neither a number of epochs nor a JSON list of them')
      for text in ['[-1]', '[1.5]', 'true', '[3, null]', '{"a": 1}'])])
def test_bad_round_epochs_are_refused(text, message, capsys):
    with pytest.raises(SystemExit):
        pruning.parse_args(['--round-epochs', text])
    err = capsys.readouterr().err
    assert err.startswith('error: --round-epochs: ') and message in err


def test_round_epochs_come_from_a_recipe_as_a_number_or_a_list(tmp_path):
    for value, expected in ((6, [6]), (2.0, [2]), ([3, 3, 6], [3, 3, 6])):
        path = tmp_path / 'recipe.json'
        path.write_text(json.dumps({'pruning': {'round_epochs': value}}))
        assert pruning.parse_args(['--config', str(path)]).round_epochs == expected


def test_a_recipes_null_round_epochs_is_refused(tmp_path, capsys):
    path = tmp_path / 'recipe.json'
    path.write_text(json.dumps({'pruning': {'round_epochs': None}}))
    with pytest.raises(SystemExit):
        pruning.parse_args(['--config', str(path)])
    assert 'recipe.json: --round-epochs: null is neither a number of epochs nor a JSON list' \
        in capsys.readouterr().err
