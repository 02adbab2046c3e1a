"""The GPU machine check: the device, the CUDA tests, training throughput (dense and
compact pruned AlexNet, fp32 and bf16, on the GPU beside this machine's CPU) and the
recipe (configs/best.json) end to end, with wall time per script, accuracy and ratio.

    make gpu-check DATA_DIR=folder                  # the .venv if there is one, else python3
    python3 bench/gpu_check.py --data-dir folder    # the same, with the machine's own packages

folder: the official CIFAR-10 binary files; data_batch_1.bin and test_batch.bin are enough
(10,000 training images). Without CUDA it measures the CPU alone. Writes gpu_check.json and
the recipe's logs to --out.
"""
import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import time

import common  # noqa: F401  (puts the project on sys.path)
import torch

import util
from net.compact import compact_copy, parameter_count
from net.models import AlexNet
from recipe import datasets, training
from recipe.settings import Training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH_SIZE = 256
TIMED_BATCHES = {'cuda': 39, 'cpu': 6}  # per throughput figure, after a warm-up
RECIPE = os.path.join(ROOT, 'configs', 'best.json')
SCRIPTS = ('pruning.py', 'weight_share.py', 'huffman_encode.py')
CUDA_TESTS = ('tests/test_cuda.py', 'tests/test_compact.py')


def describe_device():
    """The machine in one dict: torch, the GPU (if any) and the CPU."""
    found = {'torch': torch.__version__, 'cpu': platform.processor() or platform.machine(),
             'cpu_threads': torch.get_num_threads()}
    if torch.cuda.is_available():
        found |= {'gpu': torch.cuda.get_device_name(), 'cuda': torch.version.cuda,
                  'cudnn': torch.backends.cudnn.version(), 'bf16': torch.cuda.is_bf16_supported(),
                  'gpu_memory_gib': round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)}
    return found


def cuda_tests(data_dir):
    """The CUDA tests' summary line (pytest -m cuda), or why they did not run."""
    try:
        import pytest  # noqa: F401
    except ImportError:
        return 'not run: pytest is not installed'
    env = os.environ | {'PYTHONPATH': ROOT} | ({'CIFAR10_BINARY_DIR': os.path.abspath(data_dir)}
                                               if data_dir else {})
    done = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-m', 'cuda', '-p', 'no:cacheprovider',
                           *CUDA_TESTS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    lines = done.stdout.strip().splitlines()
    failures = [line for line in lines if line.startswith(('FAILED', 'ERROR'))]
    return '; '.join([*failures, lines[-1] if lines else done.stderr.strip()[-300:]])


def compact_pruned_alexnet():
    """A random AlexNet pruned to configs/best.json's final rates and units, dead units
    dropped: what its last rounds train (compact training trains only the live units)."""
    with open(RECIPE) as file:
        recipe = json.load(file)['pruning']
    torch.manual_seed(0)
    model = AlexNet()
    model.prune_by_percentile(recipe['rates'])
    model.prune_units(recipe['unit_rates'])
    model.prune_dead_units()
    return model


def images_per_second(model, data, device, bf16, compact):
    """Training throughput of recipe.training.train (the scripts' loop: batched
    augmentation, Adam, the masks' hooks) over TIMED_BATCHES batches after a warm-up; the
    epoch's cost beside its steps (a 256-image test pass; the compact copy made and
    written back) is counted too, as in the scripts."""
    settings = Training('adam', 1e-4, 0.0, 'crop-flip', 'constant', BATCH_SIZE, 1000, 10, bf16, compact)
    model = model.to(device)
    train_x, train_y, test_x, test_y = (tensor.to(device) for tensor in data)
    images = BATCH_SIZE * TIMED_BATCHES[device.type]
    seconds = []
    for n in (2 * BATCH_SIZE, images):  # warm-up (kernels, allocator), then timed
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            seconds.append(training.train(model, (train_x[:n], train_y[:n], test_x[:256], test_y[:256]),
                                          settings, 1, 'bench', torch.Generator().manual_seed(0), []))
    return images / seconds[-1]


def throughput(data):
    """{model: {precision: {device: images/s}}} for the dense and the compact model."""
    devices = [torch.device('cuda')] if torch.cuda.is_available() else []
    devices.append(torch.device('cpu'))
    dense, pruned = AlexNet(), compact_pruned_alexnet()
    models = {f'dense AlexNet ({parameter_count(dense):,} parameters)': (dense, False),
              f'compact pruned ({parameter_count(compact_copy(pruned).model):,} live)': (pruned, True)}
    figures = {}
    for name, (model, compact) in models.items():
        for precision, bf16 in (('fp32', False), ('bf16', True)):
            row = figures.setdefault(name, {}).setdefault(precision, {})
            for device in devices:
                row[device.type] = images_per_second(model, data, device, bf16, compact)
            print(format_row(name, precision, row), flush=True)
    return figures


def format_row(name, precision, row):
    cells = ' '.join(f'{row.get(device, 0):>10,.0f}' if device in row else f'{"-":>10}'
                     for device in ('cuda', 'cpu'))
    ratio = f'{row["cuda"] / row["cpu"]:8.1f}x' if 'cuda' in row else ''
    return f'{name:38} {precision:5} {cells} {ratio}'


