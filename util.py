"""Shared helpers of the three scripts: logging, parameter printing, data, test().

Data path (airbench style): each split is decoded once into a uint8 tensor on the
training device; augmentation (random crop with padding, horizontal flip) and
normalisation are batched tensor ops, so no per-image Python runs in the training loop.
"""
import argparse
import functools
import gzip
import json
import math
import os
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from net.files import atomic_write
from net.models import DATASETS, MODELS

# The starter's input normalisation: MNIST's constants on all three channels. Graders
# score submitted models through exactly this, so training uses it too.
NORM_MEAN, NORM_STD = 0.1307, 0.3081
CROP_PADDING = 4
SUBSET_SEED = 0  # fixed, so --subset N always picks the same images

# Where util.test() finds its data; the scripts set these from --data-dir / --subset.
DATA_DIR = None
SUBSET = None


class DataError(Exception):
    """The dataset is missing or malformed."""


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
    config = vars(args) | settings | {'data': data_source(args.data_dir, args.dataset)}
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
                        help=f'an offline copy instead of the torchvision download: {OFFLINE_LAYOUTS}')


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


# ---------------------------------------------------------------- data
# Random crop + flip suit photos; the digit and clothing datasets train without them,
# as in the paper's LeNet runs.
AUGMENTED = {'cifar10': True, 'cifar100': True, 'mnist': False, 'fashion-mnist': False}
# Training-image augmentations (their crop padding): a heavily pruned network underfits,
# and a gentler one than the initial training's lets it fit more of the training set.
AUGMENTATIONS = {'crop-flip': CROP_PADDING, 'flip': 0, 'none': None}
TORCHVISION = {'cifar10': 'CIFAR10', 'cifar100': 'CIFAR100', 'mnist': 'MNIST',
               'fashion-mnist': 'FashionMNIST'}
# The folders torchvision's CIFAR classes download and read (the python version).
TORCHVISION_FOLDERS = {'cifar10': 'cifar-10-batches-py', 'cifar100': 'cifar-100-python'}
OFFLINE_LAYOUTS = ('the official binary version of CIFAR-10 (data_batch_1.bin .. test_batch.bin) '
                   'or CIFAR-100 (train.bin, test.bin), or the folder holding it; a folder holding '
                   'torchvision\'s cifar-10-batches-py/ or cifar-100-python/; an ImageFolder copy '
                   '(DIR/train/<class>/*, DIR/test/<class>/*); or, for MNIST-style data, the four '
                   '*-ubyte.gz files')
IDX_FILES = {True: ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
             False: ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}


def load_split(train, data_dir=None, subset=None, dataset='cifar10', size=None):
    """(images uint8 [N, C, H, W], labels int64 [N]) of one split of `dataset`, on the CPU.

    data_dir None: torchvision's copy, downloaded into data/. Otherwise, recognised by the
    files present: the official binary version of CIFAR-10 or CIFAR-100 (the folder
    itself, or the folder its archive extracts into), a folder holding torchvision's own
    cifar-10-batches-py/ (or cifar-100-python/), read without downloading, a folder of
    the four official MNIST-style *-ubyte(.gz) files, or an ImageFolder tree with
    train/<class>/* and test/<class>/*. ``subset`` N keeps N images chosen by a fixed
    seed (all classes represented, same every run). ``size`` zero-pads the images to
    size x size (for models that take larger inputs).
    """
    channels, side, _ = DATASETS[dataset]
    kind, where = ('torchvision', None) if data_dir is None else _layout(data_dir, dataset)
    if kind == 'torchvision':  # where: None downloads into data/
        images, labels = _torchvision(dataset, train, where)
        keep = _subset_indices(len(labels), subset)
        images, labels = images[keep], labels[keep]
    elif kind == 'binary':
        images, labels = _cifar_binary(*where, train, subset, dataset)
    elif kind == 'idx':
        if channels != 1:
            raise DataError(f'{data_dir} holds MNIST-style *-ubyte files, but the model is for '
                            f'{dataset}: use a model for mnist or fashion-mnist (pruning.py '
                            '--dataset), or the --data-dir of its data')
        images, labels = _idx_pair(data_dir, train, side, subset, dataset)
    else:
        images, labels = _image_folder(os.path.join(data_dir, 'train' if train else 'test'),
                                       subset, channels, side, dataset)
    images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    if size is not None and size > side:
        before = (size - side) // 2
        images = F.pad(images, (before, size - side - before) * 2)
    return images, torch.from_numpy(np.asarray(labels, dtype=np.int64))


