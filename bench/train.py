"""Training throughput: this project's data path (one uint8 tensor on the device, batched
augmentation) against a standard DataLoader with per-image torchvision transforms, same
model, same optimizer, same run. With the binary version of CIFAR-10, also the time to
load all 60,000 images against only reading the files' bytes.

    python bench/train.py --data-dir ../shared/data/cifar-10-batches-bin [--batches 40]
"""
import argparse
import os
import time

import common  # noqa: F401  (puts the project on sys.path)
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

import util
from net.models import AlexNet
from recipe import datasets

BATCH_SIZE = 256
STARTER_TRANSFORM = transforms.Compose([
    transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
    transforms.Normalize((0.1307,), (0.3081,))])


class PerImageDataset(Dataset):
    """What torchvision.datasets.CIFAR10 does per item: array -> PIL image -> transforms."""

    def __init__(self, images, labels):
        self.images = images.permute(0, 2, 3, 1).numpy()
        self.labels = labels.tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image
        return STARTER_TRANSFORM(Image.fromarray(self.images[i])), self.labels[i]


def dataloader_batches(images, labels, workers):
    loader = DataLoader(PerImageDataset(images, labels), batch_size=BATCH_SIZE, shuffle=True,
                        num_workers=workers, generator=torch.Generator().manual_seed(0),
                        persistent_workers=False)
    yield from loader


def project_batches(images, labels):
    while True:
        yield from datasets.batches(images, labels, BATCH_SIZE, torch.Generator().manual_seed(0), train=True)


def images_per_second(batches, n_batches, model=None, device='cpu'):
    """Throughput over n_batches after one warm-up batch; with model, a full training step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3) if model is not None else None
    seen, start = 0, None
    for i, (x, y) in enumerate(batches):
        x, y = x.to(device), y.to(device)
        if model is not None:
            optimizer.zero_grad()
            F.nll_loss(model(x), y).backward()
            optimizer.step()
        if i == 0:
            start = time.perf_counter()  # after warm-up
        else:
            seen += len(y)
        if i == n_batches:
            break
    return seen / (time.perf_counter() - start)


def read_bytes(folder):
    """The floor: the six files' bytes read, nothing parsed."""
    return [np.fromfile(os.path.join(folder, name), np.uint8)
            for name in datasets.CIFAR_BINARY['cifar10']['files']]


def load_seconds(load):
    start = time.perf_counter()
    load()
    return time.perf_counter() - start


def load_figures(data_dir):
    """Seconds to load all of CIFAR-10's binary version (both splits) as tensors, and to only
    read its bytes; None unless data_dir holds all of it."""
    found = datasets._cifar_binary_folder(data_dir) if data_dir else None
    files = datasets.CIFAR_BINARY['cifar10']['files']
    if found is None or found[1] != 'cifar10' or not all(
            os.path.isfile(os.path.join(found[0], name)) for name in files):
        return None
    ours = load_seconds(lambda: (datasets.load_split(True, data_dir), datasets.load_split(False, data_dir)))
    floor = load_seconds(lambda: read_bytes(found[0]))
    print(f'{"load 60,000":14} this project {ours:9.2f} s     | bytes only {floor:9.2f} s     | '
          f'{ours / floor:.1f}x the floor')
    return {'project_s': ours, 'read_bytes_s': floor}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', default=None)
    p.add_argument('--batches', type=int, default=40, help='timed batches per measurement')
    p.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1),
                   help='DataLoader worker processes for the baseline')
    p.add_argument('--no-cuda', action='store_true')
    p.add_argument('--json', default=None)
    args, _ = p.parse_known_args()
    device = util.device_for(not args.no_cuda)
    images, labels = datasets.load_split(True, args.data_dir, subset=BATCH_SIZE * (args.batches + 2))
    on_device = images.to(device), labels.to(device)
    print(f'device {device}, batch {BATCH_SIZE}, {args.batches} timed batches, '
          f'DataLoader with {args.workers} workers')
    figures = {}
    if (load := load_figures(args.data_dir)) is not None:
        figures['load all images'] = load
    for label, with_model in (('data only', False), ('training step', True)):
        torch.manual_seed(0)
        model = AlexNet().to(device).train() if with_model else None
        ours = images_per_second(project_batches(*on_device), args.batches, model, device)
        torch.manual_seed(0)
        model = AlexNet().to(device).train() if with_model else None
        baseline = images_per_second(dataloader_batches(images, labels, args.workers),
                                     args.batches, model, device)
        figures[label] = {'project_images_per_s': ours, 'dataloader_images_per_s': baseline,
                          'speedup': ours / baseline}
        print(f'{label:14} this project {ours:9.0f} img/s | DataLoader {baseline:9.0f} img/s | '
              f'{ours / baseline:.1f}x')
    if args.json:
        util.write_json(args.json, figures)


if __name__ == '__main__':
    main()
