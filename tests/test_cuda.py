"""The GPU box: the pipeline on CUDA. Most tests run on every device here (the CPU always;
CUDA, marked `cuda`, where there is one: `pytest -m cuda` runs those alone), so CI checks
the tests themselves and a GPU machine checks CUDA; the scripts run on CUDA only (the CPU's
run is tests/test_scripts.py's), and the GPU check on the CPU only (a GPU machine runs it
itself)."""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch

import pruning
import util
from net.checkpoint import load_model, save_model
from net.compact import compact_copy
from net.container import load_compressed, save_compressed, strip_dead_units
from net.huffmancoding import huffman_decode_model, huffman_encode_model
from net.models import AlexNet
from net.quantization import SharedWeights, apply_weight_sharing
from recipe import settings, training
from recipe.training import Phase, fit
from tests.conftest import DATA_DIR, ROOT
from tests.test_compact import ChainNet, cut

NO_CUDA = not torch.cuda.is_available()
CUDA = pytest.param('cuda', marks=[pytest.mark.cuda, pytest.mark.skipif(NO_CUDA, reason='needs CUDA')])
DEVICES = ['cpu', CUDA]
NEEDS_DATA = pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason=f'{DATA_DIR} missing')


def pruned_alexnet(device, bits=None):
    torch.manual_seed(0)
    model = AlexNet()
    model.prune_by_percentile({'conv1': 50, 'conv2': 20, 'conv3': 20, 'conv4': 20, 'conv5': 20,
                               'fc1': 2, 'fc2': 2, 'fc3': 20})  # percent kept
    if bits:
        apply_weight_sharing(model, bits)
    return model.to(device)


def on_device(data, device):
    return tuple(tensor.to(device) for tensor in data)


def retraining(*flags):
    return settings.retraining(pruning.parse_args(['--batch-size', '16', '--re-lr', '0.01', *flags]))


def cpu_state(model):
    return {name: tensor.cpu() for name, tensor in model.state_dict().items()}


def parameters(model):
    return {name: p.detach().cpu() for name, p in model.named_parameters()}


def same_parameters(a, b):
    a, b = parameters(a), parameters(b)
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.cuda
@pytest.mark.skipif(NO_CUDA, reason='needs CUDA')
@NEEDS_DATA
def test_the_three_scripts_run_end_to_end_on_cuda(tmp_path):
    data = ['--data-dir', DATA_DIR, '--subset', '1000']
    for script, *flags in (('pruning.py', '--epochs', '1', '--re-epochs', '1', '--bf16'),
                           ('weight_share.py', '--quantize-epochs', '1'),
                           ('huffman_encode.py', '--pack', 'saves/model.dcz')):
        result = subprocess.run([sys.executable, os.path.join(ROOT, script), *data, *flags],
                                cwd=tmp_path, capture_output=True, text=True, timeout=600,
                                env=os.environ | {'PYTHONPATH': ROOT})
        assert result.returncode == 0, f'{script}: {result.stderr}'
        assert '"device": "cuda"' in result.stdout, script
    assert 'decoded parameters equal the encoded ones exactly' in result.stdout
    assert 'lossless: loads back bit-exact' in result.stdout
    record = json.loads((tmp_path / 'log.huffman_encode.json').read_text())
    assert record['accuracy_before'] == record['accuracy_after_decoding'] == record['pack']['accuracy']


@pytest.mark.parametrize('device', DEVICES)
def test_files_saved_from_a_model_on_device_load_on_a_machine_without_cuda(tmp_path, device):
    model = pruned_alexnet(device, bits=4)
    save_model(model, tmp_path / 'model.ptmodel')
    save_compressed(model, tmp_path / 'model.dcz')
    torch.save(cpu_state(model), tmp_path / 'expected.pt')
    torch.save(parameters(strip_dead_units(model)), tmp_path / 'packed.pt')  # what a .dcz keeps
    # A fresh process that sees no GPU, loading as graders do and as the scripts do.
    check = f'''
import torch
from net.checkpoint import load_model
from net.container import load_compressed
expected = torch.load({str(tmp_path / 'expected.pt')!r})
graders = torch.load({str(tmp_path / 'model.ptmodel')!r}, weights_only=False)
for model in (graders, load_model({str(tmp_path / 'model.ptmodel')!r})):
    assert all(torch.equal(t, expected[k]) for k, t in model.state_dict().items())
packed = torch.load({str(tmp_path / 'packed.pt')!r})
loaded = load_compressed({str(tmp_path / 'model.dcz')!r})
assert all(torch.equal(t, packed[k]) for k, t in loaded.named_parameters())
print('loaded')
'''
    result = subprocess.run([sys.executable, '-c', check], cwd=tmp_path, capture_output=True, text=True,
                            env=os.environ | {'PYTHONPATH': ROOT, 'CUDA_VISIBLE_DEVICES': ''})
    assert result.stdout.strip() == 'loaded', result.stderr


