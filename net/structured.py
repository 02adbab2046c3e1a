"""Structured pruning: remove whole kernels, input channels, filters, fc rows or columns.

Granularities (the MASE pruning pass's), per kind of layer:
    conv (O, I, kH, kW): element, kernel (one (kH, kW) kernel), channel (input channel:
        every filter's slice of it), filter (output channel)
    fc (O, I): element, row (an output unit's incoming weights), column (an input's
        outgoing weights)
A structure's score is the mean |w| (l1) or the root mean square (l2) of its weights:
within a layer that orders structures as their L1 / L2 norms do, and across layers
(global scope) it does not favour layers whose structures are larger. The masks live in
the same ``weight_mask`` buffers as element pruning, so retraining keeps whole
structures at zero. Filters and fc rows can also be ranked by their activations
(net.activations).
"""
import torch
from torch import nn

from .prune import layer_mask, prunable_layers, set_mask, validate_rates

CONV_GRANULARITIES = ('element', 'kernel', 'channel', 'filter')
FC_GRANULARITIES = ('element', 'row', 'column')
NORMS = ('l1', 'l2')
SCOPES = ('local', 'global')

# The weight dimensions each granularity reduces over (the others index the structures).
_REDUCED = {
    ('conv', 'element'): (), ('conv', 'kernel'): (2, 3), ('conv', 'channel'): (0, 2, 3),
    ('conv', 'filter'): (1, 2, 3),
    ('fc', 'element'): (), ('fc', 'row'): (1,), ('fc', 'column'): (0,),
}


def _kind(module):
    return 'conv' if isinstance(module, nn.Conv2d) else 'fc'


def structure_scores(weight: torch.Tensor, kind: str, granularity: str, norm: str = 'l1') -> torch.Tensor:
    """Score of every structure of weight, shaped so that it broadcasts over weight."""
    if (kind, granularity) not in _REDUCED:
        valid = CONV_GRANULARITIES if kind == 'conv' else FC_GRANULARITIES
        raise ValueError(f'unknown {kind} granularity {granularity!r}; use one of {valid}')
    if norm not in NORMS:
        raise ValueError(f'unknown norm {norm!r}; use one of {NORMS}')
    dims = _REDUCED[(kind, granularity)]
    magnitude = weight.abs() if norm == 'l1' else weight.square()
    score = magnitude.mean(dim=dims, keepdim=True) if dims else magnitude
    return score if norm == 'l1' else score.sqrt()


def prune_structured(model: nn.Module, q: float | dict[str, float], conv: str = 'filter', fc: str = 'row',
                     norm: str = 'l1', scope: str = 'local',
                     unit_scores: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Zero and mask whole structures of every conv and fc layer.

    q: percent of weights kept, a number or a dict layer -> percent (local scope: per
    layer, the highest-scoring structures up to q[layer] percent of its structures;
    global scope: one number, the highest-scoring structures of all layers together
    until q percent of all weights are kept). Structures pruned before score 0.
    unit_scores: {layer: one score per output unit} (net.activations.activation_scores)
    to rank the filters and fc rows of those layers by instead of their weights.
    Returns {layer name: percent of its weights kept}.
    """
    if scope not in SCOPES:
        raise ValueError(f'unknown scope {scope!r}; use one of {SCOPES}')
    layers = prunable_layers(model)
    granularity = {'conv': conv, 'fc': fc}
    scores = {name: structure_scores(m.weight.data * layer_mask(m), _kind(m), granularity[_kind(m)], norm)
              for name, m in layers}
    if unit_scores and scope != 'local':
        raise ValueError("unit scores rank the units within each layer: use scope='local'")
    for name, score in (unit_scores or {}).items():
        if name not in scores:
            raise ValueError(f'unknown layer name {name!r} in unit scores; valid names are {list(scores)}')
        scores[name] = _unit_structure_scores(dict(layers)[name], name, score, granularity, scores[name])
    if scope == 'local':
        rates = validate_rates(model, q)
        keep = {name: _top_share(scores[name], rates[name] / 100) for name in rates}
    else:
        if not isinstance(q, (int, float)) or isinstance(q, bool) or not 0 <= q <= 100:
            raise ValueError(f'global pruning takes one percent of all weights kept, got {q!r}')
        keep = _global_keep(layers, scores, q / 100)
    kept = {}
    for name, module in layers:
        if name not in keep:
            continue
        mask = keep[name].expand_as(module.weight) & layer_mask(module).bool()
        module.weight.data.masked_fill_(~mask, 0.0)
        set_mask(module, mask.to(module.weight.dtype))
        kept[name] = 100 * float(mask.float().mean())
    return kept


def _unit_structure_scores(layer, name, score, granularity, weight_scores):
    """The units of layer (called name) ranked by a score of their own (the highest first, ties to
    the lower index) as positive scores shaped as its filter or row scores: a unit that
    scores 0 (silent) still counts towards the percent kept. Pruned units stay at 0."""
    weight = layer.weight
    kind = _kind(layer)
    if granularity[kind] not in ('filter', 'row'):
        needed = 'filter' if kind == 'conv' else 'row'
        raise ValueError(f'unit scores rank whole units: {name} needs the {kind} granularity '
                         f'{needed!r}, not {granularity[kind]!r}')
    if score.shape != (weight.shape[0],):
        raise ValueError(f'{name} has {weight.shape[0]} units, its unit scores have shape '
                         f'{tuple(score.shape)}')
    order = torch.argsort(score.to(weight.device), descending=True, stable=True)
    rank = torch.empty(len(order), dtype=weight.dtype, device=weight.device)
    rank[order] = torch.arange(len(order), 0, -1, dtype=weight.dtype, device=weight.device)
    return rank.view_as(weight_scores) * (weight_scores > 0)


def _top_share(score, share):
    """Boolean mask (score's shape) of the round(share * n) highest of n structures."""
    flat = score.flatten()
    count = round(share * len(flat))
    keep = torch.zeros(len(flat), dtype=torch.bool)
    keep[torch.argsort(flat, descending=True, stable=True)[:count]] = True
    return keep.view_as(score) & (score > 0)


def _global_keep(layers, scores, share):
    """Per layer, the structures kept when all layers' structures are ranked together
    and taken best first until `share` of all weights are kept."""
    flat = torch.cat([scores[name].flatten() for name, _ in layers])
    # the number of weights in each structure
    size = torch.cat([torch.full((scores[name].numel(),), m.weight.numel() // scores[name].numel())
                      for name, m in layers])
    order = torch.argsort(flat, descending=True, stable=True)
    total = sum(m.weight.numel() for _, m in layers)
    taken = torch.cumsum(size[order], 0) <= round(share * total)
    keep = torch.zeros(len(flat), dtype=torch.bool)
    keep[order[taken]] = True
    keep &= flat > 0
    out, start = {}, 0
    for name, _ in layers:
        n = scores[name].numel()
        out[name] = keep[start:start + n].view_as(scores[name])
        start += n
    return out
