"""Shared helpers of the three scripts: logging, parameter printing, test(); the data
lives in recipe/datasets.py."""
import argparse
import json
import math
import os
import sys

import torch

from net.files import atomic_write
from net.models import DATASETS, MODELS
from recipe import datasets


def log(content, filename='log.txt'):
    """Append one line to the log file (its folder made if missing)."""
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    with open(filename, 'a') as f:
        f.write(f'{content}\n')


def start_run(args, script, outputs, **settings):
    """Every script's preamble: check its output paths ({flag: path}; a flag ending in
    '/' names a folder) before any work, then print and log the configuration (args,
    `settings`, and the copy of the data); return it."""
    for flag, path in {'--log': args.log, **outputs}.items():
        if path is not None:
            check_output(path, flag.rstrip('/'), folder=flag.endswith('/'))
    config = vars(args) | settings | {'data': datasets.data_source(args.data_dir, args.dataset)}
    print(f'config: {json.dumps(config)}')
    log(f'{script} config {json.dumps(config)}', args.log)
    return config


def check_output(path, flag, folder=False):
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


def write_json(path, record):
    """Write a JSON record atomically (temp file + rename)."""
    text = json.dumps(record, indent=2) + '\n'

    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)
    atomic_write(path, write)


def print_model_parameters(model, with_values=False):
    print(f"{'Param name':20} {'Shape':30} {'Type':15}")
    print('-' * 70)
    for name, param in model.named_parameters():
        print(f'{name:20} {str(param.shape):30} {str(param.dtype):15}')
        if with_values:
            print(param)


def nonzero_counts(model):
    """{parameter name: (non-zeros, total)} for every parameter."""
    return {name: (int(torch.count_nonzero(p)), p.numel()) for name, p in model.named_parameters()}