def data_source(data_dir, dataset=None):
    """Which copy of the data load_split reads from data_dir, in words (for the logs)."""
    if data_dir is None:
        return 'the official data, downloaded by torchvision into data/'
    kind, where = _layout(data_dir, dataset)
    if kind == 'binary':
        return f'the official {CIFAR_BINARY[where[1]]["name"]}, binary version, at {where[0]}'
    if kind == 'torchvision':
        return f'the official data, torchvision\'s copy at {where}'
    if kind == 'idx':
        return f'the MNIST-style IDX files at {data_dir}'
    return (f'the ImageFolder copy at {data_dir} (a re-encoded copy differs from the official '
            'images, so accuracy there may differ)')


def _layout(data_dir, dataset=None):
    """(kind, where) of the data in data_dir, judged by the files present: 'binary'
    ((folder, its dataset)), 'torchvision' (the root), 'idx' or 'imagefolder'. The
    requested dataset's own layouts come first; another dataset's binary files are
    returned for _cifar_binary to refuse by name."""
    binary = _cifar_binary_folder(data_dir, dataset)
    if binary is not None and binary[1] == dataset:
        return 'binary', binary
    if (root := _torchvision_root(data_dir, dataset)) is not None:
        return 'torchvision', root
    if binary is not None:
        return 'binary', binary
    if any(_idx_path(data_dir, files[0]) for files in IDX_FILES.values()):
        return 'idx', None
    return 'imagefolder', None


def _subset_indices(n, subset):
    if subset is None or subset >= n:
        return np.arange(n)
    if subset < 1:
        raise DataError(f'--subset must be a positive number of images, got {subset}')
    rng = np.random.default_rng(SUBSET_SEED)
    return np.sort(rng.permutation(n)[:subset])


def _torchvision(dataset, train, root=None):
    """(images [N, H, W, C] uint8, labels) of torchvision's copy: downloaded into data/,
    or read from root (which holds torchvision's own folder) without downloading."""
    from torchvision import datasets
    try:
        loaded = getattr(datasets, TORCHVISION[dataset])(root or 'data', train=train,
                                                         download=root is None)
    except Exception as err:  # no network, bad archive: say how to work offline
        if root is not None:  # torchvision checks every file's MD5 before reading it
            raise DataError(f'{root} does not hold an intact copy of torchvision\'s {dataset} '
                            f'files ({type(err).__name__}: {err}): copy its data/ folder again from '
                            'a machine that downloaded it, or pass the binary version') from None
        raise DataError(f'could not download {dataset} into data/ ({type(err).__name__}: {err}); '
                        f'without internet pass --data-dir DIR with {OFFLINE_LAYOUTS}') from None
    images = np.asarray(loaded.data, dtype=np.uint8)
    return (images[..., None] if images.ndim == 3 else images), np.asarray(loaded.targets)


def _torchvision_root(data_dir, dataset=None):
    """The root to give torchvision if data_dir holds (or is) its folder of `dataset`
    (None: of either CIFAR)."""
    folders = [TORCHVISION_FOLDERS[dataset]] if dataset in TORCHVISION_FOLDERS else (
        [] if dataset else TORCHVISION_FOLDERS.values())
    for folder in folders:
        if os.path.isdir(os.path.join(data_dir, folder)):
            return data_dir
        if os.path.basename(os.path.normpath(data_dir)) == folder:
            return os.path.dirname(os.path.normpath(data_dir)) or '.'
    return None


