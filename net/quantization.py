"""Weight sharing: per layer, k-means over the non-zero weights; zeros stay zero."""
import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn


def check_bits(bits):
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f'bits must be an integer from 1 to 16, got {bits!r}')
    return bits


def share_weights(weight, bits, seed=0):
    """A copy of `weight` (numpy, any shape) whose non-zeros hold at most 2**bits values.

    k-means (scikit-learn, centroids initialised linearly between min and max, as the
    slides do) over the non-zero weights; every weight is replaced by its centroid,
    zeros and positions unchanged. A layer with no more distinct non-zeros than
    clusters is returned as it is: sharing would not change a value.
    """
    check_bits(bits)
    shared = weight.copy()
    nonzero = weight != 0
    values = weight[nonzero].astype(np.float64)
    if len(np.unique(values)) <= 2 ** bits:
        return shared
    space = np.linspace(values.min(), values.max(), num=2 ** bits)
    kmeans = KMeans(n_clusters=len(space), init=space.reshape(-1, 1), n_init=1,
                    algorithm='lloyd', random_state=seed)
    labels = kmeans.fit_predict(values.reshape(-1, 1))
    centroids = kmeans.cluster_centers_.reshape(-1).astype(weight.dtype)
    # A centroid could round to exactly 0 in float32; keep pruned and kept apart.
    centroids[centroids == 0] = np.finfo(weight.dtype).tiny
    shared[nonzero] = centroids[labels]
    return shared


def apply_weight_sharing(model, bits=5):
    """Weight-share every conv (4-D) and fc (2-D) weight of model in place.

    bits: an int for all layers, or a dict layer name -> bits (missing layers: 5).
    """
    per_layer = bits if isinstance(bits, dict) else {}
    default = 5 if isinstance(bits, dict) else check_bits(bits)
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    unknown = sorted(set(per_layer) - {name for name, _ in layers})
    if unknown:
        raise ValueError(f'unknown layer name(s) {unknown} in bits; valid names are '
                         f'{[name for name, _ in layers]}')
    for name, module in layers:
        layer_bits = check_bits(per_layer.get(name, default))
        weight = module.weight.data
        shared = share_weights(weight.cpu().numpy(), layer_bits)
        weight.copy_(torch.from_numpy(shared))
