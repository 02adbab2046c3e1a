"""The recipe tools: iterative cuts, dead-unit removal, recipe files, centroid
initialisations, trained quantization and the sensitivity analyses."""
import builtins
import csv
import json
import os
import re

import numpy as np
import pytest
import torch

import analyze
import huffman_encode
import pruning
import weight_share
from net.analysis import bits_sensitivity, extra_cut, prune_sensitivity
from net.checkpoint import save_model
from net.models import AlexNet, build_model
from net.quantization import (
    SharedWeights,
    apply_bias_sharing,
    apply_grid,
    apply_weight_sharing,
    grid_step,
    initial_centroids,
    share_weights,
    snap_to_grid,
    validate_bits,
)
from recipe import datasets, settings
from recipe.rounds import round_rates
from recipe.training import Phase, fit, make_optimizer
from tests.conftest import ROOT, fake_mnist_dir


# ---------------------------------------------------------------- iterative pruning
def refusal(capsys, model, *argv):
    """The one-line error that pruning.py's flags argv get: when parsed, or when checked
    against model's layers."""
    try:
        args = pruning.parse_args(list(argv))
    except SystemExit:
        return capsys.readouterr().err.strip()
    with pytest.raises(ValueError) as err:
        pruning.schedules_for(args, model)
    return str(err.value)


@pytest.mark.parametrize('text, message', [
    ('{"fc9": 0.5}', '--round-spans must map layer names'),
    ('{"fc2": 0}', 'error: --round-spans: fc2 is 0; it must be above 0 and at most 1'),
    ('[1]', 'error: --round-spans must be a JSON object of layer -> share of the rounds'),
    ('{"fc2": 0.5', 'error: --round-spans: not valid JSON')])
def test_bad_round_spans_are_refused(text, message, capsys):
    assert refusal(capsys, AlexNet(), '--round-spans', text).startswith(message)


def test_iterated_percentile_cuts_end_at_the_target_share(tiny):
    for rates in round_rates({'conv1': 50, 'fc1': 10, 'fc2': 30}, 3):
        tiny.prune_by_percentile(rates)
    for name, layer in tiny.prunable_layers():
        kept = 100 * int(layer.weight.count_nonzero()) / layer.weight.numel()
        assert kept == pytest.approx({'conv1': 50, 'fc1': 10, 'fc2': 30}[name], abs=1), name


# ---------------------------------------------------------------- dead units
def test_dead_units_lose_their_incoming_weights_and_the_function_is_unchanged(tiny):
    # fc1 unit 3 feeds nothing once its fc2 column is pruned; conv1 channel 2 feeds
    # nothing once every fc1 input from it (features 128..191) is pruned.
    tiny.prune_by_percentile(100)  # masks everywhere, nothing pruned yet
    with torch.no_grad():
        tiny.fc2.weight_mask[:, 3] = 0
        tiny.fc1.weight_mask[:, 128:192] = 0
        tiny.apply_masks()
    x = torch.randn(5, 3, 32, 32)
    before = tiny(x)
    removed = tiny.prune_dead_units()
    assert removed == (256 - 64) + 3 * 3 * 3  # fc1 row 3 had lost 64 already
    assert (tiny.fc1.weight[3] == 0).all() and (tiny.fc1.weight_mask[3] == 0).all()
    assert (tiny.conv1.weight[2] == 0).all() and (tiny.conv1.weight_mask[2] == 0).all()
    assert int(tiny.fc1.weight.count_nonzero()) == 16 * 256 - 16 * 64 - (256 - 64)
    assert torch.allclose(tiny(x), before, atol=1e-6)
    assert tiny.prune_dead_units() == 0  # nothing left to remove


def test_dead_unit_removal_cascades_backwards(tiny):
    tiny.prune_by_percentile(100)
    with torch.no_grad():
        tiny.fc2.weight_mask.zero_()  # the output reads nothing: everything is dead
        tiny.apply_masks()
    tiny.prune_dead_units()
    for name, layer in tiny.prunable_layers():
        assert int(layer.weight.count_nonzero()) == 0, name


