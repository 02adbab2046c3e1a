"""Deep Compression for any PyTorch model: prune, retrain with the masks held, share the
weights by k-means, and store the model as one .dcz file, from Python.

The same library the scripts use (net.structured, net.quantization, net.container), for
an nn.Module this project does not define: every nn.Conv2d and nn.Linear is prunable,
named as in ``model.named_modules()``; every other tensor of its state (biases, batch-norm
weights and running statistics, any buffer) is stored exactly. See the README's
"Your own model" for a worked example.

    pipeline.prune(model, {'conv1': 50, 'fc': 10})   # percent kept per layer
    pipeline.prune(model, 10, scope='global')        # or one rate over all layers
    pipeline.retrain(model, (images, labels), epochs=2)
    pipeline.share(model, bits=5)
    pipeline.save(model, 'model.dcz')
    pipeline.load('model.dcz', MyNet())              # a fresh instance, filled in
"""
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .container import load_compressed, save_compressed
from .prune import apply_masks, mask_gradients
from .quantization import apply_weight_sharing
from .structured import prune_structured

LOG_INTERVAL = 10  # batches between progress-bar updates


def prune(model: nn.Module, rates: float | dict[str, float], conv: str = 'element',
          fc: str = 'element', scope: str = 'local', norm: str = 'l1',
          unit_scores: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Zero and mask the lowest-scoring weights, or structures, of model's conv and fc layers.

    rates: percent of weights kept, per layer (a dict by module name; unnamed layers are
    left alone) or one number for every layer; with scope='global', one number for all
    layers together. conv / fc: the granularity (net.structured: element, kernel, channel
    or filter; element, row or column). unit_scores: per-unit scores (net.activations) to
    rank filters and fc rows by. Returns {layer: percent of its weights kept}.
    """
    return prune_structured(model, rates, conv=conv, fc=fc, norm=norm, scope=scope,
                            unit_scores=unit_scores)


def batches(data, batch_size: int, generator: torch.Generator | None = None) -> Iterator:
    """(inputs, targets) batches of data: a pair of tensors (shuffled with generator, if
    given) or any iterable of (inputs, targets) pairs (a DataLoader, a list)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(t, torch.Tensor) for t in data):
        inputs, targets = data
        if len(inputs) != len(targets):
            raise ValueError(f'{len(inputs)} inputs but {len(targets)} targets')
        order = torch.randperm(len(inputs), generator=generator) if generator else torch.arange(len(inputs))
        for start in range(0, len(inputs), batch_size):
            index = order[start:start + batch_size]
            yield inputs[index], targets[index]
        return
    for batch in data:
        inputs, targets = batch
        yield inputs, targets


def retrain(model: nn.Module, data, epochs: int = 1, lr: float = 1e-3, batch_size: int = 128,
            loss: Callable = F.cross_entropy, seed: int = 0) -> list[float]:
    """Train model with Adam for `epochs` on data (see batches), its pruned weights held
    at zero: their gradients are zeroed after every backward() and the masks re-applied
    after every step. Returns each epoch's mean loss."""
    if isinstance(data, Iterator) and epochs > 1:
        raise ValueError('an iterator is used up after one epoch: pass a re-iterable one (a '
                         'DataLoader or a list) or a pair of tensors')
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for epoch in range(1, epochs + 1):
        total, seen = 0.0, 0
        bar = tqdm(batches(data, batch_size, generator), desc=f'retrain {epoch}/{epochs}',
                   leave=False, mininterval=1)
        for step, (inputs, targets) in enumerate(bar):
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            value = loss(model(inputs), targets)
            value.backward()
            mask_gradients(model)
            optimizer.step()
            apply_masks(model)
            # Summed on the device: a read every step would stall a GPU.
            total, seen = total + value.detach().double() * len(targets), seen + len(targets)
            if step % LOG_INTERVAL == 0:
                bar.set_postfix(loss=f'{float(total) / seen:.3f}')
        if not seen:
            raise ValueError('retraining needs at least one batch of data')
        losses.append(float(total) / seen)
    return losses


def accuracy(model: nn.Module, data, batch_size: int = 1000) -> float:
    """Percent of data's samples (see batches) whose highest output is their target."""
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    correct = seen = 0
    with torch.no_grad():
        for inputs, targets in batches(data, batch_size):
            output = model(inputs.to(device))
            correct += int((output.argmax(1) == targets.to(device)).sum())
            seen += len(targets)
    model.train(training)
    if not seen:
        raise ValueError('accuracy needs at least one sample')
    return 100 * correct / seen


def share(model: nn.Module, bits: int | dict[str, int] = 5, init: str = 'linear') -> None:
    """k-means weight sharing of every conv and fc weight in place: 2**bits shared values
    per layer (a dict: per layer name), zeros kept zero."""
    apply_weight_sharing(model, bits, init)


def save(model: nn.Module, path: str) -> dict:
    """Write model as one .dcz file (atomically); the size report (bytes, ratio, per layer)."""
    return save_compressed(model, path)


def load(path: str, model: nn.Module | None = None, device: str | torch.device = 'cpu') -> nn.Module:
    """The model in a .dcz file: `model` (a fresh instance of its class) filled in, or a
    new model of this project's zoo when model is None."""
    return load_compressed(path, device, model)

