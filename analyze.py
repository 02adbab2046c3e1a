"""Analysis tools: per-layer pruning sensitivity, per-layer bits sensitivity, one
layer's weight distribution through the pipeline, what further cuts of a finished
model cost and save (under one or more retraining settings), and filter pruning by
weight against activation criteria. Each writes a CSV, and the first three a PNG plot
when matplotlib is installed (`pip install -r requirements-plot.txt`; optional).

    python analyze.py sensitivity --load-model-path saves/initial_model.ptmodel
    python analyze.py bits --load-model-path saves/model_after_retraining.ptmodel
    python analyze.py distribution --layer fc2
    python analyze.py cuts --load-model-path models/alexnet-cifar10.dcz --config configs/best.json
    python analyze.py criteria --load-model-path saves/initial_model.ptmodel --kept 90,75,50
"""
import argparse
import copy
import csv
import json
import os
import sys

import numpy as np
import torch

import util
from net.analysis import (
    bits_sensitivity,
    check_cut,
    criteria_comparison,
    extra_cut,
    prune_sensitivity,
)
from net.checkpoint import CheckpointError, load_model
from net.container import ContainerError, load_compressed
from net.files import atomic_write
from recipe import datasets, rounds, settings
from recipe.settings import Setting
from recipe.training import train

KEPT_PERCENTS = (100, 80, 60, 40, 30, 20, 10, 5, 2, 1, 0.5)
FILTERS_KEPT = (90, 75, 50)
BIT_WIDTHS = (8, 7, 6, 5, 4, 3, 2, 1)
# The cuts of docs/RESULTS.md ("What further cuts cost"): none, half the live fc2 / fc1
# units, both, and the conv layers after conv1 to 85% of their weights.
CUTS = ('{}', '{"units": {"fc2": 50}}', '{"units": {"fc1": 50}}',
        '{"units": {"fc1": 50, "fc2": 50}}',
        '{"weights": {"conv2": 85, "conv3": 85, "conv4": 85, "conv5": 85}}')
RETRAIN_EXAMPLE = '{"re_lr": 0.001, "re_augment": "flip"}'
STAGES = (('before pruning', 'saves/initial_model.ptmodel', 'pruning.py'),
          ('after pruning and retraining', 'saves/model_after_retraining.ptmodel', 'pruning.py'),
          ('after weight sharing', 'saves/model_after_weight_sharing.ptmodel', 'weight_share.py'))


COMMON = [
    Setting('--out', None, metavar='PATH', help='output path without extension (default docs/<command>)'),
    Setting('--data-dir', None, metavar='DIR'),
    Setting('--subset', None, int, 'evaluate on N test images only (faster, noisier)', 'N', low=1),
    Setting('--no-cuda', False, bool),
]
COMMANDS = {
    'sensitivity': ('accuracy with each layer alone pruned to each kept percent', [
        Setting('--load-model-path', 'saves/initial_model.ptmodel'),
        Setting('--kept', KEPT_PERCENTS, settings.comma_list(float), 'comma-separated percents '
                'kept, default ' + ','.join(map(str, KEPT_PERCENTS)), 'LIST')]),
    'bits': ('accuracy with each layer alone weight-shared at each bit width', [
        Setting('--load-model-path', 'saves/model_after_retraining.ptmodel'),
        Setting('--bits', BIT_WIDTHS, settings.comma_list(int), 'comma-separated bit widths, '
                'default ' + ','.join(map(str, BIT_WIDTHS)), 'LIST')]),
    'distribution': ("one layer's non-zero weights before pruning, after pruning, after sharing", [
        Setting('--layer', 'fc2'), Setting('--bins', 200, int, low=1)]),
    'cuts': ('a finished model cut further in each way given, retrained, then weight-shared: '
             'accuracy and homework-format bytes of each', [
        Setting('--load-model-path', 'saves/model_after_retraining.ptmodel',
                help='a pruning.py checkpoint or a .dcz file'),
        Setting('--cuts', [json.loads(text) for text in CUTS], settings.json_object('a cut', CUTS[1]),
                'each a JSON object: {"units": {layer: percent of its live units kept}, '
                '"weights": {layer: percent of its non-zero weights kept}}; {} retrains only. '
                'Default: ' + ' '.join(CUTS), 'JSON', many=True),
        Setting('--retrain', [{}], settings.json_object('a retraining', RETRAIN_EXAMPLE),
                'retraining settings to compare, each a JSON object of pruning.py settings as a '
                f'recipe names them, e.g. {RETRAIN_EXAMPLE}, over those of --config; every cut is '
                "retrained with each. Default: {} (--config's)", 'JSON', many=True),
        Setting('--epochs', 8, int, 'retraining epochs after each cut', low=0),
        Setting('--config', None, metavar='FILE', help="a recipe whose pruning section sets the "
                "retraining (optimizer, learning rate, bf16, compact training; not its "
                "round_settings); default pruning.py's")]),
    'criteria': ('accuracy with the filters of every conv layer pruned by weight norms or by '
                 'activations, at each kept percent (no retraining)', [
        Setting('--load-model-path', 'saves/initial_model.ptmodel'),
        Setting('--kept', FILTERS_KEPT, settings.comma_list(float), 'comma-separated percents of '
                'each conv layer\'s filters kept, default ' + ','.join(map(str, FILTERS_KEPT)), 'LIST'),
        Setting('--calibration-images', 1024, int, 'the first N training images (not augmented), '
                'which the activation criteria read', 'N', low=1)]),
}


