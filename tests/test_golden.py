"""The golden run: the three scripts, a 3-round recipe, 2,000 official CIFAR-10 images. A
refactor must leave every checkpoint, encoding and .dcz byte and every printed line as
recorded in tests/fixtures/golden.json, which holds one record per machine kind (floats sum
differently on other CPUs). After a deliberate change of behaviour, regenerate it with
`python -m tests.test_golden` and say why in the commit; on a new kind of machine, run that at
the recorded commit to add its record. A record may name in 'not_recorded' the files and
scripts' lines that such a change altered when no machine of its kind was at hand (the
.dcz format 5 on the AMD record): the rest of it still holds there."""
import hashlib
import json
import os
import platform
import re
import subprocess
import sys

import numpy as np
import pytest
import sklearn
import torch

from tests.conftest import DATA_DIR, ROOT

GOLDEN = os.path.join(ROOT, 'tests', 'fixtures', 'golden.json')
# Small enough to run in about two minutes, wide enough to pass through unit pruning, spans, a
# round's own settings, the accuracy floor (where round 2 falls under it, as on the AMD
# record: back to round 1; tests/test_rounds.py covers it everywhere),
# bf16, compact retraining, per-layer bits, trained quantization and the recipe's --pack.
RECIPE = {
    'pruning': {
        'epochs': 3, 'optimizer': 'sgd', 'lr': 0.02, 'batch_size': 32,
        'prune_rounds': 3, 'round_epochs': [1], 're_epochs': 1, 're_lr': 0.0005,
        'rates': {'conv1': 50, 'conv2': 20, 'conv3': 10, 'conv4': 10, 'conv5': 10,
                  'fc1': 10, 'fc2': 5, 'fc3': 50},
        'round_spans': {'fc1': 0.67, 'fc2': 0.34}, 'unit_rates': {'fc1': 50, 'fc2': 50},
        'round_settings': {'2': {'re_augment': 'flip', 're_lr': 0.001}},
        'min_accuracy': 12, 'prune_dead_units': True, 'fold_constant_units': True,
        'bf16': True, 'compact_training': True, 'no_cuda': True},
    'weight_share': {'bits': {'fc3': 4}, 'quantize_epochs': 1, 'quantize_augment': 'flip',
                     'no_cuda': True},
    'huffman_encode': {'pack': 'saves/model.dcz', 'no_cuda': True},
}
SCRIPTS = ('pruning.py', 'weight_share.py', 'huffman_encode.py')
# What may differ between two runs of the same code: durations, and where the data is.
DURATION = re.compile(r'\d+(\.\d+)? (s|min)\b')


# The CPU features that pick other bf16 and fp32 kernels (torch's own capability reads
# 'AVX512' for an AMD EPYC and an Intel AMX CPU alike, whose bf16 sums differ).
KERNEL_FEATURES = ('avx2', 'avx512f', 'avx512_bf16', 'avx512_fp16', 'avx512_vnni', 'amx_bf16', 'amx_tile')


def cpu_info():
    """(vendor, [the KERNEL_FEATURES it has]) from /proc/cpuinfo; (platform, []) elsewhere."""
    try:
        with open('/proc/cpuinfo') as file:
            first = file.read().split('\n\n')[0]  # the first core's block
    except OSError:
        return platform.machine(), []
    fields = {key.strip(): value.strip() for key, _, value in
              (line.partition(':') for line in first.splitlines())}
    flags = fields.get('flags', '').split()
    return fields.get('vendor_id', platform.machine()), [f for f in KERNEL_FEATURES if f in flags]


def machine():
    """What else the floats depend on: other kernels (CPU features, library versions) sum
    in another order, so the bytes are only comparable where these match."""
    vendor, features = cpu_info()
    return {'torch': torch.__version__, 'numpy': np.__version__, 'sklearn': sklearn.__version__,
            'cpu': torch.backends.cpu.get_cpu_capability(), 'vendor': vendor, 'features': features}


def sha256(path):
    with open(path, 'rb') as file:
        return hashlib.sha256(file.read()).hexdigest()


def normalised(text):
    return DURATION.sub('<duration>', text.replace(DATA_DIR, '<data>'))


def golden_run(folder):
    """Run the recipe in folder; what must stay the same, as one dict."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'recipe.json'), 'w') as file:
        json.dump(RECIPE, file)
    # One thread: the same sums in the same order on any machine.
    env = os.environ | {'PYTHONPATH': ROOT, 'OMP_NUM_THREADS': '1'}
    printed = {}
    for script in (*SCRIPTS, 'docs/tables.py'):
        args = ([folder] if script == 'docs/tables.py'
                else ['--config', 'recipe.json', '--data-dir', DATA_DIR, '--subset', '2000'])
        result = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=folder,
                                env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f'{script}: {result.stderr}'
        printed[script] = normalised(result.stdout).splitlines()
    files = {}
    for sub in ('saves', 'encodings'):
        for name in sorted(os.listdir(os.path.join(folder, sub))):
            if name != 'model.json':
                files[f'{sub}/{name}'] = sha256(os.path.join(folder, sub, name))
    with open(os.path.join(folder, 'saves', 'model.json')) as file:
        described = json.loads(normalised(file.read()))
    return {'machine': machine(), 'files': files, 'model.json': described, 'printed': printed}


def recorded():
    """The records of tests/fixtures/golden.json, one per machine it was recorded on."""
    with open(GOLDEN) as file:
        return json.load(file)['records']


@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason='../shared/data/cifar-10-batches-bin missing')
def test_the_golden_run_gives_the_recorded_bytes_and_lines(tmp_path):
    here = machine()
    golden = next((record for record in recorded() if record['machine'] == here), None)
    if golden is None:
        pytest.skip(f'recorded on {[record["machine"] for record in recorded()]}, this is {here}: '
                    'run `python -m tests.test_golden` at the recorded commit to record it here')
    run = golden_run(str(tmp_path))
    # What a later change of behaviour altered where no machine of this kind was at hand
    # to record it again; every other byte and line still holds.
    stale = golden.get('not_recorded', [])
    assert {k: v for k, v in run['files'].items() if k not in stale} == golden['files']
    if 'model.json' not in stale:
        assert run['model.json'] == golden['model.json']
    assert set(golden['printed']) == set(run['printed']) - set(stale)
    for script, lines in golden['printed'].items():
        assert run['printed'][script] == lines, script


if __name__ == '__main__':
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        new = golden_run(folder)
    others = [record for record in recorded() if record['machine'] != new['machine']]
    with open(GOLDEN, 'w') as file:
        json.dump({'records': [*others, new]}, file, indent=1)
        file.write('\n')
    print(f'wrote {GOLDEN}: {len(others) + 1} machines')
