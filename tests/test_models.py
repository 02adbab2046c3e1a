"""Every model on every dataset: shapes, and one prune / share / encode pass on random weights."""
import json
import os

import numpy as np
import pytest
import torch

import util
from net.checkpoint import CheckpointError, load_model, save_model
from net.container import decode_model, encode_model, load_compressed, strip_dead_units
from net.huffmancoding import huffman_decode_model, huffman_encode_model
from net.models import DATASETS, MODELS, AlexNet, LeNet5, LeNet300, build_model, check_model
from net.prune import state_without_masks
from net.quantization import apply_weight_sharing
from tests.conftest import DATA_DIR, ROOT

# The paper's parameter counts (weights + biases) for its own datasets.
PARAMETERS = {('alexnet', 'cifar10'): 20_344_650, ('lenet300', 'mnist'): 266_610,
              ('lenet5', 'mnist'): 431_080, ('vgg16', 'cifar10'): 33_638_218,
              # ResNet-18's CIFAR variant as in He et al. and kuangliu/pytorch-cifar
              ('resnet18', 'cifar10'): 11_173_962, ('resnet18', 'cifar100'): 11_220_132}


@pytest.mark.parametrize('arch', sorted(MODELS))
@pytest.mark.parametrize('dataset', sorted(DATASETS))
def test_every_model_fits_every_dataset(arch, dataset):
    with torch.device('meta'):
        model = build_model(arch, dataset)
    channels, size, classes = DATASETS[dataset]
    assert model.arch == arch and model.dataset == dataset
    assert model.input_size == (32 if arch in ('alexnet', 'vgg16') else size)
    out = model(torch.zeros(2, channels, model.input_size, model.input_size, device='meta'))
    assert out.shape == (2, classes)
    assert sorted(model.default_rates) == sorted(name for name, _ in model.prunable_layers())
    if (arch, dataset) in PARAMETERS:
        assert sum(p.numel() for p in model.parameters()) == PARAMETERS[(arch, dataset)]


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match=r"unknown model 'resnet'; use one of \['alexnet'"):
        build_model('resnet')
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        build_model('lenet5', 'svhn')
    with pytest.raises(ValueError, match='alexnet takes 32x32 images, not 28x28'):
        MODELS['alexnet'](image_size=28)


def test_a_mix_up_is_named_with_the_fix():
    model = build_model('lenet5', 'fashion-mnist')
    check_model(model, 'm.ptmodel', 'lenet5', None)
    with pytest.raises(ValueError, match='m.ptmodel holds lenet5 for fashion-mnist, not lenet5 for '
                                         'mnist: pass --model lenet5 --dataset fashion-mnist'):
        check_model(model, 'm.ptmodel', None, 'mnist')


@pytest.mark.parametrize('arch, dataset', [('lenet300', 'fashion-mnist'), ('lenet5', 'mnist'),
                                           ('lenet5', 'cifar100'), ('alexnet', 'mnist'),
                                           ('resnet18', 'cifar100')])
def test_checkpoints_record_model_and_dataset(tmp_path, arch, dataset):
    model = build_model(arch, dataset)
    save_model(model, tmp_path / 'm.ptmodel')
    loaded = load_model(tmp_path / 'm.ptmodel', arch=arch, dataset=dataset)
    assert (loaded.arch, loaded.dataset) == (arch, dataset)
    other = 'cifar10' if dataset != 'cifar10' else 'mnist'
    with pytest.raises(ValueError, match=f'holds {arch} for {dataset}, not {arch} for {other}'):
        load_model(tmp_path / 'm.ptmodel', dataset=other)


def test_a_checkpoint_whose_shapes_contradict_its_dataset_is_refused(tmp_path):
    model = build_model('lenet300', 'mnist')
    model.dataset = 'cifar100'  # claims 3x32x32 inputs and 100 classes
    save_model(model, tmp_path / 'm.ptmodel')
    with pytest.raises(CheckpointError, match='is not lenet300 for cifar100: fc1.weight has shape'):
        load_model(tmp_path / 'm.ptmodel')


def test_an_old_alexnet_checkpoint_loads_as_cifar10(tmp_path):
    model = build_model()
    del model.dataset  # as pickled before models recorded their dataset
    save_model(model, tmp_path / 'old.ptmodel')
    loaded = load_model(tmp_path / 'old.ptmodel', arch='alexnet', dataset='cifar10')
    assert 'dataset' not in vars(loaded) and loaded.dataset == 'cifar10'


def test_the_shipped_model_loads_as_alexnet_for_cifar10():
    model = load_compressed(os.path.join(ROOT, 'models', 'alexnet-cifar10.dcz'))
    assert (model.arch, model.dataset) == ('alexnet', 'cifar10')
    assert model.fc3.weight.shape == (10, 4096) and model.conv1.weight.shape == (64, 3, 11, 11)


