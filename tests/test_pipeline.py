"""Deep Compression of models this project does not define (net/pipeline.py), and of
ResNet-18: the README's example, exact round trips of every tensor, masks held through
retraining, clear refusals."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

import huffman_encode
import pruning
import weight_share
from net import pipeline
from net.activations import activation_scores
from net.analysis import CRITERIA, criteria_comparison
from net.checkpoint import load_model
from net.container import ContainerError, decode_model, encode_model
from net.export import export_compact
from net.huffmancoding import huffman_decode_model, huffman_encode_model
from net.models import build_model
from net.prune import prunable_layers, state_without_masks
from tests.conftest import ROOT, TinyNet


class Residual(nn.Module):
    """A user's model: conv, batch norm, a skip connection, fc, and a buffer of its own."""

    def __init__(self, width=8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, 4)
        self.register_buffer('temperature', torch.ones(()))

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(x + self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3))) / self.temperature


def toy_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def trained(seed=0):
    torch.manual_seed(seed)
    model = Residual()
    pipeline.retrain(model, toy_data(), epochs=2, batch_size=16)
    with torch.no_grad():
        model.temperature.fill_(1.5)
    return model


def readme_example():
    with open(os.path.join(ROOT, 'README.md')) as f:
        text = f.read()
    section = text[text.index('## Your own model (Python API)'):]
    return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def test_the_readme_example_runs_and_loads_back_bit_exact(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = subprocess.run([sys.executable, '-c', readme_example()], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    lines = run.stdout.splitlines()
    assert len(lines) == 3 and 'loaded back bit-exact: True' in lines[2]
    shared = re.search(r'([\d.]+)%$', lines[1]).group(1)
    assert lines[2].endswith(f'{shared}%')  # the loaded model scores as the one saved
    assert (tmp_path / 'net.dcz').stat().st_size == int(re.search(r'([\d,]+) bytes', lines[2])
                                                        .group(1).replace(',', ''))


def test_every_tensor_of_a_users_model_round_trips_through_both_formats(tmp_path):
    model = trained()
    pipeline.prune(model, {'conv1': 50, 'conv2': 30, 'fc': 60})
    pipeline.share(model, bits=3)
    pipeline.save(model, tmp_path / 'm.dcz')
    loaded = pipeline.load(tmp_path / 'm.dcz', Residual())
    assert state_without_masks(loaded).keys() == state_without_masks(model).keys()
    for name, tensor in state_without_masks(model).items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
        assert loaded.state_dict()[name].dtype == tensor.dtype, name
    assert loaded.bn1.num_batches_tracked.item() == 8  # 2 epochs of 4 batches

    huffman_encode_model(model, str(tmp_path / 'enc'), None)
    fresh = Residual()
    huffman_decode_model(fresh, str(tmp_path / 'enc'))
    for name, tensor in state_without_masks(model).items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    x = toy_data(8, seed=1)[0]
    model.eval(), loaded.eval(), fresh.eval()
    assert torch.equal(loaded(x), model(x)) and torch.equal(fresh(x), model(x))


def test_retraining_holds_exact_sparsity_per_layer():
    model = trained()
    kept = pipeline.prune(model, {'conv1': 25, 'conv2': 10, 'fc': 50})
    zeros = {name: layer.weight == 0 for name, layer in prunable_layers(model)}
    pipeline.retrain(model, toy_data(), epochs=2, batch_size=16)
    for name, layer in prunable_layers(model):
        assert torch.equal(layer.weight == 0, zeros[name]), name
        assert 100 * (layer.weight != 0).float().mean().item() == pytest.approx(kept[name]), name
    assert kept == pytest.approx({'conv1': 25, 'conv2': 10, 'fc': 50}, abs=0.5)


def test_a_global_rate_keeps_that_share_of_all_weights():
    model = trained()
    pipeline.prune(model, 20, scope='global')
    layers = prunable_layers(model)
    kept = sum(int(layer.weight.count_nonzero()) for _, layer in layers)
    assert kept == round(0.2 * sum(layer.weight.numel() for _, layer in layers))


def test_filters_ranked_by_activation_on_a_non_chain_model():
    model = trained()
    with torch.no_grad():
        model.bn1.weight[:3] = 0   # these filters' batch norm silences them,
        model.bn1.bias[:3] = 0
        model.conv1.weight[:3] *= 10  # though their weights are the largest
    scores = activation_scores(model, [toy_data()[0]])
    assert (scores['conv1'][:3] == 0).all() and (scores['conv1'][3:] > 0).all()
    pipeline.prune(model, {'conv1': 50}, conv='filter', unit_scores={'conv1': scores['conv1']})
    kept = model.conv1.weight.flatten(1).any(1)
    assert not kept[:3].any() and kept.sum() == 4  # 50% of 8: the silent three go first


def test_batches_of_every_kind_and_bad_ones():
    images, labels = toy_data(10)
    loader = [(images[:6], labels[:6]), (images[6:], labels[6:])]
    assert [len(y) for _, y in pipeline.batches(loader, 4)] == [6, 4]
    assert [len(y) for _, y in pipeline.batches((images, labels), 4)] == [4, 4, 2]
    model = Residual()
    assert len(pipeline.retrain(model, loader, epochs=2)) == 2
    with pytest.raises(ValueError, match='an iterator is used up after one epoch'):
        pipeline.retrain(model, iter(loader), epochs=2)
    with pytest.raises(ValueError, match='10 inputs but 9 targets'):
        pipeline.retrain(model, (images, labels[:9]))
    with pytest.raises(ValueError, match='at least one batch'):
        pipeline.retrain(model, [])


class Wider(Residual):
    def __init__(self):
        super().__init__(width=16)


def test_loading_into_the_wrong_model_is_one_clear_error():
    data = encode_model(trained())[0]
    with pytest.raises(ContainerError, match='holds a Residual, not a Wider'):
        decode_model(data, model=Wider())
    with pytest.raises(ContainerError, match="'Residual' is not a model of this project's zoo"):
        decode_model(data)
    other = Residual()
    other.register_buffer('extra', torch.zeros(2))
    with pytest.raises(ContainerError, match=r'holds bn1.weight \(float32, shape \[8\]\) where the '
                                             r'model has extra \(float32, shape \[2\]\): another model'):
        decode_model(data, model=other)


def test_a_tensor_the_file_cannot_hold_is_refused():
    model = Residual()
    model.temperature = model.temperature.half()
    with pytest.raises(ContainerError, match='cannot store temperature: a float16 tensor'):
        encode_model(model)


def test_resnet18_refuses_the_chain_steps_in_one_line():
    with torch.device('meta'):
        model = build_model('resnet18')
    for step in (model.prune_dead_units, model.fold_constant_units,
                 lambda: model.prune_units({'conv1': 50})):
        with pytest.raises(ValueError, match='needs a chain of layers, and ResNet18 has skip connections'):
            step()


def test_the_criteria_table_ranks_filters_by_each_criterion():
    model = trained()
    with torch.no_grad():  # three conv1 filters with the largest weights, silenced by bn1
        model.bn1.weight[:3] = 0
        model.bn1.bias[:3] = 0
        model.conv1.weight[:3] *= 10
    batches = [toy_data()[0]]
    rows = criteria_comparison(model, lambda m: float(m.conv1.weight[:3].flatten(1).any(1).sum()),
                               [62.5], batches)
    assert [row['criterion'] for row in rows] == list(CRITERIA)
    assert len({row['nonzero'] for row in rows}) == 1  # the same rate for every criterion
    kept_silent = {row['criterion']: row['accuracy'] for row in rows}
    assert kept_silent == {'weight_l1': 3, 'weight_l2': 3, 'mean_abs': 0, 'l2': 0}


def test_resnet18_through_the_three_scripts_on_cifar100(tmp_path, monkeypatch, small_cifar_binary, capsys):
    folder = small_cifar_binary(tmp_path / 'cifar-100-binary', 'cifar100')
    monkeypatch.chdir(tmp_path)
    data = ['--data-dir', folder]
    pruning.main([*data, '--model', 'resnet18', '--dataset', 'cifar100', '--epochs', '1',
                  '--re-epochs', '1', '--granularity', 'filter', '--unit-criterion', 'mean_abs',
                  '--similarity', '0.999', '--calibration-images', '4', '--rates', '{"fc": 100}'])
    model = load_model('saves/model_after_retraining.ptmodel')
    assert (model.arch, model.dataset) == ('resnet18', 'cifar100')
    for name, layer in prunable_layers(model):
        if name != 'fc':  # the default share of each conv layer's filters: whole filters, zeroed
            kept = layer.weight.flatten(1).any(1)
            assert kept.sum() == round(model.default_rates[name] / 100 * len(kept)), name
            assert torch.equal(layer.weight_mask.flatten(1).any(1), kept), name
    results = json.loads((tmp_path / 'log.pruning.json').read_text())
    assert results['config']['unit_criterion'] == 'mean_abs'
    assert set(results['rounds'][0]['similar_units']) == {n for n, _ in prunable_layers(model)} - {'fc'}
    weight_share.main([*data, '--bits', '4'])
    capsys.readouterr()
    huffman_encode.main([*data, '--pack', 'm.dcz'])
    printed = capsys.readouterr().out
    assert re.search(r'^layer4\.1\.bn2\.num_batches_tracked\s+\|\s+8 \|', printed, re.M), printed
    assert 'decoded parameters equal the encoded ones exactly' in printed
    assert 'lossless: loads back bit-exact' in printed
    assert (pipeline.load('m.dcz').arch, pipeline.load('m.dcz').dataset) == ('resnet18', 'cifar100')


def test_files_with_other_tensors_are_version_6_and_others_stay_5():
    assert encode_model(trained())[0][3] == 6
    alexnet_like = encode_model(TinyNet())[0]
    assert alexnet_like[3] == 5


def test_dtypes_the_file_cannot_hold_and_a_dataset_mix_up_are_one_clear_error():
    with pytest.raises(ContainerError, match=r'cannot store temperature: a bfloat16 tensor .*\.float\(\)'):
        encode_model(trained().to(torch.bfloat16))
    lenet = build_model('lenet5', 'mnist')
    lenet.prune_by_percentile(1)
    pipeline.share(lenet, bits=2)
    data = encode_model(lenet)[0]
    with pytest.raises(ContainerError, match=r"holds lenet5 for mnist, not for fashion-mnist: load it "
                                             r"into build_model\('lenet5', 'mnist'\)"):
        decode_model(data, model=build_model('lenet5', 'fashion-mnist'))


def test_export_refuses_resnet18_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r'--export .* needs a chain of layers, and ResNet18'):
        export_compact(build_model('resnet18'), tmp_path / 'r.pt')