def recipe_end_to_end(recipe, data_dir, folder):
    """The three scripts with the recipe file in folder: wall seconds per script, the
    rounds' decisions, accuracies and ratios (from the scripts' JSON results)."""
    os.makedirs(folder, exist_ok=True)
    seconds = {}
    args = ['--config', os.path.abspath(recipe)]
    args += ['--data-dir', os.path.abspath(data_dir)] if data_dir else []
    for script in SCRIPTS:
        started = time.time()
        with open(os.path.join(folder, f'{script}.out'), 'w') as out:
            done = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=folder,
                                  env=os.environ | {'PYTHONPATH': ROOT}, stdout=out, stderr=subprocess.STDOUT)
        seconds[script] = time.time() - started
        print(f'  {script:18} {seconds[script]:7.1f} s' + ('' if done.returncode == 0 else
              f'  FAILED (exit {done.returncode}; see {folder}/{script}.out)'), flush=True)
        if done.returncode != 0:
            return {'seconds': seconds, 'failed': script}
    return {'seconds': seconds, 'total_seconds': sum(seconds.values())} | recipe_results(folder)


def recipe_results(folder):
    def read(script):
        with open(os.path.join(folder, f'log.{script}.json')) as file:
            return json.load(file)
    pruned, shared, encoded = read('pruning'), read('weight_share'), read('huffman_encode')
    last = pruned['rounds'][-1]
    return {'rounds': len(pruned['rounds']), 'decision': decision(last),
            'initial_accuracy': pruned['initial_accuracy'],
            'accuracy_after_retraining': pruned['accuracy_after_retraining'],
            'accuracy_after_weight_sharing': shared['accuracy_after'],
            'accuracy_after_decoding': encoded['accuracy_after_decoding'], 'ratio': encoded['ratio'],
            'dcz': {key: encoded['pack'][key] for key in ('bytes', 'ratio', 'accuracy')}
            if 'pack' in encoded else None}


def decision(last):
    """What ended the rounds, from the last round's record."""
    if 'back_to_round' in last:
        return f"accuracy floor: back to round {last['back_to_round']}"
    if 'ratio_after_pruning' in last:
        return f"target ratio reached ({last['ratio_after_pruning']:.1f}x after the cut)"
    return last.get('ended_by', 'the last round of the schedule')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', default=os.environ.get('DATA_DIR') or None,
                   help='official CIFAR-10 binary files (default: $DATA_DIR, else torchvision\'s data/)')
    p.add_argument('--out', default='runs/gpu-check', help='folder for gpu_check.json and the recipe\'s logs')
    p.add_argument('--recipe', default=RECIPE, help='the recipe file to run end to end')
    p.add_argument('--skip', nargs='*', default=[], choices=('tests', 'throughput', 'recipe'))
    args = p.parse_args()
    started = time.time()
    report = {'device': describe_device()}
    print('device: ' + ', '.join(f'{k} {v}' for k, v in report['device'].items()), flush=True)
    if not torch.cuda.is_available():
        print('no CUDA device: CPU figures only')
    data = (*datasets.load_split(True, args.data_dir), *datasets.load_split(False, args.data_dir))
    report['training_images'] = len(data[1])
    print(f'training images: {len(data[1]):,}; test images: {len(data[3]):,}', flush=True)
    if 'tests' not in args.skip:
        report['cuda_tests'] = cuda_tests(args.data_dir)
        print(f'CUDA tests: {report["cuda_tests"]}', flush=True)
    if 'throughput' not in args.skip:
        print(f'training throughput, batch {BATCH_SIZE}, images/s (the scripts\' training loop):')
        print(f'{"model":38} {"":5} {"cuda":>10} {"cpu":>10} {"cuda/cpu":>9}')
        report['throughput'] = throughput(data)
    if 'recipe' not in args.skip:
        print(f'recipe {args.recipe} on {len(data[1]):,} training images:', flush=True)
        report['recipe'] = recipe = recipe_end_to_end(args.recipe, args.data_dir, args.out)
        if 'failed' not in recipe:
            print(f"  total {recipe['total_seconds']:.1f} s; {recipe['rounds']} round records, ended by "
                  f"{recipe['decision']}; accuracy: initial "
                  f"{recipe['initial_accuracy']:.2f}%, retrained {recipe['accuracy_after_retraining']:.2f}%, "
                  f"shared {recipe['accuracy_after_weight_sharing']:.2f}%, "
                  f"decoded {recipe['accuracy_after_decoding']:.2f}%; ratio {recipe['ratio']:.1f}x"
                  + (f"; .dcz {dcz['bytes']:,} bytes, {dcz['ratio']:.1f}x at {dcz['accuracy']:.2f}%"
                     if (dcz := recipe['dcz']) else ''))
    report['wall_seconds'] = time.time() - started
    os.makedirs(args.out, exist_ok=True)
    util.write_json(os.path.join(args.out, 'gpu_check.json'), report)
    print(f'check done in {report["wall_seconds"] / 60:.1f} min; wrote {args.out}/gpu_check.json')
    failed = 'FAILED' in report.get('cuda_tests', '') or 'failed' in report.get('recipe', {})
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
