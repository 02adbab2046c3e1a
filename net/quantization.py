"""Weight sharing: per layer, k-means over the non-zero weights; zeros stay zero."""
import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from .prune import prunable_layers


def check_bits(bits: int) -> int:
    """bits, if it is an integer from 1 to 16; ValueError otherwise."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f'bits must be an integer from 1 to 16, got {bits!r}')
    return bits


def initial_centroids(values: np.ndarray, k: int, init: str, seed: int = 0) -> np.ndarray:
    """k starting centroids for 1-D values: the paper's three initialisations.

    linear: evenly spaced between min and max (the slides'); random (Forgy): k distinct
    values drawn at random; density: evenly spaced in the values' CDF (quantiles), so
    dense regions get more centroids.
    """
    if init == 'linear':
        return np.linspace(values.min(), values.max(), num=k)
    if init == 'random':
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(np.unique(values), size=k, replace=False))
    if init == 'density':
        return np.unique(np.quantile(values, np.linspace(0, 1, num=k)))
    raise ValueError(f'unknown centroid initialisation {init!r}; use one of {INITS}')


INITS = ('linear', 'random', 'density')


def share_weights(weight: np.ndarray, bits: int, init: str = 'linear', seed: int = 0) -> np.ndarray:
    """A copy of `weight` (numpy, any shape) whose non-zeros hold at most 2**bits values.

    k-means (scikit-learn, centroids from initial_centroids; linear as the slides do)
    over the non-zero weights; every weight is replaced by its centroid, zeros and
    positions unchanged. A layer with no more distinct non-zeros than clusters is
    returned as it is: sharing would not change a value.
    """
    check_bits(bits)
    shared = weight.copy()
    nonzero = weight != 0
    values = weight[nonzero].astype(np.float64)
    if len(np.unique(values)) <= 2 ** bits:
        return shared
    start = initial_centroids(values, 2 ** bits, init, seed)
    kmeans = KMeans(n_clusters=len(start), init=start.reshape(-1, 1), n_init=1,
                    algorithm='lloyd', random_state=seed)
    labels = kmeans.fit_predict(values.reshape(-1, 1))
    centroids = kmeans.cluster_centers_.reshape(-1).astype(weight.dtype)
    shared[nonzero] = nonzero_centroids(centroids)[labels]
    return shared


def nonzero_centroids(centroids: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """A centroid could round to exactly 0 in float32; keep pruned and kept apart.
    In place, on a numpy array or a torch tensor (masked_fill_: a GPU needs no host read)."""
    if isinstance(centroids, torch.Tensor):
        return centroids.masked_fill_(centroids == 0, torch.finfo(centroids.dtype).tiny)
    centroids[centroids == 0] = np.finfo(centroids.dtype).tiny
    return centroids


def apply_weight_sharing(model: nn.Module, bits: int | dict[str, int] = 5, init: str = 'linear') -> None:
    """Weight-share every conv (4-D) and fc (2-D) weight of model in place.

    bits: an int for all layers, or a dict layer name -> bits (missing layers: 5).
    init: 'linear' (the slides'), 'random' or 'density' centroid initialisation.
    """
    if init not in INITS:
        raise ValueError(f'unknown centroid initialisation {init!r}; use one of {INITS}')
    per_layer = validate_bits(model, bits)
    for name, module in prunable_layers(model):
        layer_bits = per_layer[name]
        weight = module.weight.data
        shared = share_weights(weight.cpu().numpy(), layer_bits, init)
        weight.copy_(torch.from_numpy(shared))


def validate_bits(model: nn.Module, bits: int | dict[str, int]) -> dict[str, int]:
    """bits (an int, or a dict layer name -> int, missing layers 5) as a checked dict
    covering every conv and fc layer of model."""
    names = [name for name, _ in prunable_layers(model)]
    if not isinstance(bits, dict):
        return dict.fromkeys(names, check_bits(bits))
    unknown = sorted(set(bits) - set(names))
    if unknown:
        raise ValueError(f'unknown layer name(s) {unknown} in --bits; valid names are {names}')
    return {name: check_bits(bits.get(name, 5)) for name in names}


class SharedWeights:
    """Trained quantization (the paper's step 4) of a weight-shared model.

    Each conv and fc layer's distinct non-zero values become trainable centroids; every
    non-zero weight stays assigned to its centroid, so the gradient of a centroid is the
    sum of the gradients of its weights. Zeros and assignments never change, so a layer
    keeps at most as many distinct values as it had. Use: after loss.backward(), call
    accumulate_gradients(); step an optimizer over parameters(); call write_back().
    """

    def __init__(self, model):
        self.layers = []
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                flat = module.weight.data.view(-1)
                index = flat.nonzero().view(-1)
                values, labels = torch.unique(flat[index], return_inverse=True)
                self.layers.append((module, index, labels, nn.Parameter(values.clone())))

    def parameters(self) -> list[nn.Parameter]:
        """The trainable centroids, one tensor per layer, for an optimizer."""
        return [centroids for *_, centroids in self.layers]

    def accumulate_gradients(self) -> None:
        """Each centroid's gradient: the sum of its weights' gradients from the last
        backward(). The weights' own gradients are then cleared: no optimizer holds the
        weights, so nothing else would, and the next backward() would add to them."""
        for module, index, labels, centroids in self.layers:
            grad = module.weight.grad.view(-1)[index]
            centroids.grad = torch.zeros_like(centroids).index_add_(0, labels, grad)
            module.weight.grad = None

    def write_back(self) -> None:
        """Set every non-zero weight to its (updated) centroid; zeros stay zero."""
        with torch.no_grad():
            for module, index, labels, centroids in self.layers:
                module.weight.data.view(-1)[index] = nonzero_centroids(centroids)[labels]
