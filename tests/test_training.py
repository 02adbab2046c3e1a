"""The training step never reads back to the host: loss and accuracy are summed on the
device and read at the log interval and at the end of an epoch, to the same figures a
per-step read gave."""
import pytest
import torch

import pruning
from recipe import settings, training
from recipe.training import Phase, fit


def one_epoch(model, data, log_interval, history):
    args = pruning.parse_args(['--batch-size', '16', '--log-interval', str(log_interval)])
    phase = Phase('t', 1, list(model.parameters()), lambda: None, lambda: None)
    fit(model, data, settings.initial_training(args), phase, torch.Generator().manual_seed(0), history)


@pytest.mark.parametrize('log_interval, logged', [(1, 4), (3, 2), (100, 1)])
def test_the_step_loop_reads_the_host_only_at_the_log_interval(tiny, synthetic_data, monkeypatch,
                                                                log_interval, logged):
    reads = []
    real = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, 'item', lambda tensor: reads.append(1) or real(tensor))
    one_epoch(tiny, synthetic_data, log_interval, [])  # 64 images, 4 steps of 16
    # (loss, correct) at each logged step and at the epoch's end; (loss, correct) of the test.
    assert len(reads) == 2 * logged + 2 + 2


def test_the_epoch_figures_are_those_of_a_read_at_every_step(tiny, synthetic_data, monkeypatch):
    losses, outputs = [], []
    real = training.F.nll_loss

    def recorded(output, labels, **test_pass):  # evaluate() sums with reduction='sum'
        loss = real(output, labels, **test_pass)
        if test_pass:
            return loss
        losses.append((loss.item(), len(labels)))
        outputs.append(int((output.argmax(1) == labels).sum()))
        return loss
    monkeypatch.setattr(training.F, 'nll_loss', recorded)
    history = []
    one_epoch(tiny, synthetic_data, 10, history)
    total = 0.0
    for loss, n in losses:  # the old loop's sum: Python floats, in step order
        total += loss * n
    seen = sum(n for _, n in losses)
    assert history[0]['train_loss'] == total / seen
    assert history[0]['train_accuracy'] == 100 * sum(outputs) / seen