@pytest.mark.parametrize('device', DEVICES)
def test_files_saved_on_the_cpu_load_onto_device(tmp_path, device):
    model = pruned_alexnet('cpu', bits=4)
    save_model(model, tmp_path / 'model.ptmodel')
    save_compressed(model, tmp_path / 'model.dcz')
    for loaded, expected in ((load_model(tmp_path / 'model.ptmodel', device), model),
                             (load_compressed(tmp_path / 'model.dcz', device), strip_dead_units(model))):
        assert {t.device.type for t in loaded.state_dict().values()} == {device}
        assert same_parameters(loaded, expected)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('optimizer', ['adam', 'sgd'])
def test_pruned_weights_stay_exactly_zero_through_training_on(tiny, synthetic_data, device, optimizer):
    tiny.prune_by_percentile(60)
    tiny.to(device)
    zeros = {name: layer.weight == 0 for name, layer in tiny.prunable_layers()}
    before = {name: layer.weight.clone() for name, layer in tiny.prunable_layers()}
    training.train(tiny, on_device(synthetic_data, device),
                   retraining('--re-optimizer', optimizer, '--re-weight-decay', '0.01'), 2, 'retrain',
                   torch.Generator().manual_seed(0), [])
    for name, layer in tiny.prunable_layers():
        assert layer.weight.device.type == device
        assert (layer.weight[zeros[name]] == 0).all(), name
        assert not torch.equal(layer.weight[~zeros[name]], before[name][~zeros[name]]), name


@pytest.mark.cuda
@pytest.mark.skipif(NO_CUDA, reason='needs CUDA')
def test_the_training_step_never_waits_for_the_gpu(tiny, synthetic_data, monkeypatch):
    tiny.prune_by_percentile(60)
    tiny.to('cuda')
    data = on_device(synthetic_data, 'cuda')
    phase = Phase('t', 2, list(tiny.parameters()), tiny.mask_gradients, tiny.apply_masks)
    fit(tiny, data, retraining(), phase, torch.Generator().manual_seed(0), [])  # warm-up
    # The reads at the log interval and the test pass are fit's only waits: stubbed out, so
    # that any other one in the step raises.
    monkeypatch.setattr(training.RunningSums, 'read', lambda self: (0.0, 0.0))
    monkeypatch.setattr(training.datasets, 'evaluate', lambda *args: (0.0, 0.0))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        fit(tiny, data, retraining(), phase, torch.Generator().manual_seed(0), [])
    finally:
        torch.cuda.set_sync_debug_mode('default')


@pytest.mark.parametrize('device', DEVICES)
def test_weight_sharing_and_trained_quantization_on(tiny, synthetic_data, device):
    tiny.prune_by_percentile(50)
    tiny.to(device)
    zeros = {name: layer.weight == 0 for name, layer in tiny.prunable_layers()}
    apply_weight_sharing(tiny, 3)
    shared = {name: layer.weight.clone() for name, layer in tiny.prunable_layers()}
    centroids = SharedWeights(tiny)
    history = []
    fit(tiny, on_device(synthetic_data, device), settings.quantization(weight_share_args()),
        Phase('quantize', 1, centroids.parameters(), centroids.accumulate_gradients, centroids.write_back),
        torch.Generator().manual_seed(0), history)
    for name, layer in tiny.prunable_layers():
        assert layer.weight.device.type == device
        assert len(layer.weight.unique()) <= 2 ** 3 + 1, name
        assert torch.equal(layer.weight == 0, zeros[name]), name
        assert not torch.equal(layer.weight, shared[name]), name  # the centroids moved
    assert len(history) == 1


