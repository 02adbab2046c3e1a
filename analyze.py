"""Analysis tools: per-layer pruning sensitivity, per-layer bits sensitivity, and one
layer's weight distribution through the pipeline. Each writes a CSV, and a PNG plot
when matplotlib is installed (`pip install -r requirements-plot.txt`; optional).

    python analyze.py sensitivity --load-model-path saves/initial_model.ptmodel
    python analyze.py bits --load-model-path saves/model_after_retraining.ptmodel
    python analyze.py distribution --layer fc2
"""
import argparse
import csv
import os
import sys

import numpy as np

import util
from net.analysis import bits_sensitivity, prune_sensitivity
from net.checkpoint import CheckpointError, load_model

KEPT_PERCENTS = (100, 80, 60, 40, 30, 20, 10, 5, 2, 1, 0.5)
BIT_WIDTHS = (8, 7, 6, 5, 4, 3, 2, 1)
STAGES = (('before pruning', 'saves/initial_model.ptmodel', 'pruning.py'),
          ('after pruning and retraining', 'saves/model_after_retraining.ptmodel', 'pruning.py'),
          ('after weight sharing', 'saves/model_after_weight_sharing.ptmodel', 'weight_share.py'))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='command', required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--out', type=str, default=None, metavar='PATH',
                        help='output path without extension (default docs/<command>)')
    common.add_argument('--data-dir', type=str, default=None, metavar='DIR')
    common.add_argument('--subset', type=int, default=None, metavar='N',
                        help='evaluate on N test images only (faster, noisier)')
    common.add_argument('--no-cuda', action='store_true', default=False)
    s = sub.add_parser('sensitivity', parents=[common],
                       help='accuracy with each layer alone pruned to each kept percent')
    s.add_argument('--load-model-path', default='saves/initial_model.ptmodel')
    s.add_argument('--kept', type=_numbers(float), default=KEPT_PERCENTS, metavar='LIST',
                   help='comma-separated percents kept, default ' + ','.join(map(str, KEPT_PERCENTS)))
    b = sub.add_parser('bits', parents=[common],
                       help='accuracy with each layer alone weight-shared at each bit width')
    b.add_argument('--load-model-path', default='saves/model_after_retraining.ptmodel')
    b.add_argument('--bits', type=_numbers(int), default=BIT_WIDTHS, metavar='LIST',
                   help='comma-separated bit widths, default ' + ','.join(map(str, BIT_WIDTHS)))
    d = sub.add_parser('distribution', parents=[common],
                       help="one layer's non-zero weights before pruning, after pruning, after sharing")
    d.add_argument('--layer', default='fc2')
    d.add_argument('--bins', type=int, default=200)
    return p.parse_args(argv)


def _numbers(kind):
    def parse(text):
        try:
            return tuple(kind(x) for x in text.split(','))
        except ValueError:
            raise argparse.ArgumentTypeError(f'not a comma-separated list of {kind.__name__}: {text}') \
                from None
    return parse


def main(argv=None):
    args = parse_args(argv)
    args.out = args.out or os.path.join('docs', args.command)
    try:
        {'sensitivity': run_sensitivity, 'bits': run_bits,
         'distribution': run_distribution}[args.command](args)
    except (ValueError, CheckpointError, util.DataError) as err:
        util.fail(err)


def evaluator(args, model):
    """evaluate(copy of model) -> test accuracy %, on model's (cached) test split."""
    device = util.device_for(not args.no_cuda)
    images, labels = util.model_split(model, False, args.data_dir, args.subset, device)

    def evaluate(model):
        return util.evaluate(model.to(device), images, labels)[1]
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


def write_csv(out, rows):
    os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
    tmp = f'{out}.csv.tmp'
    with open(tmp, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, f'{out}.csv')
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
    tmp = f'{out}.tmp.png'
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, f'{out}.png')
    print(f'wrote {out}.png')


if __name__ == '__main__':
    main()
