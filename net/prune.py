"""Magnitude pruning with masks kept as buffers on the standard layers.

Each pruned ``nn.Conv2d`` / ``nn.Linear`` carries a ``weight_mask`` buffer (1 = kept,
0 = pruned). Buffers travel with ``torch.save``/``torch.load`` and ``.to(device)``, and
keep the pickled model free of custom layer classes, so the starter's ``net/`` can
still unpickle it.
"""
import numpy as np
import torch
from torch import nn

# The paper's AlexNet "weights %" column (Han et al. 2016, Table 4): percent KEPT per layer.
DEFAULT_PRUNE_RATE = {
    'conv1': 84, 'conv2': 38, 'conv3': 35, 'conv4': 37, 'conv5': 37,
    'fc1': 9, 'fc2': 9, 'fc3': 25,
}

PRUNABLE = (nn.Conv2d, nn.Linear)


class PruningModule(nn.Module):
    """Base class of prunable models: every conv and fc layer can be pruned."""
    # What build_model records per instance; checkpoints saved before it were all CIFAR-10.
    dataset = 'cifar10'
    # Whether the prunable layers form a chain, each reading the one before's output
    # (flattened channel-major between conv and fc): what the unit steps below assume. A
    # model says True only when it is one (AlexNet, the LeNets, VGG-16); the others
    # (ResNet-18, with its skip connections) are refused those steps.
    chain = False

    def prunable_layers(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of every conv and fc layer, in definition order."""
        return prunable_layers(self)

    def prune_by_percentile(self, q: float | dict[str, float] | None = None) -> None:
        """Keep the q[name] percent largest-magnitude weights of each layer.

        ``q`` maps layer name -> percent kept (0..100); a number applies to every layer;
        None: the model's ``default_rates`` (the paper's, e.g. DEFAULT_PRUNE_RATE for AlexNet).
        The threshold is the (100 - q)th percentile of |W|.
        """
        rates = validate_rates(self, self.default_rates if q is None else q)
        for name, module in self.prunable_layers():
            if name not in rates:
                continue
            # Percentile over all weights of the layer, zeros included: q is the share of
            # the whole layer kept, so a second call with the same q changes nothing.
            weights = module.weight.data.abs().flatten().cpu().numpy().astype(np.float64)
            threshold = np.percentile(weights, 100 - rates[name])
            self._prune(module, threshold)

    def prune_by_std(self, s: float = 0.25) -> None:
        """Per layer, prune weights with |w| < std(W) * s, for conv and fc layers alike."""
        for _, module in self.prunable_layers():
            threshold = module.weight.data.std().item() * s
            self._prune(module, threshold)

    def _prune(self, module, threshold):
        """Zero every weight with |w| < threshold and record the result in the mask."""
        weight = module.weight.data
        mask = (weight.abs() >= threshold) & layer_mask(module).bool()
        weight.masked_fill_(~mask, 0.0)  # +0.0, where multiplying would leave -0.0
        set_mask(module, mask.to(weight.dtype))

    def prune_dead_units(self) -> int:
        """Zero (and mask) the incoming weights of every unit that no later weight reads.

        A unit (fc output or conv filter) whose outgoing weights are all pruned feeds
        nothing, so its incoming weights are dead code: removing them leaves the function
        of the network unchanged. Walking from the last layer back lets removals cascade.
        Assumes the prunable layers form a chain, each reading the previous one's output
        (flattened channel-major between conv and fc), as in AlexNet. Returns the number
        of non-zero weights removed.
        """
        layers = self.require_chain('dead-unit removal (--prune-dead-units, --compact-training)')
        removed = 0
        for layer, following in reversed(list(zip(layers, layers[1:], strict=False))):
            dead = ~_units_read(following, layer.weight.shape[0])
            if dead.any():
                removed += mask_out(layer, (len(dead), -1), dead)
        return removed

    def fold_constant_units(self) -> int:
        """Fold every unit with no incoming weights into the bias of the fc layer after it.

        Such a unit outputs relu(bias) at every position, so what the next fc layer reads
        from it is a constant: adding that to the next layer's bias and zeroing (and
        masking) the unit's outgoing weights computes the same function (up to float
        rounding), and leaves the unit dead. Only fc layers are fed so: a conv layer's zero
        padding would make a constant input vary at the borders. Assumes a chain whose
        activations are ReLU, then max pooling or flattening, as in AlexNet. Walks forward,
        since folding can leave a unit of the next layer without inputs. Returns the number
        of non-zero weights removed.
        """
        layers = self.require_chain('constant folding (--fold-constant-units)')
        removed = 0
        for layer, following in zip(layers, layers[1:], strict=False):
            if not isinstance(following, nn.Linear) or layer.bias is None or following.bias is None:
                continue
            units = layer.weight.shape[0]
            fed = live_weights(layer).view(units, -1).any(1)
            constant = ~fed & _units_read(following, units)
            if not constant.any():
                continue
            weight = following.weight.data.view(following.out_features, units, -1)
            outgoing = weight[:, constant]
            following.bias.data += (outgoing * layer.bias.data[constant].relu()[None, :, None]).sum((1, 2))
            removed += mask_out(following, weight.shape, (slice(None), constant))
        return removed

    def prune_units(self, q: dict[str, float], salience: dict[str, torch.Tensor] | None = None) -> int:
        """Keep the q[name] percent of each named layer's output units (fc units or conv
        filters) with the highest unit_salience (or salience[name], e.g. net.activations'
        scores), and remove the incoming and outgoing weights of the others (keep_units).
        q: a dict layer -> percent of all its units.

        Why: in the homework format every distinct unit an fc layer's weights touch is a
        33-bit leaf of a code tree (an fc2 unit twice: fc2's CSC row indices and fc3's
        CSR column indices), so a few units with several weights each cost far less than
        many with one. Returns the number of non-zero weights removed.
        """
        if not isinstance(q, dict):
            raise ValueError(f'unit rates are a dict of layer -> percent of its units kept, got {q!r}')
        layers = dict(self.prunable_layers())
        salience = salience or {}
        return sum(self.keep_units(name, round(layers[name].weight.shape[0] * percent / 100),
                                   salience.get(name))
                   for name, percent in validate_rates(self, q, of='units').items())

    def keep_units(self, name: str, keep: int, salience: torch.Tensor | None = None) -> int:
        """Keep the `keep` units of layer `name` with the highest unit_salience, or the
        highest of `salience` (one score per unit, e.g. net.activations' scores), ties to
        the lower index, and remove the incoming and outgoing weights of the others.

        Only units with both incoming and outgoing weights are ranked and counted: the
        others are dead or constant, for prune_dead_units and fold_constant_units (when
        the recipe runs them). Returns the number of non-zero weights removed.
        """
        weights = self.unit_salience(name)
        if salience is None:
            salience = weights
        elif salience.shape != weights.shape:
            raise ValueError(f'{name} has {len(weights)} units, the salience given has shape '
                             f'{tuple(salience.shape)}')
        salience = salience.to(weights.device)
        ranked = (weights > 0).nonzero().flatten()
        if len(ranked) <= keep:
            return 0
        return self.remove_units(name, ranked[salience[ranked].argsort(descending=True, stable=True)[keep:]])

    def remove_units(self, name: str, units: torch.Tensor) -> int:
        """Remove (zero and mask) the incoming and outgoing weights of these units of layer
        `name` (e.g. net.activations.similar_units' choice); the number of non-zero weights
        removed. In a model that is not a chain only the incoming weights go (a batch norm
        after the layer then passes on a constant, as filter pruning leaves it)."""
        if not self.chain:
            layer = self.layer(name)
            return mask_out(layer, (layer.weight.shape[0], -1), units)
        layer, reader = self.unit_reader(name)
        count = layer.weight.shape[0]
        return (mask_out(layer, (count, -1), units)
                + mask_out(reader, (reader.weight.shape[0], count, -1), (slice(None), units)))

    def unit_salience(self, name: str) -> torch.Tensor:
        """Per output unit of layer `name`: the L1 norm of its incoming weights times that
        of the next layer's weights that read it (0 for dead and constant units)."""
        layer, reader = self.unit_reader(name)
        units = layer.weight.shape[0]
        incoming = layer.weight.data.abs().view(units, -1).sum(1)
        # The reader's inputs are the units' channels, channel-major (conv -> fc flattening).
        outgoing = reader.weight.data.abs().view(reader.weight.shape[0], units, -1).sum((0, 2))
        return incoming * outgoing

    def unit_reader(self, name: str) -> tuple[nn.Module, nn.Module]:
        """(layer `name`, the layer that reads its units); the last layer has none."""
        self.require_chain('unit pruning')
        self.layer(name)  # a known name
        layers = self.prunable_layers()
        names = [n for n, _ in layers]
        index = names.index(name)
        if index == len(names) - 1:
            raise ValueError(f'{name} is the last layer: its units are the outputs')
        return layers[index][1], layers[index + 1][1]

    def layer(self, name: str) -> nn.Module:
        """The prunable layer called name (ValueError naming the valid ones if none is)."""
        layers = dict(self.prunable_layers())
        if name not in layers:
            raise ValueError(f'unknown layer name {name!r}; valid names are {list(layers)}')
        return layers[name]

    def require_chain(self, step: str) -> list[nn.Module]:
        """The prunable layers, if they form a chain; else refuse `step` (ValueError)."""
        if not self.chain:
            raise ValueError(f'{step} needs a chain of layers, and {type(self).__name__} has skip '
                             'connections: leave it off (structured masks still apply)')
        return [m for _, m in self.prunable_layers()]

    def apply_masks(self) -> None:
        """Re-zero pruned weights (after an optimizer step, which may have moved them)."""
        apply_masks(self)

    def mask_gradients(self) -> None:
        """Zero the gradients of pruned weights (call after ``loss.backward()``)."""
        mask_gradients(self)


def apply_masks(model: nn.Module) -> None:
    """Re-zero the pruned weights of any model (after an optimizer step)."""
    for _, module in prunable_layers(model):
        if hasattr(module, 'weight_mask'):
            module.weight.data.masked_fill_(module.weight_mask == 0, 0.0)


def mask_gradients(model: nn.Module) -> None:
    """Zero the gradients of any model's pruned weights (after ``loss.backward()``)."""
    for _, module in prunable_layers(model):
        if hasattr(module, 'weight_mask') and module.weight.grad is not None:
            module.weight.grad.mul_(module.weight_mask)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every conv and fc layer of any nn.Module, in definition order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]


def state_without_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """model's state (its parameters and buffers, in state_dict order, as the tensors
    themselves) but the pruning masks, which decoding derives from the non-zeros."""
    return {name: tensor for name, tensor in model.state_dict(keep_vars=True).items()
            if not name.endswith('weight_mask')}


def is_chain(model: nn.Module) -> bool:
    """Whether model's prunable layers form a chain (PruningModule.chain is True); any
    other model is not one, whatever its attributes."""
    return isinstance(model, PruningModule) and model.chain is True


def mask_out(module: nn.Module, shape: tuple[int, ...], index: torch.Tensor | tuple) -> int:
    """Zero and mask module's weights at `index` of its weight viewed as `shape`; return
    how many of them were non-zero."""
    mask = layer_mask(module).clone()
    mask.view(shape)[index] = 0
    removed = int(module.weight.data.view(shape)[index].count_nonzero())
    module.weight.data.masked_fill_(mask == 0, 0.0)
    set_mask(module, mask)
    return removed


def layer_mask(module: nn.Module) -> torch.Tensor:
    """The layer's mask, or all ones if it was never pruned."""
    mask = getattr(module, 'weight_mask', None)
    return mask if mask is not None else torch.ones_like(module.weight)


def _units_read(layer, units):
    """Which of the previous layer's `units` outputs some weight of `layer` may still read
    (not pruned, or not zero)."""
    return units_read(live_weights(layer), units)


def live_weights(layer: nn.Module) -> torch.Tensor:
    """Which weights of layer may still be non-zero (not pruned, or not zero)."""
    return (layer_mask(layer) != 0) | (layer.weight.data != 0)


def units_read(live: torch.Tensor, units: int) -> torch.Tensor:
    """Which of `units` inputs a layer reads, given `live` (boolean, the layer's weight
    shape): an input unit is read if any live weight touches one of its channels."""
    per_input = live.transpose(0, 1).reshape(live.shape[1], -1).any(1)
    if len(per_input) % units:
        raise ValueError(f'a layer with {len(per_input)} inputs does not read '
                         f'the {units} units of the layer before it: not a chain of layers')
    return per_input.view(units, -1).any(1)


def live_units(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer of a chain (the layers' weights in order), which of its output units the
    next layer reads: its non-zero weights do (every unit of the last layer is live)."""
    live = [torch.ones(weights[-1].shape[0], dtype=torch.bool)]
    for weight, before in zip(reversed(weights[1:]), reversed(weights[:-1]), strict=True):
        live.insert(0, units_read(weight != 0, before.shape[0]))
    return live


def live_units_of(model: nn.Module) -> list[torch.Tensor]:
    """live_units of model's prunable layers (on the CPU) if they form a chain; in any other
    model every unit counts as live (what reads it is not known)."""
    weights = [layer.weight.detach().cpu() for _, layer in prunable_layers(model)]
    if not is_chain(model):
        return [torch.ones(weight.shape[0], dtype=torch.bool) for weight in weights]
    return live_units(weights)


def set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Set module's weight_mask buffer to mask, registering the buffer the first time."""
    if hasattr(module, 'weight_mask'):
        module.weight_mask.copy_(mask)
    else:
        module.register_buffer('weight_mask', mask)


def validate_rates(model: nn.Module, q: float | dict[str, float], of: str = 'weights') -> dict[str, float]:
    """Turn q (a number or a dict name -> percent of `of` kept) into a checked dict."""
    names = [name for name, _ in prunable_layers(model)]
    rates = dict.fromkeys(names, q) if isinstance(q, (int, float)) else dict(q)
    unknown = sorted(set(rates) - set(names))
    if unknown:
        raise ValueError(f"unknown layer name(s) {unknown} in the pruning rates; "
                         f"valid names are {names}")
    for name, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 100:
            raise ValueError(f"pruning rate for {name} is {rate!r}; it must be a percent "
                             f"of {of} kept, between 0 and 100")
    return rates