def test_the_shipped_models_json_describes_its_file():
    path = os.path.join(ROOT, 'models', 'alexnet-cifar10.dcz')
    with open(path.replace('.dcz', '.json')) as f:
        card = json.load(f)
    model = load_compressed(path)
    assert card['bytes'] == os.path.getsize(path)
    assert card['ratio'] == pytest.approx(card['dense_float32_bytes'] / card['bytes'])
    assert card['dense_float32_bytes'] == 4 * sum(p.numel() for p in model.parameters())
    assert {name: int(layer.weight.count_nonzero()) for name, layer in model.prunable_layers()} == {
        name: layer['nonzeros'] for name, layer in card['layers'].items()}


@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason='../shared/data/cifar-10-batches-bin missing')
def test_the_shipped_model_scores_as_graders_score_it(tmp_path, monkeypatch):
    """HOMEWORK.md, "Grading", on the submission made from the shipped file (a whole
    pickled model, loaded as graders load it): zeros in the conv layers, exactly 33 distinct
    values in each, and the homework format's encode then decode (default arguments, a
    fresh AlexNet) keeping the official-test accuracy that the model's JSON states."""
    path = os.path.join(ROOT, 'models', 'alexnet-cifar10.dcz')
    with open(path.replace('.dcz', '.json')) as f:
        card = json.load(f)
    save_model(load_compressed(path), tmp_path / 'model_after_weight_sharing.ptmodel')
    model = torch.load(tmp_path / 'model_after_weight_sharing.ptmodel', weights_only=False)
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert any((w == 0).any() for w in convs)
    assert [len(np.unique(w.detach().numpy())) for w in convs] == [33] * 5
    assert 'official CIFAR-10, binary version' in card['measured_on']
    accuracy = util.test(model, use_cuda=False, data_dir=DATA_DIR)
    assert accuracy == card['accuracy']
    monkeypatch.chdir(tmp_path)
    huffman_encode_model(model)
    fresh = AlexNet()
    assert not list(fresh.buffers())  # as the graders' own: plain layers, no masks
    huffman_decode_model(fresh)
    assert util.test(fresh, use_cuda=False, data_dir=DATA_DIR) == accuracy


def test_lenets_built_directly_are_mnist_models():
    for cls in (LeNet300, LeNet5):
        assert check_model(cls(), 'x', cls.arch, 'mnist') is None
        assert cls().prune_by_percentile() is None  # their own default rates


def random_pruned_shared(arch, dataset, keep):
    """A random model, every layer pruned to `keep` x its paper rate, 5-bit weight-shared."""
    torch.manual_seed(0)
    model = build_model(arch, dataset)
    model.prune_by_percentile({name: rate * keep for name, rate in model.default_rates.items()})
    apply_weight_sharing(model, 5)
    for module in model.modules():  # batch-norm statistics as training leaves them
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2)
            module.num_batches_tracked.fill_(1955)
    return model



def assert_same_state(got, expected):
    """Every tensor of expected's state but the masks is got's, exactly."""
    got, expected = state_without_masks(got), state_without_masks(expected)
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


# VGG-16 keeps a tenth of its paper rates: the same code paths at a tenth of the k-means work.
@pytest.mark.parametrize('arch, dataset, keep', [
    ('lenet300', 'fashion-mnist', 1), ('lenet5', 'mnist', 1), ('lenet5', 'cifar100', 1),
    ('alexnet', 'mnist', 0.1), ('vgg16', 'cifar10', 0.1), ('resnet18', 'cifar100', 0.1)])
def test_prune_share_and_both_encodings_round_trip(tmp_path, arch, dataset, keep):
    model = random_pruned_shared(arch, dataset, keep)
    for name, layer in model.prunable_layers():
        kept = 100 * int(layer.weight.count_nonzero()) / layer.weight.numel()
        assert kept == pytest.approx(model.default_rates[name] * keep, abs=0.05), name
        assert layer.weight.unique().numel() <= 2 ** 5 + 1, name

    huffman_encode_model(model, str(tmp_path / 'enc'), None)
    decoded = build_model(arch, dataset)
    huffman_decode_model(decoded, str(tmp_path / 'enc'))
    assert_same_state(decoded, model)

    loaded = decode_model(encode_model(model)[0])
    assert (loaded.arch, loaded.dataset) == (arch, dataset)
    assert_same_state(loaded, strip_dead_units(model))
    model.eval(), loaded.eval()
    size = model.input_size
    x = torch.randn(4, DATASETS[dataset].channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