def test_constant_units_fold_into_the_next_bias_and_cascade(tiny):
    # conv1 channel 1 and fc1 unit 5 lose every incoming weight: both output relu(bias).
    tiny.prune_by_percentile(100)
    with torch.no_grad():
        tiny.conv1.bias[1] = 0.7
        tiny.fc1.bias[5] = 0.3
        tiny.fc1.bias[7] = -0.2  # constant too, but relu makes it 0
        tiny.conv1.weight_mask[1] = 0
        tiny.fc1.weight_mask[5] = 0
        tiny.fc1.weight_mask[7] = 0
        tiny.apply_masks()
    x = torch.randn(5, 3, 32, 32)
    before = tiny(x)
    removed = tiny.fold_constant_units()
    # fc1 columns of channel 1 (rows 5 and 7 are empty already), fc2 columns 5 and 7
    assert removed == 14 * 64 + 2 * 10
    assert (tiny.fc1.weight[:, 64:128] == 0).all() and (tiny.fc1.weight_mask[:, 64:128] == 0).all()
    assert (tiny.fc2.weight[:, [5, 7]] == 0).all() and (tiny.fc2.weight_mask[:, [5, 7]] == 0).all()
    assert torch.allclose(tiny(x), before, atol=1e-5)
    assert tiny.fold_constant_units() == 0
    tiny.prune_dead_units()  # the folded units are dead now
    assert (tiny.conv1.weight[1] == 0).all() and (tiny.fc1.weight[[5, 7]] == 0).all()
    assert torch.allclose(tiny(x), before, atol=1e-5)


def test_units_with_one_input_left_are_not_folded(tiny):
    tiny.prune_by_percentile(100)
    with torch.no_grad():
        tiny.fc1.weight_mask.zero_()
        tiny.fc1.weight_mask[torch.arange(16), torch.arange(16) * 16] = 1  # one input each
        tiny.apply_masks()
    fc2 = tiny.fc2.weight.clone()
    assert tiny.fold_constant_units() == 0
    assert torch.equal(tiny.fc2.weight, fc2)


# ---------------------------------------------------------------- unit pruning
def units_with_salience(tiny, incoming, outgoing):
    """tiny with fc1 unit u's incoming weights all incoming[u] and fc2's reading of it
    outgoing[u] (salience 256 * incoming[u] * 10 * outgoing[u])."""
    tiny.prune_by_percentile(100)
    with torch.no_grad():
        tiny.fc1.weight.copy_(torch.tensor(incoming)[:, None].expand(16, 256))
        tiny.fc2.weight.copy_(torch.tensor(outgoing)[None, :].expand(10, 16))
    return tiny


def test_unit_pruning_keeps_exactly_the_most_salient_units(tiny):
    # Salience in * out: unit u has u + 1 in and 16 - u out, largest in the middle:
    # units 6 to 9 (70, 72, 72, 70), then 5 and 10 (66).
    incoming = [float(u + 1) for u in range(16)]
    outgoing = [float(16 - u) for u in range(16)]
    units_with_salience(tiny, incoming, outgoing)
    removed = tiny.prune_units({'fc1': 25})  # 4 of 16 units
    kept = [6, 7, 8, 9]
    assert removed == 12 * 256 + 12 * 10
    assert (tiny.fc1.weight_mask.sum(1) > 0).nonzero().flatten().tolist() == kept
    assert (tiny.fc2.weight_mask.sum(0) > 0).nonzero().flatten().tolist() == kept
    assert (tiny.fc1.weight != 0).sum(1).nonzero().flatten().tolist() == kept
    assert (tiny.fc2.weight != 0).sum(0).nonzero().flatten().tolist() == kept
    assert tiny.conv1.weight_mask.all()  # other layers untouched
    assert tiny.prune_units({'fc1': 25}) == 0  # already there


def test_unit_pruning_breaks_ties_at_the_boundary_by_the_lower_index(tiny):
    units_with_salience(tiny, [1.0] * 16, [1.0] * 16)  # all equal
    assert tiny.keep_units('fc1', 5) == 11 * (256 + 10)
    assert (tiny.fc1.weight != 0).sum(1).nonzero().flatten().tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize('q, message', [
    (50, 'a dict of layer -> percent'),
    ({'fc2': 50}, 'fc2 is the last layer'),
    ({'fc1': -1}, 'percent of units kept'),
])
def test_bad_unit_pruning_is_refused(tiny, q, message):
    with pytest.raises(ValueError, match=message):
        tiny.prune_units(q)


def test_unit_pruning_leaves_dead_and_constant_units_to_their_own_steps(tiny):
    # Units 0-3 have no outgoing weights (dead), 4-7 no incoming (constant): neither is
    # ranked or counted, so the 8 live units compete for 4 places and lose 4.
    incoming = [1.0] * 4 + [0.0] * 4 + [float(u) for u in range(1, 9)]
    outgoing = [0.0] * 4 + [1.0] * 4 + [1.0] * 8
    units_with_salience(tiny, incoming, outgoing)
    assert tiny.prune_units({'fc1': 25}) == 4 * 256 + 4 * 10
    assert (tiny.fc1.weight != 0).sum(1).nonzero().flatten().tolist() == [0, 1, 2, 3, 12, 13, 14, 15]
    assert (tiny.fc2.weight != 0).sum(0).nonzero().flatten().tolist() == [4, 5, 6, 7, 12, 13, 14, 15]