# ---------------------------------------------------------------- CIFAR, binary version
# Each file is a run of records: the label byte (CIFAR-100: coarse, then fine label),
# then the 32x32 image as 1,024 red, 1,024 green and 1,024 blue bytes, row-major.
# 'files': the images in each file of the official archive (a shorter file is damaged).
CIFAR_BINARY = {
    'cifar10': {'name': 'CIFAR-10', 'folder': 'cifar-10-batches-bin', 'label_bytes': 1,
                'names': 'batches.meta.txt', 'test': 'test_batch.bin',
                'files': {**{f'data_batch_{i}.bin': 10_000 for i in range(1, 6)},
                          'test_batch.bin': 10_000}},
    'cifar100': {'name': 'CIFAR-100', 'folder': 'cifar-100-binary', 'label_bytes': 2,
                 'names': 'fine_label_names.txt', 'test': 'test.bin',
                 'files': {'train.bin': 50_000, 'test.bin': 10_000}},
}
CIFAR_COARSE_CLASSES = 20
CIFAR_IMAGE_BYTES = 3 * 32 * 32


def _cifar_binary_folder(data_dir, dataset=None):
    """(folder, its dataset) if data_dir is, or holds as its archive extracts, a binary
    CIFAR folder (recognised by any of its files), else None; `dataset`'s own first."""
    for found in sorted(CIFAR_BINARY, key=lambda name: name != dataset):
        spec = CIFAR_BINARY[found]
        for folder in (data_dir, os.path.join(data_dir, spec['folder'])):
            if any(os.path.isfile(os.path.join(folder, name))
                   for name in (*spec['files'], spec['names'])):
                return folder, found
    return None


def _cifar_binary(folder, found, train, subset, dataset):
    """(images [N, H, W, C] uint8 view, labels) of one split of a binary CIFAR folder;
    the whole folder is checked first (files present, sizes, class names)."""
    spec = CIFAR_BINARY[found]
    if found != dataset:
        raise DataError(f'{folder} holds {spec["name"]}\'s binary files, but the model is for '
                        f'{dataset}: pass --dataset {found}, or the --data-dir of its data')
    record = spec['label_bytes'] + CIFAR_IMAGE_BYTES
    _check_cifar_binary(folder, spec, record, dataset)
    names = [name for name in spec['files'] if (name == spec['test']) != train]
    data = np.empty((sum(spec['files'][name] for name in names), record), np.uint8)
    start = 0
    for name in names:  # read straight into one buffer: no per-image work, no extra copy
        path = os.path.join(folder, name)
        part = data[start:start + spec['files'][name]]
        with open(path, 'rb') as f:
            f.readinto(memoryview(part).cast('B'))
        _check_cifar_labels(path, part, spec, dataset)
        start += len(part)
    if subset is not None:
        data = data[_subset_indices(len(data), subset)]
    images = data[:, spec['label_bytes']:].reshape(-1, 3, 32, 32)
    return images.transpose(0, 2, 3, 1), data[:, spec['label_bytes'] - 1]


def _check_cifar_binary(folder, spec, record, dataset):
    """One clear error for a missing file, a file of the wrong size, or class names that
    do not match the dataset."""
    listing = ', '.join([*spec['files'], spec['names']])
    for name, images in [*spec['files'].items(), (spec['names'], None)]:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise DataError(f'{path} is missing: a {spec["name"]} binary folder holds {listing} '
                            f'(re-extract the official {spec["name"]} binary archive)')
        size = os.path.getsize(path)
        if images is not None and size != images * record:
            raise DataError(f'{path} is {size:,} bytes, not {images * record:,} ({images:,} records '
                            f'of {record:,} bytes): truncated or not a {spec["name"]} binary file')
    classes = DATASETS[dataset].classes
    with open(os.path.join(folder, spec['names']), 'rb') as f:
        count = sum(1 for line in f.read().splitlines() if line.strip())
    if count != classes:
        raise DataError(f'{os.path.join(folder, spec["names"])} names {count} classes, '
                        f'but {spec["name"]} has {classes}: not a {spec["name"]} class-name file')


