"""Per-layer sensitivity analyses (the paper's Figure 5 / 6 style).

Each layer is compressed alone, on a copy of the model, and the copy's accuracy is
measured by a caller-supplied `evaluate(model) -> accuracy %`; the model itself is never
changed. Rows are plain dicts, ready for CSV or JSON.
"""
import copy
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .activations import STATISTICS, activation_scores
from .prune import mask_out, prunable_layers, validate_rates
from .quantization import check_bits, share_weights
from .structured import prune_structured

# Filter criteria compared by criteria_comparison: weight norms, then activations.
CRITERIA = ('weight_l1', 'weight_l2', *STATISTICS)


def prune_sensitivity(model: torch.nn.Module, evaluate: Callable[[torch.nn.Module], float],
                      kept_percents: Iterable[float]) -> list[dict]:
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


def bits_sensitivity(model: torch.nn.Module, evaluate: Callable[[torch.nn.Module], float],
                     bit_widths: Iterable[int]) -> list[dict]:
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


def criteria_comparison(model: torch.nn.Module, evaluate: Callable[[torch.nn.Module], float],
                        kept_percents: Iterable[float], batches: list) -> list[dict]:
    """Accuracy with the filters of every conv layer pruned to each percent of its filters
    kept (no retraining), ranked by each of CRITERIA: the filters' weight norms (L1, L2) or
    their activations over the calibration batches (net.activations)."""
    convs = [name for name, layer in prunable_layers(model) if isinstance(layer, nn.Conv2d)]
    activations = {statistic: activation_scores(model, batches, statistic) for statistic in STATISTICS}
    rows = []
    for kept in kept_percents:
        for criterion in CRITERIA:
            pruned = copy.deepcopy(model)
            scores = activations.get(criterion)
            prune_structured(pruned, dict.fromkeys(convs, kept), conv='filter', fc='row',
                             norm=criterion.removeprefix('weight_') if scores is None else 'l1',
                             unit_scores=scores and {name: scores[name] for name in convs})
            rows.append({'kept_percent': kept, 'criterion': criterion,
                         'nonzero': sum(int(layer.weight.count_nonzero())
                                        for _, layer in prunable_layers(pruned)),
                         'accuracy': evaluate(pruned)})
    return rows


CUT_KINDS = {'units': 'units', 'weights': 'non-zero weights'}


def check_cut(model: torch.nn.Module, cut: dict) -> None:
    """Refuse a cut that extra_cut could not make on model, before any work is done."""
    if not isinstance(cut, dict) or set(cut) - set(CUT_KINDS):
        raise ValueError(f'a cut is a JSON object with keys {list(CUT_KINDS)}, got {cut!r}')
    for kind, rates in cut.items():
        if not isinstance(rates, dict):
            raise ValueError(f'{kind} of a cut: a JSON object of layer -> percent of its '
                             f'{CUT_KINDS[kind]} kept, got {rates!r}')
        for name in validate_rates(model, rates, of=CUT_KINDS[kind]):
            if kind == 'units':
                model.unit_reader(name)


def extra_cut(model: torch.nn.Module, cut: dict) -> None:
    """Cut a (pruned) model further, in place, relative to what it has left.

    cut: {'units': {layer: percent of its live units kept (the most salient, see
    PruningModule.keep_units)}, 'weights': {layer: percent of its non-zero weights kept
    (the largest; ties: the first)}}; either part may be missing, and units go first.
    """
    check_cut(model, cut)
    for name, percent in cut.get('units', {}).items():
        live = int((model.unit_salience(name) > 0).sum())
        model.keep_units(name, round(live * percent / 100))
    layers = dict(model.prunable_layers())
    for name, percent in cut.get('weights', {}).items():
        weight = layers[name].weight
        nonzero = weight.data.flatten().nonzero().flatten()
        order = weight.data.flatten()[nonzero].abs().argsort(descending=True, stable=True)
        drop = nonzero[order[round(len(nonzero) * percent / 100):]]
        mask_out(layers[name], (-1,), drop)