def test_unit_pruning_of_conv_filters_removes_the_fc_inputs_of_their_channels(tiny):
    tiny.prune_by_percentile(100)
    with torch.no_grad():
        tiny.conv1.weight.copy_(torch.tensor([1.0, 4.0, 2.0, 3.0])[:, None, None, None].expand(4, 3, 3, 3))
        tiny.fc1.weight.fill_(1.0)
    removed = tiny.prune_units({'conv1': 50})
    assert removed == 2 * 27 + 2 * 64 * 16
    assert (tiny.conv1.weight_mask.sum((1, 2, 3)) > 0).tolist() == [False, True, False, True]
    read = tiny.fc1.weight_mask.view(16, 4, 64).sum((0, 2)) > 0  # channel-major features
    assert read.tolist() == [False, True, False, True]


@pytest.mark.parametrize('text, message', [
    ('{"fc2": 1}', '--unit-rates: fc2 is the last layer'),
    ('{"fc1": 120}', '--unit-rates: .*percent of units kept, between 0 and 100'),
    ('{"fc1": 0}', '--unit-rates: fc1 would keep no units'),
    ('{"fc9": 1}', '--unit-rates: unknown layer'),
    ('[1]', 'error: --unit-rates must be a JSON object of layer -> percent of its units kept'),
    ('{fc1', 'error: --unit-rates: not valid JSON'),
])
def test_bad_unit_rates_are_refused(tiny, text, message, capsys):
    assert re.match(message, refusal(capsys, tiny, '--unit-rates', text))


def test_extra_cuts_are_relative_to_what_is_left(tiny):
    tiny.prune_by_percentile({'conv1': 50, 'fc1': 100, 'fc2': 100})
    with torch.no_grad():
        tiny.fc2.weight[:, 10:] = 0  # fc1 has 10 live units left
    conv1 = tiny.conv1.weight.abs().flatten().sort(descending=True).values
    extra_cut(tiny, {'units': {'fc1': 50}, 'weights': {'conv1': 25}})
    assert int((tiny.unit_salience('fc1') > 0).sum()) == 5
    assert int(tiny.conv1.weight.count_nonzero()) == 14  # a quarter of its 54
    assert torch.equal(tiny.conv1.weight.abs().flatten().sort(descending=True).values[:14], conv1[:14])
    assert int(tiny.conv1.weight_mask.sum()) == 14


def test_extra_weight_cuts_keep_exactly_their_share_of_tied_values(tiny):
    # Weight-shared layers hold few distinct values: a threshold would keep every tie.
    with torch.no_grad():
        tiny.conv1.weight.copy_(torch.tensor([0.5, -0.5, 0.25])[torch.arange(108) % 3].view(4, 3, 3, 3))
    extra_cut(tiny, {'weights': {'conv1': 50}})
    weight = tiny.conv1.weight.flatten()
    assert int(weight.count_nonzero()) == 54
    assert (weight.abs()[weight != 0] == 0.5).all()
    assert weight[:108:3].count_nonzero() == 27  # ties: the first ones stay
    assert weight[:54].count_nonzero() == 36 and weight[54:].count_nonzero() == 18
    extra_cut(tiny, {'weights': {'conv1': 0}})
    assert int(tiny.conv1.weight.count_nonzero()) == 0


@pytest.mark.parametrize('cut, message', [
    ({'filters': {'conv1': 50}}, 'a cut is a JSON object with keys'),
    ([['fc1', 50]], 'a cut is a JSON object with keys'),
    ({'units': [1]}, 'units of a cut: a JSON object'),
    ({'units': 50}, 'units of a cut: a JSON object'),
    ({'units': {'fc9': 50}}, 'unknown layer'),
    ({'units': {'fc2': 50}}, 'last layer'),
    ({'weights': {'fc1': 150}}, 'percent of non-zero weights kept'),
])
def test_bad_extra_cuts_are_refused(tiny, cut, message):
    with pytest.raises(ValueError, match=message):
        extra_cut(tiny, cut)


def pruned_lenet_in(tmp_path, monkeypatch):
    """A LeNet-300 with 10% kept, saved as model.ptmodel in tmp_path (the working
    directory from now on), beside fake MNIST files."""
    monkeypatch.chdir(tmp_path)
    fake_mnist_dir(tmp_path)
    torch.manual_seed(0)
    model = build_model('lenet300', 'mnist')
    model.prune_by_percentile(10)
    save_model(model, 'model.ptmodel')
    return model