def print_nonzeros(model):
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


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one-line errors (`error: ...`, exit status 2) instead of
    the usage text; --help still shows it."""

    def error(self, message):
        fail(f'{message} (see {self.prog} --help)')


# ---------------------------------------------------------------- recipe files
CONFIG_SECTIONS = ('pruning', 'weight_share', 'huffman_encode')


def add_config_argument(parser):
    parser.add_argument('--config', type=str, default=None, metavar='FILE',
                        help='a recipe (e.g. configs/best.json): its section for this script sets '
                             'the defaults; flags given on the command line still win')


def add_data_arguments(parser, from_checkpoint):
    """--model, --dataset and --data-dir. from_checkpoint: the model and dataset default to
    what the loaded checkpoint records (given, they must match it)."""
    default = 'default: the checkpoint\'s; given, it must match' if from_checkpoint else None
    parser.add_argument('--model', choices=sorted(MODELS), default=None if from_checkpoint
                        else 'alexnet', help=default or 'the network (default alexnet)')
    parser.add_argument('--dataset', choices=sorted(DATASETS), default=None if from_checkpoint
                        else 'cifar10', help=default or 'the data (default cifar10)')
    parser.add_argument('--data-dir', type=str, default=None, metavar='DIR',
                        help='an offline copy instead of the torchvision download: '
                             f'{datasets.OFFLINE_LAYOUTS}')


# The valid range of every numeric flag, in whichever script has it: (lowest, highest,
# lowest excluded). check_ranges applies it right after parsing, before any work.
RANGES = {
    'batch_size': (1, None, False), 'test_batch_size': (1, None, False),
    'epochs': (0, None, False), 're_epochs': (0, None, False), 'quantize_epochs': (0, None, False),
    'prune_rounds': (1, None, False), 'log_interval': (1, None, False), 'bins': (1, None, False),
    'subset': (1, None, False), 'seed': (0, 2**32 - 1, False),
    'lr': (0, None, True), 're_lr': (0, None, True), 'quantize_lr': (0, None, True),
    'weight_decay': (0, None, False), 're_weight_decay': (0, None, False),
    'sensitivity': (0, None, False), 'time_limit': (0, None, True),
    'target_ratio': (1, None, True), 'global_rate': (0, 100, True),
    'min_accuracy': (0, 100, False),
}


MAX_INT = 2**63 - 1  # what torch's integers hold


def check_ranges(args):
    """One error line for the first numeric flag outside its RANGES entry (NaN included)."""
    for dest, (low, high, strict) in RANGES.items():
        value = getattr(args, dest, None)
        if value is None or isinstance(value, (list, str)):
            continue
        flag = f'--{dest.replace("_", "-")}'
        if not ((isinstance(value, int) or math.isfinite(value))  # an int of any size is finite
                and (value > low if strict else value >= low)
                and (high is None or value <= high)):
            valid = (f'above {low} and at most {high}' if high is not None and strict else
                     f'from {low} to {high}' if high is not None else
                     f'above {low}' if strict else f'at least {low}')
            fail(f'{flag} must be {valid}, got {value}')
        if isinstance(value, int) and value > MAX_INT:
            fail(f'{flag} must be at most {MAX_INT}, got {value}')


def parse_with_config(parser, argv, section, settings=None, source='settings'):
    """Parse argv; with --config FILE, FILE's `section` first replaces the defaults, and
    then `settings` ({setting: value} as in a recipe section, checked the same way, errors
    naming `source`) replace those."""
    args = parser.parse_args(argv)
    defaults = read_config(args.config, section, parser) if args.config is not None else {}
    defaults |= checked_settings(settings or {}, parser, source, section)
    if defaults:
        parser.set_defaults(**defaults)
        args = parser.parse_args(argv)
    check_ranges(args)
    return args


def read_config(path, section, parser):
    """The checked flag defaults of one script from a recipe file (one clear error if bad)."""
    try:
        with open(path) as f:
            recipe = json.load(f)
    except OSError as err:
        fail(f'cannot read the recipe {path}: {err.strerror}')
    except json.JSONDecodeError as err:
        fail(f'the recipe {path} is not valid JSON ({err.msg}, line {err.lineno})')
    except UnicodeDecodeError:
        fail(f'the recipe {path} is not a UTF-8 text file')
    if not isinstance(recipe, dict):
        fail(f'the recipe {path} must be a JSON object with sections {list(CONFIG_SECTIONS)}')
    unknown = sorted(set(recipe) - set(CONFIG_SECTIONS) - {'description'})
    if unknown:
        fail(f'unknown section(s) {unknown} in {path}; valid: {list(CONFIG_SECTIONS)}')
    settings = recipe.get(section, {})
    if not isinstance(settings, dict):
        fail(f'the recipe {path}: section "{section}" must be a JSON object of settings, '
             f'got {json.dumps(settings)}')
    return checked_settings(settings, parser, path, section)


def checked_settings(settings, parser, source, section):
    """{flag dest: value as the command line would give it} of a recipe section's settings;
    one clear error (naming `source`) for an unknown setting or a bad value."""
    actions = {a.dest: a for a in parser._actions if a.dest not in ('help', 'config')}
    defaults = {}
    for key, value in settings.items():
        dest = key.replace('-', '_')
        if dest not in actions:
            fail(f'{source}: unknown setting "{key}" for {section}.py; valid: {sorted(actions)}')
        defaults[dest] = _config_value(actions[dest], value, source, key)
    return defaults


def _config_value(action, value, path, key):
    """A recipe value as the command line would give it, checked against the flag."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)  # a JSON flag such as --rates or --bits
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if action.nargs == 0:  # an on/off flag
        valid = isinstance(value, bool)
    elif action.type in (int, float):
        valid = number and (action.type is float or float(value).is_integer())
        value = action.type(value) if valid else value
    else:
        # null only where the flag's own default is (the command line cannot say null)
        valid = (value is None and action.default is None) or isinstance(value, str) or number
        value = value if value is None else str(value)
    if not valid or (action.choices and value not in action.choices):
        fail(f'{path}: "{key}": {json.dumps(value)} is not a valid value for '
             f'{action.option_strings[0]}')
    return value


def device_for(use_cuda):
    return torch.device('cuda' if use_cuda and torch.cuda.is_available() else 'cpu')


def test(model, use_cuda=True, data_dir=None, subset=None):
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


def test_with(model, args):
    """test() on the data of a script's --data-dir and --subset, on the device --no-cuda
    picks."""
    return test(model, not args.no_cuda, args.data_dir, args.subset)


def fail(message):
    """Print one clear error line and exit non-zero (no traceback for bad input)."""
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def results_path(log_file, script):
    """The JSON results file beside the human log: log.txt -> log.<script>.json."""
    return f'{os.path.splitext(log_file)[0]}.{script}.json'
