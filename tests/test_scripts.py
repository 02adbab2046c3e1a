"""The three scripts as users run them: clear errors, and one real end-to-end run."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

import util
from net.checkpoint import save_model
from net.models import AlexNet, build_model
from tests.conftest import DATA_DIR, ROOT, fake_mnist_dir


def run(script, *args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env=os.environ | {'PYTHONPATH': ROOT})


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_checkpoint_names_the_script_to_run(tmp_path):
    assert_one_line_error(run('weight_share.py', cwd=tmp_path), 'saves/model_after_retraining.ptmodel',
                          'run `python pruning.py` first')
    assert_one_line_error(run('huffman_encode.py', cwd=tmp_path), 'run `python weight_share.py` first')
    assert_one_line_error(run('pruning.py', '--from-initial', cwd=tmp_path),
                          'saves/initial_model.ptmodel')


def test_wrong_architecture_checkpoints_are_refused(tmp_path):
    save_model(AlexNet(num_classes=100), tmp_path / 'wide.ptmodel')
    assert_one_line_error(run('weight_share.py', '--load-model-path', 'wide.ptmodel', cwd=tmp_path),
                          'not the homework AlexNet', 'fc3.weight')
    torch.save(AlexNet().state_dict(), tmp_path / 'state.ptmodel')
    assert_one_line_error(run('huffman_encode.py', '--load-model-path', 'state.ptmodel', cwd=tmp_path),
                          'holds a OrderedDict, not a whole model of this project')
    (tmp_path / 'junk.ptmodel').write_bytes(b'not a checkpoint')
    assert_one_line_error(run('weight_share.py', '--load-model-path', 'junk.ptmodel', cwd=tmp_path),
                          'cannot read junk.ptmodel')


def test_a_checkpoint_for_other_model_or_data_is_refused(tmp_path):
    save_model(build_model('lenet300', 'fashion-mnist'), tmp_path / 'lenet.ptmodel')
    fix = '--model lenet300 --dataset fashion-mnist'
    assert_one_line_error(run('weight_share.py', '--load-model-path', 'lenet.ptmodel', '--model',
                              'alexnet', cwd=tmp_path),
                          'lenet.ptmodel holds lenet300 for fashion-mnist, not alexnet for '
                          'fashion-mnist', fix)
    assert_one_line_error(run('huffman_encode.py', '--load-model-path', 'lenet.ptmodel', '--dataset',
                              'mnist', cwd=tmp_path), 'not lenet300 for mnist', fix)
    assert_one_line_error(run('pruning.py', '--from-initial', '--load-model-path', 'lenet.ptmodel',
                              cwd=tmp_path), 'not alexnet for cifar10', fix)


def test_hostile_pickle_is_not_executed(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, (f'touch {tmp_path / "pwned"}',))
    torch.save(Exploit(), tmp_path / 'evil.ptmodel')
    assert_one_line_error(run('weight_share.py', '--load-model-path', 'evil.ptmodel', cwd=tmp_path),
                          'refusing to load', f'{os.system.__module__}.system')
    assert not (tmp_path / 'pwned').exists()


@pytest.mark.parametrize('rates, fragment', [
    ('{"fc9": 5}', "unknown layer name(s) ['fc9']"),
    ('{"fc1": 150}', 'between 0 and 100'),
    ('{"fc1": 0}', '--rates: fc1 would keep no weights, and the network would ignore its input'),
    ('{"fc1": 5', 'not valid JSON'),
])
def test_bad_rates_flag(tmp_path, rates, fragment):
    assert_one_line_error(run('pruning.py', '--rates', rates, cwd=tmp_path), fragment)


def test_container_flag_errors(tmp_path):
    assert_one_line_error(run('huffman_encode.py', '--unpack', 'none.dcz', cwd=tmp_path),
                          'none.dcz not found', '--pack')
    (tmp_path / 'bad.dcz').write_bytes(b'DCZ\x01garbage')
    assert_one_line_error(run('huffman_encode.py', '--unpack', 'bad.dcz', cwd=tmp_path), 'bad.dcz')
    assert_one_line_error(run('huffman_encode.py', '--pack-float16', cwd=tmp_path), 'add --pack PATH')


@pytest.mark.parametrize('bits', ['0', '17'])
def test_bad_bits_flag(tmp_path, bits):
    assert_one_line_error(run('weight_share.py', '--bits', bits, cwd=tmp_path), 'from 1 to 16')


@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason='../shared/data/cifar-10-batches-bin missing')
def test_three_scripts_end_to_end_on_real_images(tmp_path):
    data = ['--data-dir', DATA_DIR, '--subset', '600']
    result = run('pruning.py', *data, '--epochs', '2', '--re-epochs', '1', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert os.path.isfile(tmp_path / 'saves/initial_model.ptmodel')
    assert os.path.isfile(tmp_path / 'saves/model_after_retraining.ptmodel')
    assert 'Accuracy:' in result.stdout and '--- After retraining ---' in result.stdout
    pruning = json.loads((tmp_path / 'log.pruning.json').read_text())
    assert abs(pruning['layers']['fc2.weight']['nonzero'] - 0.09 * 4096 * 4096) <= 2
    total = pruning['report'][-1]
    assert total['layer'] == 'total' and total['macs_sparse'] < total['macs_dense']
    assert '--- What pruning saves (one 32x32 input) ---' in result.stdout

    # Prune the same initial model again, by std this time, without retraining it.
    again = run('pruning.py', *data, '--from-initial', '--prune', 'std', '--sensitivity', '1',
                '--re-epochs', '0', '--save-model-path', 'saves/std.ptmodel', cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert 'initial epoch' not in again.stdout  # no initial training
    std_pruned = torch.load(tmp_path / 'saves/std.ptmodel', weights_only=False)
    initial = torch.load(tmp_path / 'saves/initial_model.ptmodel', weights_only=False)
    for (name, w), w0 in zip(std_pruned.named_parameters(), initial.parameters(), strict=True):
        if w.dim() > 1:
            kept = w0.abs() >= w0.std() * 1
            assert torch.equal(w != 0, kept), name

    result = run('weight_share.py', *data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shared = torch.load(tmp_path / 'saves/model_after_weight_sharing.ptmodel', weights_only=False)
    for name, param in shared.named_parameters():
        if param.dim() > 1:
            assert len(param.unique()) <= 33, name

    result = run('huffman_encode.py', *data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    total = re.search(r'^total\s+\|\s+81378600 \|\s+(\d+) \|\s+([\d.]+)x', result.stdout, re.M)
    assert total, result.stdout
    on_disk = sum(os.path.getsize(tmp_path / 'encodings' / f) for f in os.listdir(tmp_path / 'encodings')
                  if f != 'manifest.json')
    assert int(total.group(1)) == on_disk
    accuracies = re.findall(r'Accuracy: \d+/600 \(([\d.]+)%\)', result.stdout)
    assert len(accuracies) == 2 and accuracies[0] == accuracies[1]
    assert 'decoded parameters equal the encoded ones exactly' in result.stdout
    log = (tmp_path / 'log.txt').read_text()
    for key in ('initial_accuracy', 'accuracy_after_pruning', 'accuracy_after_retraining',
                'accuracy_after_weight_sharing', 'accuracy_after_decoding'):
        assert key in log


@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason='../shared/data/cifar-10-batches-bin missing')
def test_recipe_tools_end_to_end_on_real_images(tmp_path):
    data = ['--data-dir', DATA_DIR, '--subset', '300']
    rates = {'conv1': 50, 'conv2': 10, 'conv3': 5, 'conv4': 5, 'conv5': 5, 'fc1': 1, 'fc2': 0.1,
             'fc3': 10}
    (tmp_path / 'recipe.json').write_text(json.dumps({
        'pruning': {'epochs': 1, 'prune_rounds': 2, 'round_epochs': 1, 're_epochs': 1,
                    'prune_dead_units': True, 'round_report': True, 'rates': rates},
        'weight_share': {'bits': {'fc1': 2, 'fc2': 2, 'fc3': 3}, 'init': 'density',
                         'quantize_epochs': 1}}))
    recipe = ['--config', 'recipe.json', *data]
    result = run('pruning.py', *recipe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '--- After pruning (round 2/2) ---' in result.stdout
    rounds = json.loads((tmp_path / 'log.pruning.json').read_text())['rounds']
    assert len(rounds) == 2 and rounds[0]['alive'] > rounds[1]['alive']
    assert all(r['shared_ratio'] > 1 for r in rounds)
    model = torch.load(tmp_path / 'saves/model_after_retraining.ptmodel', weights_only=False)
    for name, layer in model.prunable_layers():
        # At the rate, give or take a tie: percentile pruning keeps every weight at the
        # threshold, and float32 magnitudes can repeat (conv4 here keeps one over 5%).
        assert int(layer.weight.count_nonzero()) <= rates[name] / 100 * layer.weight.numel() + 2, name
    # No dead units are left: every fc1 unit with inputs is read by fc2, and so on.
    assert ((model.fc1.weight != 0).any(1) <= (model.fc2.weight != 0).any(0)).all()
    assert ((model.fc2.weight != 0).any(1) <= (model.fc3.weight != 0).any(0)).all()

    result = run('weight_share.py', *recipe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '--- Accuracy after trained quantization ---' in result.stdout
    shared = torch.load(tmp_path / 'saves/model_after_weight_sharing.ptmodel', weights_only=False)
    for name, layer in shared.prunable_layers():
        limit = {'fc1': 4, 'fc2': 4, 'fc3': 8}.get(name, 32)
        assert len(layer.weight[layer.weight != 0].unique()) <= limit, name
        assert torch.equal(layer.weight != 0, dict(model.prunable_layers())[name].weight != 0)
    result = run('huffman_encode.py', *recipe, '--pack', 'model.dcz', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    encoded = json.loads((tmp_path / 'log.huffman_encode.json').read_text())
    ratio, packed = encoded['ratio'], encoded['pack']
    assert packed['bytes'] == os.path.getsize(tmp_path / 'model.dcz')
    assert packed['accuracy'] == encoded['accuracy_after_decoding']
    assert packed['ratio'] > ratio and 'loads back bit-exact' in result.stdout

    described = json.loads((tmp_path / 'model.json').read_text())
    assert described['bytes'] == packed['bytes'] and described['homework_format_ratio'] == ratio
    assert described['command'].startswith('python huffman_encode.py --config recipe.json')
    unpacked = run('huffman_encode.py', '--unpack', 'model.dcz', *data, cwd=tmp_path)
    assert unpacked.returncode == 0, unpacked.stderr
    assert f"model.dcz: accuracy {packed['accuracy']:.2f}%" in unpacked.stdout
    lossy = run('huffman_encode.py', *recipe, '--pack', 'lossy.dcz', '--pack-float16',
                '--pack-bias-bits', '3', cwd=tmp_path)
    assert lossy.returncode == 0, lossy.stderr
    assert os.path.getsize(tmp_path / 'lossy.dcz') < packed['bytes']
    assert 'lossy: float16 values, 3-bit shared biases' in lossy.stdout

    tables = run('docs/tables.py', str(tmp_path), cwd=tmp_path)
    assert tables.returncode == 0, tables.stderr
    assert '| after trained quantization |' in tables.stdout
    assert f'| {ratio:.2f}x |' in tables.stdout  # the total row of the per-layer table
    assert re.search(r'^\| 2 \| [\d,]+ \| ', tables.stdout, re.M)  # the rounds table

    # --target-ratio ends the rounds at the first cut that reaches the ratio.
    result = run('pruning.py', *data, '--from-initial', '--prune-rounds', '3', '--rates',
                 json.dumps({name: rate / 10 for name, rate in rates.items()}),
                 '--round-epochs', '0', '--re-epochs', '0', '--target-ratio', '20',
                 '--save-model-path', 'saves/target.ptmodel', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'target ratio 20.0x reached: this is the last round' in result.stdout
    rounds = json.loads((tmp_path / 'log.pruning.json').read_text())['rounds']
    assert len(rounds) == 1 and rounds[0]['ratio_after_pruning'] >= 20

    result = run('analyze.py', 'sensitivity', '--kept', '50,5', '--out', 'sens', *data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / 'sens.csv').read_text().splitlines()
    assert lines[0] == 'layer,kept_percent,nonzero,accuracy' and len(lines) == 1 + 8 * 2
    result = run('analyze.py', 'distribution', '--layer', 'fc3', '--out', 'dist', *data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'dist.png').is_file()


def test_three_scripts_on_lenet300_and_an_idx_folder(tmp_path):
    data = ['--data-dir', fake_mnist_dir(tmp_path, n_train=300, n_test=100)]
    result = run('pruning.py', *data, '--model', 'lenet300', '--dataset', 'fashion-mnist',
                 '--epochs', '1', '--re-epochs', '1', '--prune-rounds', '2', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '--- What pruning saves (one 28x28 input) ---' in result.stdout
    layers = json.loads((tmp_path / 'log.pruning.json').read_text())['layers']
    assert abs(layers['fc1.weight']['nonzero'] - 0.08 * 784 * 300) <= 1  # the paper's rate

    result = run('weight_share.py', *data, '--bits', '{"fc1": 3}', cwd=tmp_path)  # model from the checkpoint
    assert result.returncode == 0, result.stderr
    shared = torch.load(tmp_path / 'saves/model_after_weight_sharing.ptmodel', weights_only=False)
    assert (shared.arch, shared.dataset) == ('lenet300', 'fashion-mnist')
    assert len(shared.fc1.weight.unique()) <= 9

    result = run('huffman_encode.py', *data, '--pack', 'm.dcz', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r'^total\s+\|\s+1066440 \|', result.stdout, re.M), result.stdout
    assert 'decoded parameters equal the encoded ones exactly' in result.stdout
    assert 'lossless: loads back bit-exact' in result.stdout
    described = json.loads((tmp_path / 'm.json').read_text())
    assert (described['model'], described['dataset']) == ('lenet300', 'fashion-mnist')
    assert_one_line_error(run('huffman_encode.py', *data, '--unpack', 'm.dcz', '--model', 'lenet5',
                              cwd=tmp_path), 'm.dcz holds lenet300 for fashion-mnist, not lenet5')


# ---------------------------------------------------------------- output paths, checked first
def files_in(tmp_path):
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob('*'))


@pytest.mark.parametrize('script, argv, message', [
    ('pruning', ['--log', 'folder'], '--log folder is a folder; name a file'),
    ('pruning', ['--save-model-path', 'folder'], '--save-model-path folder is a folder; name a file'),
    ('pruning', ['--load-model-path', 'file.txt/initial.ptmodel'],
     '--load-model-path file.txt/initial.ptmodel: {tmp}/file.txt is a file, not a folder'),
    ('weight_share', ['--save-model-path', 'folder'], '--save-model-path folder is a folder'),
    ('weight_share', ['--log', 'file.txt/log.txt'], 'file.txt is a file, not a folder'),
    ('huffman_encode', ['--out', 'file.txt'], 'file.txt is a file, not a folder for the encodings'),
    ('huffman_encode', ['--pack', 'folder'], '--pack folder is a folder; name a file'),
    ('huffman_encode', ['--out', 'folder'], 'folder holds keep.me, which huffman_encode_model did '
                                            'not write'),
    ('huffman_encode', ['--out', 'enc', '--pack', 'enc/model.dcz'],
     '--pack enc/model.dcz is inside --out enc, which each run replaces whole'),
])
def test_unwritable_outputs_are_refused_before_any_work(tmp_path, monkeypatch, capsys, script, argv,
                                                        message):
    """Each is refused at once (no checkpoint exists, no data is read), deleting nothing."""
    import importlib
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'folder').mkdir()
    (tmp_path / 'folder' / 'keep.me').write_text('x')
    (tmp_path / 'file.txt').write_text('x')
    before = files_in(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(script).main([*argv, '--data-dir', 'missing'])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and message.format(tmp=tmp_path) in err, err
    assert err.count('\n') == 1, err
    assert files_in(tmp_path) == before  # not even a log line


def test_a_log_in_a_missing_folder_is_created(tmp_path):
    util.log('one line', str(tmp_path / 'logs' / 'run' / 'log.txt'))
    assert (tmp_path / 'logs' / 'run' / 'log.txt').read_text() == 'one line\n'