def test_cuts_tool_retrains_and_measures_each_cut(tmp_path, monkeypatch):
    model = pruned_lenet_in(tmp_path, monkeypatch)
    cut = {'units': {'fc1': 50}}
    analyze.main(['cuts', '--load-model-path', 'model.ptmodel', '--data-dir', str(tmp_path),
                  '--epochs', '1', '--out', 'cuts', '--cuts', '{}', json.dumps(cut)])
    with open('cuts.csv') as f:
        rows = list(csv.DictReader(f))
    extra_cut(model, cut)
    model.fold_constant_units()
    model.prune_dead_units()
    expected = [sum(int(m.weight.count_nonzero()) for _, m in model.prunable_layers())]
    assert [r['cut'] for r in rows] == ['{}', json.dumps(cut)]
    assert [int(r['weights']) for r in rows][1:] == expected  # retraining keeps the zeros
    assert int(rows[1]['bytes']) < int(rows[0]['bytes'])
    assert all(0 <= float(r[key]) <= 100 for r in rows
               for key in ('accuracy_after_cut', 'accuracy_retrained', 'accuracy_shared'))


def test_cuts_tool_refuses_bad_cuts_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_model(build_model('lenet300', 'mnist'), 'model.ptmodel')
    monkeypatch.setattr(analyze.datasets, 'model_data', lambda *a: pytest.fail('loaded data'))
    with pytest.raises(SystemExit):  # AlexNet's conv layers, on a LeNet
        analyze.main(['cuts', '--load-model-path', 'model.ptmodel'])


def test_cuts_tool_retrains_each_cut_with_each_setting(tmp_path, monkeypatch):
    pruned_lenet_in(tmp_path, monkeypatch)
    used = []
    real = analyze.train
    monkeypatch.setattr(analyze, 'train', lambda model, data, training, *rest: used.append(
        (training.lr, training.augment)) or real(model, data, training, *rest))
    analyze.main(['cuts', '--load-model-path', 'model.ptmodel', '--data-dir', str(tmp_path),
                  '--epochs', '1', '--out', 'cuts', '--cuts', '{}', '{"units": {"fc1": 50}}',
                  '--retrain', '{}', '{"re_lr": 0.01, "re_augment": "none"}'])
    with open('cuts.csv') as f:
        rows = list(csv.DictReader(f))
    settings = '{"re_lr": 0.01, "re_augment": "none"}'
    assert [(r['retrain'], r['cut']) for r in rows] == [
        ('{}', '{}'), ('{}', '{"units": {"fc1": 50}}'),
        (settings, '{}'), (settings, '{"units": {"fc1": 50}}')]
    assert used == [(0.0003, 'crop-flip')] * 2 + [(0.01, 'none')] * 2


@pytest.mark.parametrize('retrain, message', [
    ('{"re_lrr": 1}', '--retrain: unknown setting "re_lrr" for pruning.py'),
    ('{"re_augment": "cutout"}', '--retrain: "re_augment": "cutout" is not a valid value for --re-augment'),
])
def test_cuts_tool_refuses_bad_retraining_settings_before_any_work(tmp_path, monkeypatch, capsys,
                                                                   retrain, message):
    monkeypatch.chdir(tmp_path)
    save_model(build_model('lenet300', 'mnist'), 'model.ptmodel')
    monkeypatch.setattr(analyze.datasets, 'model_data', lambda *a: pytest.fail('loaded data'))
    with pytest.raises(SystemExit):
        analyze.main(['cuts', '--load-model-path', 'model.ptmodel', '--cuts', '{}',
                      '--retrain', '{}', retrain])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize('flag, text, message', [('--cuts', '[50]', 'a cut is a JSON object'),
                                                 ('--cuts', '{"units"', 'not valid JSON'),
                                                 ('--retrain', '[1]', 'a retraining is a JSON object')])
def test_cuts_tool_refuses_a_cut_that_is_not_an_object(capsys, flag, text, message):
    with pytest.raises(SystemExit):
        analyze.parse_args(['cuts', flag, text])
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------- recipe files
def write_recipe(tmp_path, recipe):
    path = tmp_path / 'recipe.json'
    path.write_text(json.dumps(recipe))
    return str(path)


def test_recipe_sets_defaults_and_flags_still_win(tmp_path):
    path = write_recipe(tmp_path, {
        'description': 'test', 'pruning': {'epochs': 3, 'prune-rounds': 4, 'prune_dead_units': True,
                                           'rates': {'fc2': 1}, 're_lr': 0.01},
        'weight_share': {'bits': {'fc1': 3}, 'init': 'density'}})
    args = pruning.parse_args(['--config', path, '--epochs', '7'])
    assert (args.epochs, args.prune_rounds, args.prune_dead_units, args.re_lr) == (7, 4, True, 0.01)
    assert pruning.rates_for(AlexNet(), args.rates)['fc2'] == 1
    shared = weight_share.parse_args(['--config', path])
    assert shared.bits == {'fc1': 3} and shared.init == 'density'


def test_settings_replace_the_recipe_and_flags_still_win(tmp_path):
    path = write_recipe(tmp_path, {'pruning': {'re_lr': 0.01, 're_augment': 'flip', 'epochs': 3}})
    args = settings.pruning_settings(['--config', path, '--epochs', '7'], {'re_lr': 0.02, 'epochs': 5})
    assert (args.re_lr, args.re_augment, args.epochs) == (0.02, 'flip', 7)


