"""Per-layer sensitivity analyses (the paper's Figure 5 / 6 style).

Each layer is compressed alone, on a copy of the model, and the copy's accuracy is
measured by a caller-supplied `evaluate(model) -> accuracy %`; the model itself is never
changed. Rows are plain dicts, ready for CSV or JSON.
"""
import copy

import torch

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
