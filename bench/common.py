"""Shared by the benchmarks: the model to measure."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from net.checkpoint import load_model  # noqa: E402
from net.models import AlexNet  # noqa: E402
from net.prune import DEFAULT_PRUNE_RATE  # noqa: E402
from net.quantization import apply_weight_sharing  # noqa: E402


def final_or_synthetic_model(path):
    """The pipeline's final model if it exists, else a random AlexNet pruned at the paper's
    rates and weight-shared at 5 bits (same sizes, so the same amount of work)."""
    if os.path.isfile(path):
        print(f'model: {path}')
        return load_model(path)
    print(f'model: {path} not found; using a random AlexNet pruned at the paper\'s rates, 5 bits')
    torch.manual_seed(0)
    model = AlexNet()
    model.prune_by_percentile(DEFAULT_PRUNE_RATE)
    apply_weight_sharing(model, 5)
    return model
