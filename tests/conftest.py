import gzip
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from net.prune import PruningModule
from recipe import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The official CIFAR-10, binary version (the graders' test set); CIFAR10_BINARY_DIR names
# another copy (bench/gpu_check.py passes its --data-dir).
DATA_DIR = os.environ.get('CIFAR10_BINARY_DIR') or os.path.join(ROOT, '..', 'shared', 'data',
                                                                'cifar-10-batches-bin')
# Debian's dataset-fashion-mnist package (the official files; .ci/run installs it).
FASHION_DIR = '/usr/share/datasets/fashion-mnist'


class TinyNet(PruningModule):
    """A small conv + fc model with the same kinds of layers as AlexNet (registered as
    'tiny' in net.models.MODELS by the tests that need it)."""
    chain = True
    arch = 'tiny'
    input_size = 32
    fixed_size = True
    default_rates = {'conv1': 50, 'fc1': 10, 'fc2': 50}

    def __init__(self, num_classes=10, in_channels=3, image_size=32):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 4, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(4 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 4)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x.flatten(1)))), dim=1)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def augment_paddings(monkeypatch):
    """The crop padding of every batch datasets.augment is called on, in order (flip-only
    batches: 0; unaugmented batches are not there)."""
    used = []
    real = datasets.augment
    monkeypatch.setattr(datasets, 'augment', lambda x, generator, padding: used.append(padding)
                        or real(x, generator, padding))
    return used


@pytest.fixture
def synthetic_data():
    """(train_x, train_y, test_x, test_y): random uint8 images with learnable labels."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = (images[:, 0, :16].float().mean((1, 2)) > 127.5).long()
    return images[:64], labels[:64], images[64:], labels[64:]


def write_idx(path, array):
    """The official IDX layout: magic 0 0 8 ndim, big-endian dimensions, bytes; gzipped."""
    header = bytes([0, 0, 8, array.ndim]) + b''.join(d.to_bytes(4, 'big') for d in array.shape)
    with gzip.open(path, 'wb') as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_mnist_dir(directory, n_train=50, n_test=20, seed=0):
    """A folder of the four *-ubyte.gz files with random 28x28 images."""
    rng = np.random.default_rng(seed)
    for stem, n in (('train', n_train), ('t10k', n_test)):
        write_idx(directory / f'{stem}-images-idx3-ubyte.gz', rng.integers(0, 256, (n, 28, 28)))
        write_idx(directory / f'{stem}-labels-idx1-ubyte.gz', rng.integers(0, 10, n))
    return str(directory)


def write_cifar_binary(directory, dataset='cifar10', images=6, seed=0):
    """A binary CIFAR folder laid out as the official archive's, `images` random records
    per file (CIFAR_BINARY must expect that many: see the small_cifar_binary fixture)."""
    spec = datasets.CIFAR_BINARY[dataset]
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    classes = 10 if dataset == 'cifar10' else 100
    for name in spec['files']:
        labels = rng.integers(0, classes, (images, 1))
        if spec['label_bytes'] == 2:
            labels = np.hstack([rng.integers(0, 20, (images, 1)), labels])
        pixels = rng.integers(0, 256, (images, datasets.CIFAR_IMAGE_BYTES))
        (directory / name).write_bytes(np.hstack([labels, pixels]).astype(np.uint8).tobytes())
    (directory / spec['names']).write_text(''.join(f'class{i}\n' for i in range(classes)))
    return str(directory)


@pytest.fixture
def small_cifar_binary(monkeypatch):
    """Binary CIFAR folders of 6 images a file: CIFAR_BINARY expects that many."""
    for dataset, spec in datasets.CIFAR_BINARY.items():
        monkeypatch.setitem(datasets.CIFAR_BINARY, dataset,
                            {**spec, 'files': dict.fromkeys(spec['files'], 6)})
    return write_cifar_binary


def raw_sections(data):
    """The sections of a .dcz file as they are stored (tag, length, payload, CRC)."""
    from net import container
    out, pos = [], len(container.MAGIC) + 1
    while pos < len(data):
        length, body = container.read_varint(data, pos + 1, 'x')
        out.append(data[pos:body + length + 4])
        pos = body + length + 4
    return out


def dead_pid():
    """The id of a process that has just ended."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)
