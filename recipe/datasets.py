"""The data: every split decoded once into one uint8 tensor on the training device, then
batched augmentation (random crop with padding, horizontal flip) and normalisation as
tensor ops (airbench style), so no per-image Python runs in the training loop.

Where the images come from is recognised by the files in --data-dir: the official binary
versions of CIFAR-10 and CIFAR-100, torchvision's own folders, MNIST-style IDX files or
an ImageFolder tree; with no --data-dir, torchvision downloads the official data.
"""
import functools
import gzip
import os
import zlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from net.models import DATASETS

# The starter's input normalisation: MNIST's constants on all three channels. Graders
# score submitted models through exactly this, so training uses it too.
NORM_MEAN, NORM_STD = 0.1307, 0.3081
CROP_PADDING = 4
SUBSET_SEED = 0  # fixed, so --subset N always picks the same images


class DataError(Exception):
    """The dataset is missing or malformed."""


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


def load_split(train: bool, data_dir: str | None = None, subset: int | None = None,
               dataset: str = 'cifar10', size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
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


def data_source(data_dir: str | None, dataset: str | None = None) -> str:
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
    import torchvision.datasets
    try:
        loaded = getattr(torchvision.datasets, TORCHVISION[dataset])(root or 'data', train=train,
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
    present = _check_cifar_binary(folder, spec, record, dataset)
    names = [name for name in present if (name == spec['test']) != train]
    data = np.empty((sum(spec['files'][name] for name in names), record), np.uint8)
    if train and len(names) < len(spec['files']) - 1:
        print(f'note: {folder} holds {len(names)} of {spec["name"]}\'s {len(spec["files"]) - 1} '
              f'training files: {len(data):,} training images')
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
    """The data files a binary CIFAR folder holds: the test file and the first training
    files (all, or a first few: a small copy, such as data_batch_1.bin alone); one clear
    error for a file missing among them, a file of the wrong size, or class names (checked
    where the names file is there) that do not match the dataset."""
    listing = ', '.join([*spec['files'], spec['names']])
    training = [name for name in spec['files'] if name != spec['test']]
    kept = next((k for k in range(len(training), 0, -1)
                 if os.path.isfile(os.path.join(folder, training[k - 1]))), 1)
    present = [*training[:kept], spec['test']]
    for name in present:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise DataError(f'{path} is missing: a {spec["name"]} binary folder holds {listing} '
                            f'(the test file and the first training files are enough; re-extract '
                            f'the official {spec["name"]} binary archive)')
        size, images = os.path.getsize(path), spec['files'][name]
        if size != images * record:
            raise DataError(f'{path} is {size:,} bytes, not {images * record:,} ({images:,} records '
                            f'of {record:,} bytes): truncated or not a {spec["name"]} binary file')
    names = os.path.join(folder, spec['names'])
    if os.path.isfile(names):
        classes = DATASETS[dataset].classes
        with open(names, 'rb') as f:
            count = sum(1 for line in f.read().splitlines() if line.strip())
        if count != classes:
            raise DataError(f'{names} names {count} classes, but {spec["name"]} has {classes}: '
                            f'not a {spec["name"]} class-name file')
    return present


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


def read_idx(path: str) -> np.ndarray:
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
    import torchvision.datasets
    from PIL import Image
    if not os.path.isdir(root):
        raise DataError(f'{root} not found: --data-dir DIR takes {OFFLINE_LAYOUTS}')
    try:
        folder = torchvision.datasets.ImageFolder(root)
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
def cached_split(train: bool, data_dir: str | None, subset: int | None, dataset: str = 'cifar10',
                 size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """load_split, the last few splits kept in memory (the test split is read once per run)."""
    return load_split(train, data_dir, subset, dataset, size)


def model_data(model: torch.nn.Module, data_dir: str | None, subset: int | None,
               device: torch.device) -> tuple:
    """(train images, train labels, test images, test labels) for model, on device."""
    return (*model_split(model, True, data_dir, subset, device),
            *model_split(model, False, data_dir, subset, device))


def model_split(model: torch.nn.Module, train: bool, data_dir: str | None, subset: int | None,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """load_split for what model was built for (its dataset, padded to its input size),
    on device; the test split is cached."""
    load = cached_split if not train else load_split
    images, labels = load(train, data_dir, subset, model.dataset, model.input_size)
    return images.to(device), labels.to(device)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float, as ToTensor() + Normalize((0.1307,), (0.3081,))."""
    return images.float().mul_(1 / (255 * NORM_STD)).sub_(NORM_MEAN / NORM_STD)


def to_device(drawn: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Random numbers drawn on the CPU (the seeded generator lives there, so every device
    draws the same) copied to device. To a GPU through pinned memory, without waiting:
    a plain copy from pageable memory would wait for all queued GPU work, every batch."""
    if device.type != 'cuda':
        return drawn.to(device)
    return drawn.pin_memory().to(device, non_blocking=True)


def augment(images: torch.Tensor, generator: torch.Generator,
            padding: int = CROP_PADDING) -> torch.Tensor:
    """Batched random crop (zero padding, like RandomCrop(32, padding=4)) + h-flip;
    padding 0: h-flip only.

    Two gathers on the padded batch: one picks each image's rows, one its columns
    (reversed for the flipped images).
    """
    n, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding,) * 4)
    shift = to_device(torch.randint(0, 2 * padding + 1, (2, n), generator=generator), device)
    flip = to_device(torch.rand(n, generator=generator) < 0.5, device)
    rows = (shift[0, :, None] + torch.arange(h, device=device)).view(n, 1, h, 1)
    picked_rows = padded.gather(2, rows.expand(n, c, h, w + 2 * padding))
    cols = shift[1, :, None] + torch.arange(w, device=device)
    cols = torch.where(flip[:, None], cols.flip(-1), cols).view(n, 1, 1, w)
    return picked_rows.gather(3, cols.expand(n, c, h, w))


def batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
            generator: torch.Generator | None = None, train: bool = False,
            augmentation: str = 'crop-flip') -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (normalised float inputs, labels); shuffled when train, and then augmented:
    augmentation is one of AUGMENTATIONS."""
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f'unknown augmentation {augmentation!r}; use one of {", ".join(AUGMENTATIONS)}')
    n = len(labels)
    order = to_device(torch.randperm(n, generator=generator), images.device) if train else None
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size] if train else slice(start, start + batch_size)
        x = images[idx]
        if train and augmentation != 'none':
            x = augment(x, generator, AUGMENTATIONS[augmentation])
        yield normalize(x), labels[idx]


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 1000) -> tuple[float, float]:
    """(average nll loss, accuracy %) of model on the given tensors (on model's device)."""
    model.eval()
    # Summed on the device and read once (float64, as Python summed each batch's float).
    loss = torch.zeros((), dtype=torch.float64, device=labels.device)
    correct = torch.zeros((), dtype=torch.int64, device=labels.device)
    with torch.no_grad():
        for x, y in batches(images, labels, batch_size):
            output = model(x)
            loss += F.nll_loss(output, y, reduction='sum').double()
            correct += (output.argmax(1) == y).sum()
    n = len(labels)
    return loss.item() / n, 100.0 * correct.item() / n