def parse_args(argv=None):
    p = settings.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='command', required=True, parser_class=settings.ArgumentParser)
    for command, (summary, flags) in COMMANDS.items():
        settings.add_flags(sub.add_parser(command, help=summary), COMMON + flags)
    given = vars(p.parse_args(argv))
    command = given.pop('command')
    try:
        values = settings.values_of(COMMON + COMMANDS[command][1], given, {})
    except settings.SettingError as err:
        p.error(str(err))
    return argparse.Namespace(command=command, **values)


def main(argv=None):
    args = parse_args(argv)
    args.out = args.out or os.path.join('docs', args.command)
    try:
        {'sensitivity': run_sensitivity, 'bits': run_bits, 'distribution': run_distribution,
         'cuts': run_cuts, 'criteria': run_criteria}[args.command](args)
    except (ValueError, CheckpointError, ContainerError, datasets.DataError) as err:
        util.fail(err)


def evaluator(args, model):
    """evaluate(copy of model) -> test accuracy %, on model's (cached) test split."""
    device = util.device_for(not args.no_cuda)
    images, labels = datasets.model_split(model, False, args.data_dir, args.subset, device)

    def evaluate(model):
        return datasets.evaluate(model.to(device), images, labels)[1]
    return evaluate


def run_sensitivity(args):
    model = load_model(args.load_model_path, made_by='pruning.py')
    rows = prune_sensitivity(model, evaluator(args, model), args.kept)
    write_csv(args.out, rows)
    plot_curves(args.out, rows, 'kept_percent', 'weights kept (%)', log_x=True,
                title='Pruning sensitivity (each layer alone, no retraining)')


def run_bits(args):
    model = load_model(args.load_model_path, made_by='pruning.py')
    rows = bits_sensitivity(model, evaluator(args, model), args.bits)
    write_csv(args.out, rows)
    plot_curves(args.out, rows, 'bits', 'bits per weight', log_x=False,
                title='Weight-sharing sensitivity (each layer alone)')


def run_criteria(args):
    model = load_model(args.load_model_path, made_by='pruning.py')
    device = util.device_for(not args.no_cuda)
    images, labels = datasets.model_split(model, True, args.data_dir, None, device)
    batches = list(datasets.batches(images[:args.calibration_images],
                                    labels[:args.calibration_images], 256))
    rows = criteria_comparison(model.to(device), evaluator(args, model), args.kept, batches)
    for row in rows:
        print(json.dumps(row))
    write_csv(args.out, rows)


def run_distribution(args):
    values = {}
    for stage, path, made_by in STAGES:
        model = load_model(path, made_by=made_by)
        layers = dict(model.prunable_layers())
        if args.layer not in layers:
            raise ValueError(f'unknown layer {args.layer!r}; valid: {list(layers)}')
        weight = layers[args.layer].weight.detach().cpu().numpy().ravel()
        values[stage] = weight[weight != 0]
    # One set of bins for all three stages, over all of their values: retraining can move
    # the survivors beyond the dense layer's range.
    every = np.concatenate(list(values.values()))
    if every.size == 0:
        raise ValueError(f'{args.layer} has no non-zero weight at any stage: nothing to plot')
    edges = np.linspace(every.min(), every.max(), args.bins + 1)
    rows, stages = [], []
    for stage, stage_values in values.items():
        counts, _ = np.histogram(stage_values, edges)
        stages.append((stage, counts, np.unique(stage_values) if stage == STAGES[-1][0] else None))
        rows += [{'stage': stage, 'bin_low': lo, 'bin_high': hi, 'count': int(c)}
                 for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)]
    write_csv(args.out, rows)
    plot_distribution(args.out, args.layer, edges, stages)


