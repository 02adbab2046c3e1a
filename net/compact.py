"""Training only the live part of a pruned network.

Deep pruning leaves most units (fc outputs, conv filters) of a layer unread: no weight of
the next layer touches them, so they, their incoming weights and their biases change
nothing. A compact copy keeps, per layer, only the outputs the next layer reads and the
inputs the layer before kept: a smaller dense network with the same masks that computes
the same function, and trains in the time its size costs. ``write_back`` copies its
trained weights into the full model; the units left out keep their parameters.

Assumes what ``PruningModule.prune_dead_units`` assumes: the prunable layers form a chain,
each reading the previous one's output (flattened channel-major between conv and fc), and
hold all the parameters; nothing between them mixes channels (a parameter-free
LocalResponseNorm would, and is not detected). The incoming weights of unread units must
already be gone (``prune_dead_units``): the copy leaves them out, so they would stay frozen.
"""
import copy
from typing import NamedTuple

import torch
from torch import nn

from .prune import layer_mask, live_weights, units_read


class Compacted(NamedTuple):
    model: nn.Module
    kept: list  # per prunable layer: (output indices, input indices) of the full layer


def compact_copy(model: nn.Module) -> Compacted:
    """A Compacted copy of model holding only its read units (see the module docstring)."""
    layers = model.prunable_layers()
    in_layers = sum(p.numel() for _, layer in layers for p in layer.parameters())
    if in_layers != sum(p.numel() for p in model.parameters()):
        raise ValueError('compact training needs a model whose parameters all sit in its '
                         'conv and fc layers (no normalisation layers)')
    device = layers[0][1].weight.device
    outputs = [_read_outputs(layer, following)
               for (_, layer), (_, following) in zip(layers, layers[1:], strict=False)]
    outputs.append(torch.arange(layers[-1][1].weight.shape[0], device=device))  # the classes
    small = copy.deepcopy(model)
    kept = []
    inputs = torch.arange(layers[0][1].weight.shape[1], device=device)
    for i, ((name, layer), out) in enumerate(zip(layers, outputs, strict=True)):
        kept.append((out, inputs))
        _shrink(small.get_submodule(name), layer, out, inputs)
        if i + 1 < len(layers):
            inputs = _input_features(out, layer.weight.shape[0], layers[i + 1][1])
    return Compacted(small, kept)


def write_back(model: nn.Module, compacted: Compacted) -> None:
    """Copy the compact copy's weights and biases into model, where they came from."""
    small_layers = dict(compacted.model.prunable_layers())
    with torch.no_grad():
        for (name, layer), (out, inputs) in zip(model.prunable_layers(), compacted.kept, strict=True):
            small = small_layers[name]
            layer.weight[out[:, None], inputs] = small.weight
            if layer.bias is not None:
                layer.bias[out] = small.bias


def parameter_count(model: nn.Module) -> int:
    """The number of parameters of model."""
    return sum(p.numel() for p in model.parameters())


def _read_outputs(layer, following):
    """Indices of layer's outputs that some live weight of `following` reads (at least
    one, so that no layer is left empty)."""
    read = units_read(live_weights(following), layer.weight.shape[0])
    if not read.any():
        read[0] = True
    return read.nonzero().flatten()


def _input_features(out, units, following):
    """The input indices of `following` that read the kept outputs `out` of a layer with
    `units` outputs: each output is one conv channel, or H*W features after flattening."""
    per_unit = following.weight.shape[1] // units
    return (out[:, None] * per_unit + torch.arange(per_unit, device=out.device)).flatten()


def _shrink(small, layer, out, inputs):
    """Cut small (a copy of layer) down to rows `out` and columns `inputs`, mask included."""
    if isinstance(small, nn.Conv2d) and small.groups != 1:
        raise ValueError('compact training does not handle grouped convolutions')
    with torch.no_grad():
        small.weight = nn.Parameter(layer.weight[out[:, None], inputs].clone(),
                                    requires_grad=layer.weight.requires_grad)
        if layer.bias is not None:
            small.bias = nn.Parameter(layer.bias[out].clone(), requires_grad=layer.bias.requires_grad)
        if hasattr(layer, 'weight_mask'):
            small.weight_mask = layer_mask(layer)[out[:, None], inputs].clone()
    if isinstance(small, nn.Conv2d):
        small.out_channels, small.in_channels = len(out), len(inputs)
    else:
        small.out_features, small.in_features = len(out), len(inputs)
