"""Activation-based criteria for structured and unit pruning (MASE's activation pruning):
a unit's (an fc output's or a conv filter's) score from its activations over calibration
batches, and the units whose activations near-duplicate another's.

In a chain of layers (PruningModule.chain) a unit's activation is what the network passes
on from it: the input of the layer that reads it (after its nonlinearity and pooling; for
a conv layer read by an fc layer, its slice of the flattened input, channel-major), and
for the last layer its own output. So a unit whose weights are large but whose output a
ReLU always zeroes scores 0, where a weight norm would keep it. In any other network
(ResNet-18: a skip connection adds to what a block's last conv passes on) it is the
unit's own output: that of the batch norm registered right after the layer (as
torchvision's and this project's ResNets register them), when one is, else the layer's.

    scores = activation_scores(model, batches, 'l2')   # {layer: one score per unit}
    model.keep_units('fc1', 100, salience=scores['fc1'])
    prune_structured(model, 50, unit_scores=scores)    # filters and fc rows by activation
"""
from collections.abc import Iterable

import torch
from torch import nn

from .prune import is_chain, prunable_layers

STATISTICS = ('mean_abs', 'l2')


def activation_scores(model: nn.Module, batches: Iterable,
                      statistic: str = 'mean_abs') -> dict[str, torch.Tensor]:
    """{layer name: per-unit score} over the batches (inputs, or (inputs, labels) pairs):
    'mean_abs', the mean absolute activation over samples and positions; 'l2', the mean
    over samples of the L2 norm of the unit's feature map."""
    if statistic not in STATISTICS:
        raise ValueError(f'unknown activation statistic {statistic!r}; use one of {STATISTICS}')
    totals, count = {}, 0

    def add(name, units):  # units: (N, U, positions)
        value = units.abs().mean(2) if statistic == 'mean_abs' else units.square().sum(2).sqrt()
        totals[name] = totals.get(name, 0) + value.sum(0)

    for size in _record(model, batches, add):
        count += size
    return {name: total / count for name, total in totals.items()}


def similar_units(model: nn.Module, batches: Iterable, threshold: float = 0.95) -> dict[str, torch.Tensor]:
    """{layer name: the units to remove}: of each pair of units whose activations (over
    all samples and positions) have a cosine similarity of threshold or more, the one of
    higher index, unless it was itself removed. The last layer's units (the outputs),
    units that never activate (dead: prune_dead_units removes them) and units without
    incoming weights (constant: already pruned, or for fold_constant_units) are left alone.
    The cosine is not centred, and activations after a ReLU are never negative, so
    unrelated units can reach 0.9 or more: near-duplicates are found near 1."""
    if not 0 < threshold <= 1:
        raise ValueError(f'a similarity threshold is in (0, 1], got {threshold!r}')
    grams = {}

    def add(name, units):  # sum over samples and positions of a a^T, (U, U)
        flat = units.transpose(1, 2).reshape(-1, units.shape[1]).double()
        grams[name] = grams.get(name, 0) + flat.T @ flat

    for _ in _record(model, batches, add):
        pass
    layers = prunable_layers(model)
    weighted = {name: layer.weight.detach().flatten(1).any(1).cpu() for name, layer in layers}
    return {name: _duplicates(gram, threshold, weighted[name]) for name, gram in grams.items()
            if name != layers[-1][0]}


def _duplicates(gram, threshold, weighted):
    gram = gram.cpu()
    norms = gram.diagonal().sqrt()
    alive = (norms > 0) & weighted
    cosine = gram / (norms[:, None] * norms[None, :]).clamp_min(1e-300)
    removed = torch.zeros(len(gram), dtype=torch.bool)
    for i in alive.nonzero().flatten().tolist():
        if not removed[i]:
            later = torch.arange(len(gram)) > i
            removed |= later & alive & (cosine[i] >= threshold - 1e-12)  # 1: exact copies
    return removed.nonzero().flatten()


def _record(model, batches, add):
    """Run model over batches, in eval mode and without gradients, calling add(layer
    name, activations as (N, units, positions)) for every layer; yield each batch size.
    ValueError if no batch holds a sample."""
    hooks = _hooks(model, add)
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            seen = 0
            for batch in batches:
                inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
                if len(inputs):
                    model(inputs.to(device))
                    seen += len(inputs)
                    yield len(inputs)
            if not seen:
                raise ValueError('activation criteria need at least one calibration batch')
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()


def _hooks(model, add):
    """Hooks that call add(layer name, activations (N, units, positions)) of every
    prunable layer's units (see the module docstring for where they are read)."""
    layers = prunable_layers(model)
    readers = _readers(model, layers)

    def output_hook(name):
        return lambda _, __, output: add(name, output.reshape(len(output), output.shape[1], -1))

    hooks = []
    for name, layer in layers:
        reader = readers.get(name)
        if reader is None:
            hooks.append(layer.register_forward_hook(output_hook(name)))
        elif isinstance(reader, nn.modules.batchnorm._BatchNorm):
            hooks.append(reader.register_forward_hook(output_hook(name)))
        else:
            def read(_, inputs, name=name, units=layer.weight.shape[0]):
                add(name, inputs[0].reshape(len(inputs[0]), units, -1))
            hooks.append(reader.register_forward_pre_hook(read))
    return hooks


def _readers(model, layers):
    """{layer name: the module whose input (a layer) or output (a batch norm) holds its
    units' activations}; the layers read from their own output are left out."""
    if is_chain(model):
        return {name: reader for (name, _), (_, reader) in zip(layers[:-1], layers[1:], strict=True)}
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    after = {name: leaves[i + 1][1] for i, (name, _) in enumerate(leaves[:-1])}
    norms = {}
    for name, layer in layers:
        follower = after.get(name)
        if (isinstance(follower, nn.modules.batchnorm._BatchNorm)
                and follower.num_features == layer.weight.shape[0]):
            norms[name] = follower
    return norms
