"""Shared helpers of the three scripts: logging, parameter printing, test(); the data
lives in recipe/datasets.py."""
import dataclasses
import json
import os
import sys
from typing import Any, NoReturn

import torch

from net.files import atomic_write
from recipe import datasets


def log(content: str, filename: str = 'log.txt') -> None:
    """Append one line to the log file (its folder made if missing)."""
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    with open(filename, 'a') as f:
        f.write(f'{content}\n')


def start_run(args: Any, script: str, outputs: dict, **settings) -> tuple[dict, torch.device]:
    """Every script's preamble: check its output paths ({flag: path}; a flag ending in
    '/' names a folder) before any work, seed torch (--seed, if the script has one), pick
    the device (--no-cuda), print and log the configuration (args, `settings`, the device
    and the copy of the data); return (configuration, device)."""
    for flag, path in {'--log': args.log, **outputs}.items():
        if path is not None:
            check_output(path, flag.rstrip('/'), folder=flag.endswith('/'))
    if hasattr(args, 'seed'):
        torch.manual_seed(args.seed)
    device = device_for(not args.no_cuda)
    config = dataclasses.asdict(args) | settings | {
        'device': str(device), 'data': datasets.data_source(args.data_dir, args.dataset)}
    print(f'config: {json.dumps(config)}')
    log(f'{script} config {json.dumps(config)}', args.log)
    return config, device


def check_output(path: str, flag: str, folder: bool = False) -> None:
    """Fail now, not after hours of work, if path cannot be written: a file named by a
    folder (or a folder by a file), or a parent that is a file or read-only."""
    if folder and os.path.isfile(path):
        fail(f'{flag} {path} is a file; name a folder')
    if not folder and os.path.isdir(path):
        fail(f'{flag} {path} is a folder; name a file')
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        fail(f'{flag} {path}: {parent} is a file, not a folder')
    if not os.access(parent, os.W_OK):
        fail(f'{flag} {path}: cannot write in {parent}')


def write_json(path: str, record: dict) -> None:
    """Write a JSON record atomically (temp file + rename)."""
    text = json.dumps(record, indent=2) + '\n'

    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)
    atomic_write(path, write)


def print_model_parameters(model: torch.nn.Module, with_values: bool = False) -> None:
    """Print each parameter's name, shape and type (and values, if asked)."""
    print(f"{'Param name':20} {'Shape':30} {'Type':15}")
    print('-' * 70)
    for name, param in model.named_parameters():
        print(f'{name:20} {str(param.shape):30} {str(param.dtype):15}')
        if with_values:
            print(param)


def nonzero_counts(model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """{parameter name: (non-zeros, total)} for every parameter."""
    return {name: (int(torch.count_nonzero(p)), p.numel()) for name, p in model.named_parameters()}


def print_nonzeros(model: torch.nn.Module) -> float:
    """Print non-zeros per parameter and the total compression by pruning; return alive %."""
    nonzero = total = 0
    for name, param in model.named_parameters():
        nz, count = int(torch.count_nonzero(param)), param.numel()
        nonzero += nz
        total += count
        print(f'{name:20} | nonzeros = {nz:8} / {count:8} ({100 * nz / count:6.2f}%) '
              f'| total_pruned = {count - nz:8} | shape = {tuple(param.shape)}')
    print(f'alive: {nonzero}, pruned : {total - nonzero}, total: {total}, '
          f'Compression rate : {total / nonzero:10.2f}x  ({100 * (total - nonzero) / total:6.2f}% pruned)')
    return 100 * nonzero / total


def device_for(use_cuda: bool) -> torch.device:
    """CUDA if asked for and present, else the CPU."""
    return torch.device('cuda' if use_cuda and torch.cuda.is_available() else 'cpu')


def test(model: torch.nn.Module, use_cuda: bool = True, data_dir: str | None = None,
         subset: int | None = None) -> float:
    """Test-set accuracy in percent, printed as the starter prints it.

    The data is what the model was built for (model.dataset), from data_dir (None:
    torchvision's copy in data/), subset images of it (None: all).
    """
    device = device_for(use_cuda)
    images, labels = datasets.model_split(model, False, data_dir, subset, device)
    model.to(device)
    loss, accuracy = datasets.evaluate(model, images, labels)
    correct = round(accuracy * len(labels) / 100)
    print(f'Test set: Average loss: {loss:.4f}, Accuracy: {correct}/{len(labels)} ({accuracy:.2f}%)')
    return accuracy


def test_with(model: torch.nn.Module, args: Any) -> float:
    """test() on the data of a script's --data-dir and --subset, on the device --no-cuda
    picks."""
    return test(model, not args.no_cuda, args.data_dir, args.subset)


def fail(message: object) -> NoReturn:
    """Print one clear error line and exit non-zero (no traceback for bad input)."""
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def results_path(log_file: str, script: str) -> str:
    """The JSON results file beside the human log: log.txt -> log.<script>.json."""
    return f'{os.path.splitext(log_file)[0]}.{script}.json'