def _check_cifar_labels(path, records, spec, dataset):
    fine = records[:, spec['label_bytes'] - 1]
    if fine.max(initial=0) >= DATASETS[dataset].classes:
        raise DataError(f'{path} has labels up to {fine.max()}, but {spec["name"]} has '
                        f'{DATASETS[dataset].classes} classes: the file is corrupt or not a '
                        f'{spec["name"]} binary file')
    if spec['label_bytes'] == 2 and records[:, 0].max(initial=0) >= CIFAR_COARSE_CLASSES:
        raise DataError(f'{path} has coarse labels up to {records[:, 0].max()}, but '
                        f'{spec["name"]} has {CIFAR_COARSE_CLASSES}: the file is corrupt')


def _idx_path(data_dir, stem):
    """The path of an IDX file (gzipped or not) in data_dir, or None."""
    for name in (f'{stem}.gz', stem):
        if os.path.isfile(os.path.join(data_dir, name)):
            return os.path.join(data_dir, name)
    return None


def _idx_pair(data_dir, train, side, subset, dataset):
    image_stem, label_stem = IDX_FILES[train]
    label_path = _idx_path(data_dir, label_stem)
    missing = [stem for stem in (image_stem, label_stem) if _idx_path(data_dir, stem) is None]
    if missing:
        raise DataError(f'{data_dir} has no {missing[0]}(.gz): it needs the four files '
                        'train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, '
                        't10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz')
    images = read_idx(_idx_path(data_dir, image_stem))
    labels = read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (side, side) or labels.shape != images.shape[:1]:
        raise DataError(f'{data_dir}: {image_stem} holds {images.shape}, {label_stem} '
                        f'{labels.shape}; expected N images of {side}x{side} and N labels')
    if labels.max(initial=0) >= DATASETS[dataset].classes:  # the loss would fail mid-run
        raise _wrong_classes(label_path, f'labels up to {labels.max()}', dataset)
    keep = _subset_indices(len(labels), subset)
    return images[keep][..., None], labels[keep]


def _wrong_classes(source, found, dataset):
    return DataError(f'{source} has {found}, but {dataset} has {DATASETS[dataset].classes} '
                     'classes: pass the --dataset of this data, or the --data-dir of the '
                     "model's data")


def read_idx(path):
    """The array in an IDX file (the MNIST format: magic 0 0 8 ndim, big-endian uint32
    dimensions, then unsigned bytes), gzipped or not."""
    opener = gzip.open if path.endswith('.gz') else open
    try:
        with opener(path, 'rb') as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:  # zlib.error: corrupt deflate data
        raise DataError(f'cannot read {path}: {err}') from None
    if len(data) < 4 or data[:3] != b'\x00\x00\x08':
        raise DataError(f'{path} is not an IDX file of unsigned bytes (wrong magic)')
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise DataError(f'{path} is truncated or corrupt: {len(data) - header} bytes of data '
                        f'for shape {shape}')
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _image_folder(root, subset, channels, side, dataset):
    from PIL import Image
    from torchvision import datasets
    if not os.path.isdir(root):
        raise DataError(f'{root} not found: --data-dir DIR takes {OFFLINE_LAYOUTS}')
    try:
        folder = datasets.ImageFolder(root)
    except OSError as err:  # a class folder without images, say
        raise DataError(f'{root}: {err}') from None
    if len(folder.classes) != DATASETS[dataset].classes:  # else a silently wrong model
        raise _wrong_classes(root, f'{len(folder.classes)} class folders', dataset)
    samples = [folder.samples[i] for i in _subset_indices(len(folder.samples), subset)]
    images = np.empty((len(samples), side, side, channels), dtype=np.uint8)
    for i, (path, _) in enumerate(samples):
        try:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert('RGB' if channels == 3 else 'L'))
        except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for damaged files
            raise DataError(f'{path} is damaged or not an image ({err}): replace or remove it') from None
        if pixels.shape[:2] != (side, side):
            raise DataError(f'{path} is {pixels.shape[1]}x{pixels.shape[0]}; {dataset} '
                            f'images must be {side}x{side}')
        images[i] = pixels.reshape(side, side, channels)
    return images, [label for _, label in samples]