def run_cuts(args):
    model = finished_model(args.load_model_path)
    for cut in args.cuts:  # all refused now, not after the first cut's retraining
        check_cut(model, cut)
    flags = (['--config', args.config] if args.config else []) + (['--no-cuda'] if args.no_cuda else [])
    retrainings = [settings.pruning_settings(flags, retrain, '--retrain') for retrain in args.retrain]
    device = util.device_for(not args.no_cuda)
    model.to(device)  # once: every cut is a copy of it
    data = datasets.model_data(model, args.data_dir, args.subset, device)
    rows = []
    for retrain, retraining in zip(args.retrain, retrainings, strict=True):
        for cut in args.cuts:
            row = {'retrain': json.dumps(retrain)} | cut_and_retrain(model, cut, retraining, data, args)
            rows.append(row)
            print(f'cut {row["cut"]}, retrain {row["retrain"]}: {json.dumps(row)}')
    write_csv(args.out, rows)


def cut_and_retrain(model, cut, retraining, data, args):
    """A copy of model cut, retrained for --epochs with the retraining settings of
    `retraining` (pruning.py's settings), then shared at 5 bits: its row of the cuts CSV
    (without the retraining settings)."""
    cut_model = copy.deepcopy(model)
    extra_cut(cut_model, cut)
    cut_model.fold_constant_units()
    cut_model.prune_dead_units()
    after_cut = util.test_with(cut_model, args)
    generator = torch.Generator().manual_seed(retraining.seed)
    train(cut_model, data, settings.retraining(retraining), args.epochs, 'cut', generator, [])
    row = {'cut': json.dumps(cut), 'weights': sum(int(m.weight.count_nonzero())
                                                  for _, m in cut_model.prunable_layers()),
           'accuracy_after_cut': after_cut,
           'accuracy_retrained': util.test_with(cut_model, args)}
    shared = rounds.shared_copy(cut_model, lambda shared: util.test_with(shared, args))
    return row | {'accuracy_shared': shared['shared_accuracy'],
                  'bytes': shared['shared_bytes'], 'ratio': shared['shared_ratio']}


def finished_model(path):
    """A pruning.py checkpoint, or a .dcz file's model (masks on its non-zeros)."""
    return load_compressed(path) if path.endswith('.dcz') else load_model(path, made_by='pruning.py')


def write_csv(out, rows):
    def write(tmp):
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    atomic_write(f'{out}.csv', write)
    print(f'wrote {out}.csv ({len(rows)} rows)')


def pyplot():
    """matplotlib.pyplot, or None (with a note) when the optional package is missing."""
    try:
        import matplotlib
    except ImportError:
        print('matplotlib is not installed: wrote the CSV only '
              '(pip install -r requirements-plot.txt for the PNG)', file=sys.stderr)
        return None
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_curves(out, rows, x_key, x_label, log_x, title):
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for layer in dict.fromkeys(r['layer'] for r in rows):
        points = [(r[x_key], r['accuracy']) for r in rows if r['layer'] == layer]
        ax.plot(*zip(*points, strict=True), marker='o', markersize=3, label=layer)
    if log_x:
        ax.set_xscale('log')
    ax.invert_xaxis()
    ax.set(xlabel=x_label, ylabel='test accuracy (%)', title=title)
    ax.grid(alpha=0.3)
    ax.legend(ncol=2, fontsize=8)
    save_figure(plt, fig, out)


def plot_distribution(out, layer, edges, stages):
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(len(stages), 1, figsize=(7, 6.5), sharex=True)
    for ax, (stage, counts, centroids) in zip(axes, stages, strict=True):
        ax.stairs(counts, edges, fill=True, alpha=0.7)
        if centroids is not None:
            for c in centroids:
                ax.axvline(c, color='red', linewidth=0.6)
        ax.set_title(f'{layer}: non-zero weights {stage}' +
                     (f' ({len(centroids)} shared values, red)' if centroids is not None else ''),
                     fontsize=9)
        ax.set_ylabel('count')
    axes[-1].set_xlabel('weight value')
    save_figure(plt, fig, out)


def save_figure(plt, fig, out):
    fig.tight_layout()
    atomic_write(f'{out}.png', lambda tmp: fig.savefig(tmp, dpi=110))  # the name ends in .png
    plt.close(fig)
    print(f'wrote {out}.png')


if __name__ == '__main__':
    main()