@pytest.mark.parametrize('recipe, message', [
    ({'pruning': {'epochz': 3}}, 'unknown setting "epochz"'),
    ({'prunning': {}}, "unknown section(s) ['prunning']"),
    ({'pruning': {'epochs': 2.5}}, '"epochs": 2.5 is not a valid value for --epochs'),
    ({'pruning': {'optimizer': 'rmsprop'}}, 'not a valid value for --optimizer'),
    ({'pruning': {'prune_dead_units': 'yes'}}, 'not a valid value for --prune-dead-units'),
    ([1, 2], 'must be a JSON object'),
])
def test_bad_recipes_are_one_clear_error(tmp_path, capsys, recipe, message):
    with pytest.raises(SystemExit) as exit_:
        pruning.parse_args(['--config', write_recipe(tmp_path, recipe)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and message in err and '\n' not in err


@pytest.mark.parametrize('script, argv, message', [
    (pruning, ['--target-ratio', '1'], '--target-ratio must be above 1, got 1.0'),
    (pruning, ['--batch-size', '0'], '--batch-size must be at least 1, got 0'),
    (pruning, ['--batch-size', '-5'], '--batch-size must be at least 1, got -5'),
    (pruning, ['--test-batch-size', '0'], '--test-batch-size must be at least 1, got 0'),
    (pruning, ['--epochs', '-1'], '--epochs must be at least 0, got -1'),
    (pruning, ['--sensitivity', 'nan'], '--sensitivity must be at least 0, got nan'),
    (pruning, ['--seed', str(2**70)], f'--seed must be from 0 to 4294967295, got {2**70}'),
    (pruning, ['--lr', '0'], '--lr must be above 0, got 0.0'),
    (pruning, ['--prune-rounds', '0'], '--prune-rounds must be at least 1, got 0'),
    (pruning, ['--time-limit', '0'], '--time-limit must be above 0, got 0.0'),
    (pruning, ['--global-rate', '101', '--scope', 'global'], '--global-rate must be above 0 and at most 100'),
    (pruning, ['--global-rate', '0', '--scope', 'global'], '--global-rate must be above 0 and at most 100'),
    (weight_share, ['--batch-size', '1' + '0' * 400],
     '--batch-size must be at most 9223372036854775807, got 1000'),
    (weight_share, ['--quantize-epochs', '-1'], '--quantize-epochs must be at least 0, got -1'),
    (weight_share, ['--quantize-lr', 'inf'], '--quantize-lr must be above 0, got inf'),
    (huffman_encode, ['--subset', '0'], '--subset must be at least 1, got 0'),
    (analyze, ['distribution', '--bins', '0'], '--bins must be at least 1, got 0'),
    (analyze, ['cuts', '--epochs', '-1'], '--epochs must be at least 0, got -1'),
])
def test_numbers_out_of_range_are_one_line_naming_the_flag(capsys, script, argv, message):
    with pytest.raises(SystemExit):
        script.parse_args(argv)
    err = capsys.readouterr().err
    assert err.startswith(f'error: {message}') and err.count('\n') == 1


@pytest.mark.parametrize('content, message', [
    (b'{"pruning": 5}', 'section "pruning" must be a JSON object of settings, got 5'),
    (b'{"pruning": null}', 'section "pruning" must be a JSON object of settings, got null'),
    (b'{"pruning": [1]}', 'section "pruning" must be a JSON object of settings, got [1]'),
    (b'{"pruning": {"\xff": 1}}', 'is not a UTF-8 text file'),
])
def test_malformed_recipes_are_one_line(tmp_path, capsys, content, message):
    (tmp_path / 'r.json').write_bytes(content)
    with pytest.raises(SystemExit):
        pruning.parse_args(['--config', str(tmp_path / 'r.json')])
    err = capsys.readouterr().err
    assert message in err and err.startswith('error: ') and err.count('\n') == 1


def test_a_recipe_out_of_range_is_refused_too(tmp_path, capsys):
    (tmp_path / 'r.json').write_text('{"pruning": {"batch_size": 0}}')
    with pytest.raises(SystemExit):
        pruning.parse_args(['--config', str(tmp_path / 'r.json')])
    assert capsys.readouterr().err == 'error: --batch-size must be at least 1, got 0\n'


def test_missing_recipe_file_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        weight_share.parse_args(['--config', str(tmp_path / 'nope.json')])
    assert 'cannot read the recipe' in capsys.readouterr().err


def test_bits_for_unknown_layers_are_refused():
    with pytest.raises(ValueError, match=re.escape("unknown layer name(s) ['fc9']")):
        validate_bits(AlexNet(), weight_share.parse_args(['--bits', '{"fc9": 3}']).bits)


@pytest.mark.parametrize('text, message', [
    ('{"fc1": 0}', '--bits: bits must be an integer from 1 to 16, got 0'),
    ('17', '--bits: bits must be an integer from 1 to 16, got 17'),
    ('five', '--bits: not valid JSON'),
])
def test_bad_bits_are_one_line(text, message, capsys):
    with pytest.raises(SystemExit):
        weight_share.parse_args(['--bits', text])
    assert capsys.readouterr().err.startswith(f'error: {message}')


# ---------------------------------------------------------------- centroid initialisation
@pytest.mark.parametrize('init', ['linear', 'random', 'density'])
def test_every_initialisation_shares_to_at_most_2_to_the_bits_values(init):
    weight = np.random.default_rng(1).standard_normal((40, 50)).astype(np.float32)
    weight[np.abs(weight) < 0.5] = 0
    shared = share_weights(weight, 3, init)
    assert len(np.unique(shared[shared != 0])) <= 8
    assert np.array_equal(shared != 0, weight != 0)


def test_initialisations_place_centroids_as_the_paper_describes():
    values = np.concatenate([np.full(90, 0.1), np.linspace(0.5, 1.0, 10)])
    assert np.allclose(initial_centroids(values, 3, 'linear'), [0.1, 0.55, 1.0])
    density = initial_centroids(values, 5, 'density')
    assert (density == 0.1).sum() == 1 and density.min() == 0.1 and density.max() == 1.0
    forgy = initial_centroids(values, 4, 'random')
    assert len(set(forgy)) == 4 and set(forgy) <= set(values)
    with pytest.raises(ValueError, match='unknown centroid initialisation'):
        initial_centroids(values, 4, 'kmeans++')


# ---------------------------------------------------------------- trained quantization
def test_centroid_gradient_is_the_sum_of_its_weights_gradients(tiny):
    apply_weight_sharing(tiny, 2)
    shared = SharedWeights(tiny)
    x = torch.randn(4, 3, 32, 32)
    tiny(x).sum().backward()
    weight, _, _, centroids, _ = shared.tensors[-1]  # fc2's weight
    weight_grad = weight.grad.clone()
    shared.accumulate_gradients()
    weight = weight.data
    for k, value in enumerate(centroids.detach()):
        assert centroids.grad[k] == pytest.approx(float(weight_grad[weight == value].sum()),
                                                  rel=1e-5, abs=1e-6)


def test_centroid_gradient_comes_from_the_last_backward_only(tiny):
    """Nothing but SharedWeights clears the weights' gradients (no optimizer holds them):
    without that, every step's centroid gradient was the sum over all earlier steps."""
    apply_weight_sharing(tiny, 2)
    shared = SharedWeights(tiny)
    first, second = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    tiny(first).sum().backward()
    shared.accumulate_gradients()
    tiny(second).sum().backward()
    shared.accumulate_gradients()
    after_two = [centroids.grad.clone() for _, _, _, centroids, _ in shared.tensors]
    tiny.zero_grad()
    tiny(second).sum().backward()
    shared.accumulate_gradients()
    for grad, (_, _, _, centroids, _) in zip(after_two, shared.tensors, strict=True):
        assert torch.allclose(grad, centroids.grad)


def test_trained_quantization_keeps_zeros_assignments_and_value_counts(tiny, synthetic_data):
    tiny.prune_by_percentile(40)
    apply_weight_sharing(tiny, 3)
    before = {n: m.weight.data.clone() for n, m in tiny.prunable_layers()}
    shared = SharedWeights(tiny)
    training = settings.initial_training(pruning.parse_args(
        ['--lr', '0.01', '--weight-decay', '0', '--schedule', 'constant', '--batch-size', '16']))
    fit(tiny, synthetic_data, training, Phase('q', 2, shared.parameters(), shared.accumulate_gradients,
                                              shared.write_back), torch.Generator().manual_seed(0), [])
    for name, layer in tiny.prunable_layers():
        old, new = before[name], layer.weight.data
        assert torch.equal(old != 0, new != 0), name
        assert len(new[new != 0].unique()) <= 8, name
        assert not torch.equal(old, new), name  # the values did train
        # Weights that shared a value still share one: assignments are fixed.
        for value in old[old != 0].unique():
            assert len(new[old == value].unique()) == 1, name


# ---------------------------------------------------------------- bias sharing, the grid
def test_grid_step_is_the_smallest_power_of_two_that_holds_the_largest_value():
    assert grid_step(torch.tensor([0.0, -0.3, 0.1]), 4) == 2.0 ** -4  # 0.3 / 7 = 0.043 -> 1/16
    assert grid_step(torch.tensor([7.0]), 4) == 1.0  # exactly 7 steps
    assert grid_step(torch.tensor([7.5]), 4) == 2.0
    assert grid_step(torch.zeros(3), 4) == 1.0
    with pytest.raises(ValueError, match='grid bits must be an integer from 2 to 24, got 1'):
        grid_step(torch.ones(1), 1)


def test_snap_to_grid_rounds_clamps_and_keeps_zeros_apart():
    values = torch.tensor([0.0, 0.26, -0.26, 0.01, -0.01, 5.0, -5.0])
    assert snap_to_grid(values, 0.25, 3).tolist() == [0.0, 0.25, -0.25, 0.25, -0.25, 0.75, -0.75]


def test_apply_grid_leaves_few_bit_integers_times_a_power_of_two(tiny):
    tiny.prune_by_percentile(50)
    apply_weight_sharing(tiny, 4)
    zeros = {name: layer.weight == 0 for name, layer in tiny.prunable_layers()}
    biases = {name: layer.bias.clone() for name, layer in tiny.prunable_layers()}
    apply_grid(tiny, 5)
    for name, layer in tiny.prunable_layers():
        weight = layer.weight.data
        step = 2.0 ** torch.ceil(torch.log2(weight.abs().max() / 15))
        steps = weight / step
        assert torch.equal(steps, steps.round()) and steps.abs().max() <= 15, name
        assert torch.equal(weight == 0, zeros[name]), name
        assert len(weight.unique()) <= 2 ** 4 + 1, name
        assert torch.equal(layer.bias, biases[name]), name  # biases only with biases=True


def test_bias_sharing_keeps_few_values_and_zeroes_dead_units(tiny):
    with torch.no_grad():
        tiny.fc2.weight[:, :3] = 0  # fc1's units 0-2 are read by nothing
    apply_bias_sharing(tiny, 2)
    for name, layer in tiny.prunable_layers():
        assert len(layer.bias.unique()) <= 2 ** 2 + 1, name
    assert (tiny.fc1.bias[:3] == 0).all() and (tiny.fc1.bias[3:] != 0).all()
    apply_grid(tiny, 4, biases=True)
    for name, layer in tiny.prunable_layers():
        steps = layer.bias.detach() / grid_step(layer.bias.detach(), 4)
        assert torch.equal(steps, steps.round()) and steps.abs().max() <= 7, name


def test_trained_quantization_shares_biases_and_keeps_the_grid(tiny, synthetic_data, monkeypatch):
    monkeypatch.setattr(datasets, 'model_data', lambda *_: synthetic_data)
    tiny.prune_by_percentile(40)
    args = weight_share.parse_args(['--quantize-epochs', '2', '--batch-size', '16', '--bits', '3',
                                    '--bias-bits', '2', '--grid-bits', '6',
                                    '--quantize-lr', '0.05'])
    weight_share.share(tiny, args, 3)
    before = {name: layer.weight.clone() for name, layer in tiny.prunable_layers()}
    bias_before = {name: layer.bias.clone() for name, layer in tiny.prunable_layers()}
    weight_share.trained_quantization(tiny, args, torch.device('cpu'), [])
    for name, layer in tiny.prunable_layers():
        for tensor, limit in ((layer.weight, 2 ** 3), (layer.bias, 2 ** 2)):
            assert len(tensor[tensor != 0].unique()) <= limit, name
            steps = tensor.detach() / grid_step(tensor.detach(), 6)
            assert torch.equal(steps, steps.round()) and steps.abs().max() <= 31, name
        assert torch.equal(layer.weight == 0, before[name] == 0), name
        assert not torch.equal(layer.weight, before[name]), name  # the values did train
        assert not torch.equal(layer.bias, bias_before[name]), name  # and the shared biases


@pytest.mark.parametrize('augment, paddings', [(None, [4, 4]), ('flip', [0, 0]), ('none', [])])
def test_trained_quantization_augments_as_quantize_augment_says(tiny, synthetic_data, monkeypatch,
                                                                augment_paddings, augment, paddings):
    monkeypatch.setattr(datasets, 'model_data', lambda *_: synthetic_data)
    tiny.prune_by_percentile(40)
    apply_weight_sharing(tiny, 3)
    args = weight_share.parse_args(['--quantize-epochs', '1', '--batch-size', '32',
                                    *(['--quantize-augment', augment] if augment else [])])
    weight_share.trained_quantization(tiny, args, torch.device('cpu'), [])
    assert augment_paddings == paddings  # two batches; by default crops and flips, as before the flag


# ---------------------------------------------------------------- analyses
def kept_weights(model):
    return sum(int(m.weight.count_nonzero()) for _, m in model.prunable_layers())


def test_prune_sensitivity_prunes_one_layer_at_a_time(tiny):
    total = kept_weights(tiny)
    rows = prune_sensitivity(tiny, kept_weights, [50, 10])
    assert [(r['layer'], r['kept_percent']) for r in rows] == [
        (layer, kept) for layer in ('conv1', 'fc1', 'fc2') for kept in (50, 10)]
    sizes = {'conv1': 4 * 27, 'fc1': 16 * 256, 'fc2': 160}
    for r in rows:
        assert r['nonzero'] == pytest.approx(sizes[r['layer']] * r['kept_percent'] / 100, abs=1)
        assert r['accuracy'] == total - sizes[r['layer']] + r['nonzero']
    assert kept_weights(tiny) == total  # the model itself is untouched


def test_bits_sensitivity_shares_one_layer_at_a_time(tiny):
    original = {n: m.weight.data.clone() for n, m in tiny.prunable_layers()}
    rows = bits_sensitivity(tiny, lambda m: 0.0, [3, 1])
    assert all(r['distinct_nonzero'] <= 2 ** r['bits'] for r in rows)
    assert len(rows) == 6
    for name, layer in tiny.prunable_layers():
        assert torch.equal(layer.weight.data, original[name])


def test_analysis_writes_csv_without_matplotlib(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith('matplotlib'):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', no_matplotlib)
    rows = [{'layer': 'fc1', 'bits': 2, 'accuracy': 50.0}]
    analyze.write_csv(str(tmp_path / 'out'), rows)
    analyze.plot_curves(str(tmp_path / 'out'), rows, 'bits', 'bits', False, 't')
    assert (tmp_path / 'out.csv').read_text().splitlines() == ['layer,bits,accuracy', 'fc1,2,50.0']
    assert not (tmp_path / 'out.png').exists()
    assert 'matplotlib is not installed' in capsys.readouterr().err


def test_analysis_plots_with_matplotlib(tmp_path):
    pytest.importorskip('matplotlib')
    rows = [{'layer': layer, 'kept_percent': k, 'accuracy': a}
            for layer in ('conv1', 'fc1') for k, a in ((50, 60.0), (5, 40.0))]
    analyze.plot_curves(str(tmp_path / 'out'), rows, 'kept_percent', 'kept', True, 't')
    assert (tmp_path / 'out.png').read_bytes()[:4] == b'\x89PNG'


def test_distribution_counts_every_weight_of_every_stage(tmp_path, monkeypatch):
    """Retrained survivors often grow beyond the dense layer's range; the bins must still
    count them (they once fell outside and were silently dropped)."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = build_model('lenet300', 'mnist')
    save_model(model, 'saves/initial_model.ptmodel')
    widest = model.fc3.weight.abs().max().item()
    model.prune_by_percentile({'fc3': 10})
    model.fc3.weight.data[model.fc3.weight_mask != 0] *= 3  # beyond the dense range
    save_model(model, 'saves/model_after_retraining.ptmodel')
    apply_weight_sharing(model, 2)
    save_model(model, 'saves/model_after_weight_sharing.ptmodel')
    analyze.main(['distribution', '--layer', 'fc3', '--bins', '20', '--out', 'dist'])
    counts = {}
    with open('dist.csv') as f:
        for row in csv.DictReader(f):
            counts[row['stage']] = counts.get(row['stage'], 0) + int(row['count'])
    assert list(counts.values()) == [1000, 100, 100]
    assert model.fc3.weight.abs().max().item() > widest



@pytest.mark.parametrize('steps, one_cycle', [(1, False), (4, False), (7, False), (8, True), (100, True)])
def test_too_few_steps_for_a_warm_up_train_at_a_constant_rate(steps, one_cycle):
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer, scheduler = make_optimizer(params, 'sgd', 0.1, 0, 'onecycle', steps)
    assert (scheduler is not None) == one_cycle
    for _ in range(steps):  # OneCycleLR itself fails at 4 steps
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


@pytest.mark.parametrize('name', sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, 'configs'))
                                        if f.endswith('.json')))
def test_shipped_recipes_parse_for_all_three_scripts(name):
    path = os.path.join(ROOT, 'configs', f'{name}.json')
    args = pruning.parse_args(['--config', path])
    with torch.device('meta'):
        layers = build_model(args.model, args.dataset)
    pruning.schedules_for(args, layers)
    shared = weight_share.parse_args(['--config', path])
    validate_bits(layers, shared.bits)
    huffman_encode.parse_args(['--config', path])


def test_a_recipes_null_or_text_json_settings_mean_what_they_did(tmp_path):
    path = write_recipe(tmp_path, {'pruning': {'rates': None, 'round_settings': None,
                                               'unit_rates': '{"fc1": 5}', 'round_epochs': '[3, 6]'},
                                   'weight_share': {'bits': '{"fc1": 3}'}})
    args = pruning.parse_args(['--config', path])
    assert (args.rates, args.round_settings, args.unit_rates, args.round_epochs) == (
        None, {}, {'fc1': 5}, [3, 6])
    assert weight_share.parse_args(['--config', path]).bits == {'fc1': 3}
