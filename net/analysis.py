"""Per-layer sensitivity analyses (the paper's Figure 5 / 6 style).

Each layer is compressed alone, on a copy of the model, and the copy's accuracy is
measured by a caller-supplied `evaluate(model) -> accuracy %`; the model itself is never
changed. Rows are plain dicts, ready for CSV or JSON.
"""
import copy

import torch

from .prune import validate_rates
from .quantization import check_bits, share_weights


def prune_sensitivity(model, evaluate, kept_percents):
    """Accuracy with each layer alone pruned to each percent of weights kept."""
    rows = []
    for name, _ in model.prunable_layers():
        for kept in kept_percents:
            pruned = copy.deepcopy(model)
            pruned.prune_by_percentile({name: kept})
            layer = dict(pruned.prunable_layers())[name]
            rows.append({'layer': name, 'kept_percent': kept,
                         'nonzero': int(layer.weight.count_nonzero()),
                         'accuracy': evaluate(pruned)})
    return rows


def bits_sensitivity(model, evaluate, bit_widths):
    """Accuracy with each layer alone weight-shared at each number of bits."""
    rows = []
    for name, _ in model.prunable_layers():
        for bits in bit_widths:
            check_bits(bits)
            shared = copy.deepcopy(model)
            weight = dict(shared.prunable_layers())[name].weight.data
            weight.copy_(torch.from_numpy(share_weights(weight.cpu().numpy(), bits)))
            rows.append({'layer': name, 'bits': bits,
                         'distinct_nonzero': int(weight[weight != 0].unique().numel()),
                         'accuracy': evaluate(shared)})
    return rows


CUT_KINDS = ('units', 'weights')


def extra_cut(model, cut):
    """Cut a (pruned) model further, in place, relative to what it has left.

    cut: {'units': {layer: percent of its live units kept (the most salient, see
    PruningModule.prune_units)}, 'weights': {layer: percent of its non-zero weights kept
    (the largest)}}; either part may be missing, and units go first.
    """
    unknown = set(cut) - set(CUT_KINDS)
    if unknown:
        raise ValueError(f'unknown kind of cut {sorted(unknown)}; use {list(CUT_KINDS)}')
    for name, percent in validate_rates(model, cut.get('units', {})).items():
        live = int((model.unit_salience(name) > 0).sum())
        units = len(model.unit_salience(name))
        model.prune_units({name: 100 * round(live * percent / 100) / units})
    layers = dict(model.prunable_layers())
    for name, percent in validate_rates(model, cut.get('weights', {})).items():
        weight = layers[name].weight
        kept = round(int(weight.count_nonzero()) * percent / 100)
        model.prune_by_percentile({name: 100 * kept / weight.numel()})