@functools.lru_cache(maxsize=4)
def cached_split(train, data_dir, subset, dataset='cifar10', size=None):
    return load_split(train, data_dir, subset, dataset, size)


def model_data(model, data_dir, subset, device):
    """(train images, train labels, test images, test labels) for model, on device."""
    return (*model_split(model, True, data_dir, subset, device),
            *model_split(model, False, data_dir, subset, device))


def model_split(model, train, data_dir, subset, device):
    """load_split for what model was built for (its dataset, padded to its input size),
    on device; the test split is cached."""
    load = cached_split if not train else load_split
    images, labels = load(train, data_dir, subset, model.dataset, model.input_size)
    return images.to(device), labels.to(device)


def normalize(images):
    """uint8 [B, C, H, W] -> float, as ToTensor() + Normalize((0.1307,), (0.3081,))."""
    return images.float().mul_(1 / (255 * NORM_STD)).sub_(NORM_MEAN / NORM_STD)


def augment(images, generator, padding=CROP_PADDING):
    """Batched random crop (zero padding, like RandomCrop(32, padding=4)) + h-flip;
    padding 0: h-flip only.

    Two gathers on the padded batch: one picks each image's rows, one its columns
    (reversed for the flipped images).
    """
    n, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding,) * 4)
    shift = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(device)
    rows = (shift[0, :, None] + torch.arange(h, device=device)).view(n, 1, h, 1)
    picked_rows = padded.gather(2, rows.expand(n, c, h, w + 2 * padding))
    cols = shift[1, :, None] + torch.arange(w, device=device)
    cols = torch.where(flip[:, None], cols.flip(-1), cols).view(n, 1, 1, w)
    return picked_rows.gather(3, cols.expand(n, c, h, w))


def batches(images, labels, batch_size, generator=None, train=False, augmentation='crop-flip'):
    """Yield (normalised float inputs, labels); shuffled when train, and then augmented:
    augmentation is one of AUGMENTATIONS."""
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f'unknown augmentation {augmentation!r}; use one of {", ".join(AUGMENTATIONS)}')
    n = len(labels)
    order = torch.randperm(n, generator=generator).to(images.device) if train else None
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size] if train else slice(start, start + batch_size)
        x = images[idx]
        if train and augmentation != 'none':
            x = augment(x, generator, AUGMENTATIONS[augmentation])
        yield normalize(x), labels[idx]


def evaluate(model, images, labels, batch_size=1000):
    """(average nll loss, accuracy %) of model on the given tensors (on model's device)."""
    model.eval()
    loss = correct = 0.0
    with torch.no_grad():
        for x, y in batches(images, labels, batch_size):
            output = model(x)
            loss += F.nll_loss(output, y, reduction='sum').item()
            correct += (output.argmax(1) == y).sum().item()
    n = len(labels)
    return loss / n, 100.0 * correct / n


def test(model, use_cuda=True, data_dir=None, subset=None):
    """Test-set accuracy in percent, printed as the starter prints it.

    The data is what the model was built for (model.dataset); data_dir / subset default
    to util.DATA_DIR / util.SUBSET (set by the scripts).
    """
    data_dir = DATA_DIR if data_dir is None else data_dir
    subset = SUBSET if subset is None else subset
    device = device_for(use_cuda)
    images, labels = model_split(model, False, data_dir, subset, device)
    model.to(device)
    loss, accuracy = evaluate(model, images, labels)
    correct = round(accuracy * len(labels) / 100)
    print(f'Test set: Average loss: {loss:.4f}, Accuracy: {correct}/{len(labels)} ({accuracy:.2f}%)')
    return accuracy


def fail(message):
    """Print one clear error line and exit non-zero (no traceback for bad input)."""
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def results_path(log_file, script):
    """The JSON results file beside the human log: log.txt -> log.<script>.json."""
    return f'{os.path.splitext(log_file)[0]}.{script}.json'
