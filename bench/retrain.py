"""Retraining throughput of a pruned AlexNet: the plain masked training step (float32,
the whole model, an unfused optimizer) against each of pruning.py's speed-ups (fused
Adam, --bf16, --compact-training) and all of them together, same model, same run.

    python bench/retrain.py [--model saves/model_after_retraining.ptmodel] [--batches 10]

Without --model (or if the file is missing): a random AlexNet pruned to the share of
weights the recipe keeps after its first few rounds, with dead units removed.
"""
import argparse
import os
import time

import common  # noqa: F401  (puts the project on sys.path)
import torch
import torch.nn.functional as F

import util
from net.checkpoint import load_model
from net.compact import compact_copy, parameter_count
from net.models import AlexNet

BATCH_SIZE = 256
# Percent kept per layer, about what recipe v5 kept after 8 rounds (88k weights).
SYNTHETIC_RATES = {'conv1': 22, 'conv2': 5.3, 'conv3': 2.8, 'conv4': 2.4, 'conv5': 2.5,
                   'fc1': 0.16, 'fc2': 0.002, 'fc3': 4}
VARIANTS = {  # name: (fused optimizer, bf16 autocast, compact copy)
    'plain (float32, whole model)': (False, False, False),
    'fused Adam': (True, False, False),
    '--bf16': (False, True, False),
    '--compact-training': (False, False, True),
    'all three (the recipe)': (True, True, True),
}


def pruned_model(path, device):
    if path and os.path.isfile(path):
        print(f'model: {path}')
        model = load_model(path, device, made_by='pruning.py')
    else:
        print(f'model: random AlexNet pruned to {SYNTHETIC_RATES}')
        torch.manual_seed(0)
        model = AlexNet().to(device)
        model.prune_by_percentile(SYNTHETIC_RATES)
    model.prune_dead_units()
    return model


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def images_per_second(model, fused, bf16, n_batches, device):
    """Masked training steps on random batches; throughput after one warm-up step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(BATCH_SIZE, 3, 32, 32, generator=g, device=device)
    y = torch.randint(0, 10, (BATCH_SIZE,), generator=g, device=device)
    for i in range(n_batches + 1):
        if i == 1:
            synchronize(device)
            start = time.perf_counter()
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            output = model(x)
        F.nll_loss(output.float(), y).backward()
        model.mask_gradients()
        optimizer.step()
        model.apply_masks()
    synchronize(device)
    return n_batches * BATCH_SIZE / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', default=None, help='a pruned checkpoint (pruning.py\'s output)')
    p.add_argument('--batches', type=int, default=10, help='timed batches per measurement')
    p.add_argument('--no-cuda', action='store_true')
    p.add_argument('--json', default=None)
    args = p.parse_args()
    if args.batches < 1:
        p.error(f'--batches must be at least 1, got {args.batches}')
    device = util.device_for(not args.no_cuda)
    model = pruned_model(args.model, device)
    compact = compact_copy(model).model
    print(f'device {device}, batch {BATCH_SIZE}, {args.batches} timed batches; compact copy '
          f'{parameter_count(compact):,} of {parameter_count(model):,} parameters')
    figures, baseline = {}, None
    for name, (fused, bf16, use_compact) in VARIANTS.items():
        rate = images_per_second(compact if use_compact else model, fused, bf16, args.batches, device)
        baseline = baseline or rate
        figures[name] = {'images_per_s': rate, 'speedup': rate / baseline}
        print(f'{name:30} {rate:8.0f} img/s  {rate / baseline:5.2f}x')
    if args.json:
        util.write_json(args.json, figures)


if __name__ == '__main__':
    main()
