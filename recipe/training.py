"""The training loop of pruning.py (masked retraining) and weight_share.py (trained
quantization).

Batches come from datasets.batches on the training device (augmented for CIFAR); the learning rate
follows a one-cycle or constant schedule; after every backward() and every optimizer
step a hook runs (zero the pruned weights' gradients / re-apply the masks, or sum the
gradients per cluster / tie the weights to their centroids). Test accuracy is measured
after every epoch and appended to `history`.
"""
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from net.compact import compact_copy, parameter_count, write_back
from recipe import datasets
from recipe.settings import Training

MOMENTUM = 0.9
MIN_ONECYCLE_STEPS = 8
FUSED_DEVICES = ('cpu', 'cuda')


def make_optimizer(params: Iterable[torch.Tensor], name: str, lr: float, weight_decay: float,
                   schedule: str, total_steps: int) -> tuple:
    """(optimizer, per-step scheduler or None): Adam or Nesterov SGD; one-cycle or constant."""
    params = list(params)
    # One fused kernel per step instead of a dozen passes over the weights: a fifth of a
    # dense AlexNet step on the CPU is Adam's bookkeeping.
    fused = all(p.device.type in FUSED_DEVICES for p in params)
    if name == 'adam':
        optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    elif name == 'sgd':
        optimizer = torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, nesterov=True,
                                    weight_decay=weight_decay, fused=fused)
    else:
        raise ValueError(f'unknown optimizer {name!r}; use adam or sgd')
    # A handful of steps (smoke runs) leaves no room for a warm-up; OneCycleLR even fails
    # at exactly 4, where its warm-up phase has zero length.
    if schedule == 'constant' or total_steps < MIN_ONECYCLE_STEPS:
        return optimizer, None
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.25)
    return optimizer, scheduler


class Phase(NamedTuple):
    """One call of fit: its name in the progress bar and history, its epochs, the
    parameters the optimizer updates, and what runs after every backward() (zero the
    pruned weights' gradients; sum the gradients per cluster) and every optimizer step
    (re-apply the masks; tie the weights to their centroids)."""
    name: str
    epochs: int
    parameters: list
    after_backward: Callable[[], None]
    after_step: Callable[[], None]


class RunningSums:
    """An epoch's training loss and accuracy, summed on the device: a GPU would stall at
    every step were they read back there (read() copies them to the host). The loss sums
    in float64, exactly as Python floats summed each step's loss.item() before."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.seen = 0

    def add(self, loss: torch.Tensor, output: torch.Tensor, labels: torch.Tensor) -> None:
        """One batch's mean loss and outputs."""
        self.loss += loss.detach().double() * len(labels)
        self.correct += (output.argmax(1) == labels).sum()
        self.seen += len(labels)

    def read(self) -> tuple[float, float]:
        """(mean loss, accuracy %) so far: the one host read."""
        return self.loss.item() / self.seen, 100 * self.correct.item() / self.seen


def fit(model: torch.nn.Module, data: tuple, training: Training, phase: Phase,
        generator: torch.Generator, history: list) -> None:
    """Train model for phase.epochs on data = (train_x, train_y, test_x, test_y) with
    training's optimizer, schedule, batch size and augmentation (when the model's dataset
    calls for it: datasets.AUGMENTED); the test accuracy of every epoch goes to history.

    training.bf16: forward passes in bfloat16 autocast (mixed precision; the weights,
    their updates and the test accuracy stay float32)."""
    train_x, train_y, test_x, test_y = data
    steps = -(-len(train_y) // training.batch_size)
    epochs, augmentation = phase.epochs, training.augment
    optimizer, scheduler = make_optimizer(phase.parameters, training.optimizer, training.lr,
                                          training.weight_decay, training.schedule, epochs * steps)
    for epoch in range(1, epochs + 1):
        model.train()
        sums = RunningSums(train_y.device)
        bar = tqdm(datasets.batches(train_x, train_y, training.batch_size, generator, train=True,
                                 augmentation=augmentation if datasets.AUGMENTED[model.dataset] else 'none'),
                   total=steps, desc=f'{phase.name} {epoch}/{epochs}', leave=False, mininterval=1)
        for i, (x, y) in enumerate(bar):
            optimizer.zero_grad()
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=training.bf16):
                output = model(x)
            loss = F.nll_loss(output.float(), y)
            loss.backward()
            phase.after_backward()
            optimizer.step()
            phase.after_step()
            if scheduler is not None:
                scheduler.step()
            sums.add(loss, output, y)
            if i % training.log_interval == 0:
                train_loss, train_accuracy = sums.read()
                bar.set_postfix(loss=f'{train_loss:.3f}', acc=f'{train_accuracy:.1f}%')
        _, accuracy = datasets.evaluate(model, test_x, test_y, training.test_batch_size)
        train_loss, train_accuracy = sums.read()
        record = {'phase': phase.name, 'epoch': epoch, 'train_loss': train_loss,
                  'train_accuracy': train_accuracy, 'test_accuracy': accuracy}
        history.append(record)
        print(f'{phase.name} epoch {epoch}/{epochs}: loss {record["train_loss"]:.4f}, '
              f'train {record["train_accuracy"]:.2f}%, test {accuracy:.2f}%')


def train(model: torch.nn.Module, data: tuple, training: Training, epochs: int, phase: str,
          generator: torch.Generator, history: list) -> float:
    """Train for `epochs` with `training`'s settings; pruned weights stay exactly zero
    throughout. Returns the seconds per epoch (0 for no epochs).

    After backward() the gradients of pruned weights are zeroed, and after every
    optimizer step the masks are re-applied, so neither momentum nor weight decay
    can revive a pruned weight. With training.compact a compact copy of a pruned model
    (net.compact) trains in its place and its weights are written back.
    """
    started = time.time()
    compact = training.compact and any(
        hasattr(layer, 'weight_mask') for _, layer in model.prunable_layers())
    trained = model
    if compact:
        compacted = compact_copy(model)
        trained = compacted.model
        print(f'training a compact copy: {parameter_count(trained):,} of '
              f'{parameter_count(model):,} parameters')
    fit(trained, data, training, Phase(phase, epochs, list(trained.parameters()),
                                       trained.mask_gradients, trained.apply_masks),
        generator, history)
    if compact:
        write_back(model, compacted)
    return (time.time() - started) / epochs if epochs else 0.0
