"""CPU inference of the dense AlexNet, the model decoded from a .dcz file (full shape, its
zeros multiplied like any weight) and the compact network of its live units (net/export.py),
side by side: parameters, latency at batch 1 and batch 1,000, and test accuracy.

    python bench/export.py --data-dir ../shared/data/cifar-10-batches-bin [--dcz models/alexnet-cifar10.dcz]
"""
import argparse
import os
import statistics
import tempfile
import time

import common  # noqa: F401  (puts the project on sys.path)
import torch

import util
from net.checkpoint import load_model
from net.compact import parameter_count
from net.container import load_compressed
from net.export import export_compact, load_compact
from net.models import build_model
from recipe import datasets

RUNS = {1: 200, 1000: 10}  # timed runs per batch size, after a warm-up run


def latency_ms(model, images, batch):
    """Median milliseconds of one forward pass of `batch` test images."""
    x = datasets.normalize(images[:batch])
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(RUNS[batch]):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', default=None)
    p.add_argument('--dcz', default='models/alexnet-cifar10.dcz')
    p.add_argument('--dense', default='saves/initial_model.ptmodel',
                   help='a trained dense model for its accuracy (random weights if missing)')
    p.add_argument('--json', default=None)
    args = p.parse_args()
    decoded = load_compressed(args.dcz).eval()
    trained_dense = os.path.isfile(args.dense)
    dense = load_model(args.dense) if trained_dense else build_model(decoded.arch, decoded.dataset)
    with tempfile.TemporaryDirectory() as folder:
        export_compact(decoded, os.path.join(folder, 'compact.pt'))
        compact = load_compact(os.path.join(folder, 'compact.pt'))
    images, labels = datasets.model_split(decoded, False, args.data_dir, None, torch.device('cpu'))
    models = {f'dense ({args.dense if trained_dense else "random weights"})': dense,
              f'decoded {args.dcz}': decoded, 'compact (net.export)': compact}
    print(f'CPU, {torch.get_num_threads()} threads; the median of {RUNS[1]} runs at batch 1, '
          f'of {RUNS[1000]} at 1,000')
    print(f'{"model":50} {"parameters":>12} {"batch 1 ms":>11} {"batch 1000 ms":>14} {"accuracy":>9}')
    figures = {}
    for name, model in models.items():
        model.eval()
        accuracy = datasets.evaluate(model, images, labels)[1]
        row = {'parameters': parameter_count(model), 'batch_1_ms': latency_ms(model, images, 1),
               'batch_1000_ms': latency_ms(model, images, 1000), 'accuracy': accuracy}
        figures[name] = row
        print(f"{name:50} {row['parameters']:>12,} {row['batch_1_ms']:>11.3f} {row['batch_1000_ms']:>14.1f} "
              f"{accuracy:>8.2f}%")
    if args.json:
        util.write_json(args.json, figures)


if __name__ == '__main__':
    main()