def weight_share_args():
    import weight_share
    return weight_share.parse_args(['--batch-size', '16'])


@pytest.mark.parametrize('device', DEVICES)
@NEEDS_DATA
def test_huffman_round_trip_of_a_model_on(tmp_path, device):
    model = pruned_alexnet(device, bits=5)
    use_cuda = device == 'cuda'
    before = util.test(model, use_cuda, DATA_DIR, subset=500)
    huffman_encode_model(model, str(tmp_path / 'encodings'), log_file=None)
    decoded = AlexNet().to(device)
    huffman_decode_model(decoded, str(tmp_path / 'encodings'))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), decoded.parameters(), strict=True))
    assert util.test(decoded, use_cuda, DATA_DIR, subset=500) == before


@pytest.mark.parametrize('device', DEVICES)
def test_bf16_trains_on(tiny, synthetic_data, device):
    if device == 'cuda' and not torch.cuda.is_bf16_supported():
        pytest.skip('this GPU has no bfloat16')
    tiny.to(device)
    dtypes = []
    tiny.fc1.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    history = []
    training.train(tiny, on_device(synthetic_data, device), retraining('--bf16'), 1, 'bf16',
                   torch.Generator().manual_seed(0), history)
    assert dtypes[:4] == [torch.bfloat16] * 4 and dtypes[-1] == torch.float32  # 4 steps, then the test
    assert all(p.dtype == torch.float32 and p.device.type == device for p in tiny.parameters())
    assert torch.isfinite(torch.tensor(history[0]['train_loss']))


@pytest.mark.parametrize('device', DEVICES)
def test_compact_training_on_device_gives_the_full_models_function(synthetic_data, device, monkeypatch):
    # Compared at full float32: TF32 convolutions (cuDNN's default) round differently per shape.
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    torch.manual_seed(0)
    full = ChainNet()
    full.prune_by_percentile(60)
    cut(full.fc2, inputs=[0, 3, 5])
    full.prune_dead_units()
    compact = copy.deepcopy(full)
    data = on_device(synthetic_data, device)
    for model, flags in ((full, []), (compact, ['--compact-training'])):
        model.to(device)
        training.train(model, data, retraining(*flags), 2, 'retrain', torch.Generator().manual_seed(0), [])
    assert compact_copy(compact).model.fc1.out_features < full.fc1.out_features
    x = data[2].float() / 255
    with torch.no_grad():
        assert torch.allclose(full(x), compact(x), atol=1e-4)


@NEEDS_DATA
def test_the_gpu_check_runs_and_reports_every_part(tmp_path):
    # On the CPU alone (CUDA hidden: the check says so), a small recipe for the real one.
    (tmp_path / 'recipe.json').write_text(json.dumps({
        'pruning': {'epochs': 1, 're_epochs': 1, 'subset': 300},
        'weight_share': {'quantize_epochs': 1, 'subset': 300},
        'huffman_encode': {'pack': 'saves/model.dcz', 'subset': 300}}))
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'gpu_check.py'), '--data-dir',
                             DATA_DIR, '--recipe', 'recipe.json', '--out', 'check', '--skip', 'tests'],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env=os.environ | {'PYTHONPATH': ROOT, 'CUDA_VISIBLE_DEVICES': ''})
    assert result.returncode == 0, result.stderr
    assert 'no CUDA device: CPU figures only' in result.stdout
    report = json.loads((tmp_path / 'check' / 'gpu_check.json').read_text())
    assert report['device']['torch'] == torch.__version__
    rows = report['throughput']
    assert len(rows) == 2 and all(row[precision]['cpu'] > 0 for row in rows.values()
                                  for precision in ('fp32', 'bf16'))
    recipe = report['recipe']
    assert set(recipe['seconds']) == {'pruning.py', 'weight_share.py', 'huffman_encode.py'}
    assert recipe['accuracy_after_decoding'] == recipe['dcz']['accuracy'] and recipe['ratio'] > 1
    assert 'ended by the last round of the schedule' in result.stdout
