import numpy as np
import pytest
import torch

from net.quantization import apply_weight_sharing, share_weights


def sparse_weights(shape, kept=0.3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) > kept] = 0
    return w


@pytest.mark.parametrize('shape', [(40, 30), (8, 4, 3, 3)])
@pytest.mark.parametrize('bits', [1, 2, 5])
def test_sharing_leaves_at_most_2_to_the_bits_values_and_the_zeros(shape, bits):
    w = sparse_weights(shape)
    shared = share_weights(w, bits)
    assert shared.shape == w.shape and shared.dtype == np.float32
    assert len(np.unique(shared[shared != 0])) <= 2 ** bits
    assert np.array_equal(shared != 0, w != 0)
    # Each weight moved to a nearby centroid, not anywhere.
    spread = w[w != 0].max() - w[w != 0].min()
    assert np.abs(shared - w).max() <= spread / 2 ** bits * 2


def test_clustering_actually_reduces_error_against_linear_bins():
    w = sparse_weights((200, 100))
    shared = share_weights(w, 3)
    nz = w != 0
    bins = np.linspace(w[nz].min(), w[nz].max(), 8)
    binned = bins[np.abs(w[nz, None] - bins).argmin(1)]
    assert ((shared[nz] - w[nz]) ** 2).sum() < ((binned - w[nz]) ** 2).sum()


@pytest.mark.parametrize('values', [[], [0.5], [0.5, -0.25, 0.5]])
def test_layers_with_few_or_no_nonzeros(values):
    w = np.zeros((6, 5), dtype=np.float32)
    w.flat[:len(values)] = values
    assert np.array_equal(share_weights(w, 5), w)


def test_apply_weight_sharing_on_conv_and_fc(tiny):
    tiny.prune_by_percentile(40)
    zeros = {n: m.weight.data == 0 for n, m in tiny.prunable_layers()}
    apply_weight_sharing(tiny, {'conv1': 2, 'fc1': 3})  # fc2 defaults to 5
    for (name, layer), bits in zip(tiny.prunable_layers(), (2, 3, 5), strict=True):
        w = layer.weight.data
        assert len(torch.unique(w)) <= 2 ** bits + 1, name
        assert torch.equal(w == 0, zeros[name]), name
        assert torch.equal(w != 0, layer.weight_mask.bool()), name


@pytest.mark.parametrize('bits', [0, 17, 2.5, True])
def test_bad_bits_are_refused(tiny, bits):
    with pytest.raises(ValueError, match='bits must be an integer from 1 to 16'):
        apply_weight_sharing(tiny, bits)


def test_unknown_layer_in_bits_dict(tiny):
    with pytest.raises(ValueError, match='unknown layer'):
        apply_weight_sharing(tiny, {'conv9': 4})
