"""Structured pruning: whole structures, the requested share, the best-scoring ones kept."""
import pytest
import torch

import pruning
from net.structured import prune_structured, structure_scores


def ranked(tiny):
    """Give every weight the magnitude of its index, so that scores are predictable."""
    with torch.no_grad():
        for _, layer in tiny.prunable_layers():
            n = layer.weight.numel()
            layer.weight.copy_(torch.arange(1, n + 1, dtype=torch.float32).view_as(layer.weight))
    return tiny


# (granularity, the dims that index one structure) for conv (4, 3, 3, 3) and fc weights
CONV = [('element', (0, 1, 2, 3)), ('kernel', (0, 1)), ('channel', (1,)), ('filter', (0,))]
FC = [('element', (0, 1)), ('row', (0,)), ('column', (1,))]


def structures_are_whole(mask, structure_dims):
    """Every structure's mask is all ones or all zeros."""
    reduced = tuple(d for d in range(mask.dim()) if d not in structure_dims)
    if not reduced:
        return True
    low, high = mask.amin(dim=reduced), mask.amax(dim=reduced)
    return bool((low == high).all())


@pytest.mark.parametrize('conv, conv_dims', CONV)
@pytest.mark.parametrize('fc, fc_dims', FC)
def test_masks_are_whole_structures_at_the_requested_share(tiny, conv, conv_dims, fc, fc_dims):
    ranked(tiny)
    kept = prune_structured(tiny, 50, conv=conv, fc=fc)
    for name, layer in tiny.prunable_layers():
        dims = conv_dims if name == 'conv1' else fc_dims
        assert structures_are_whole(layer.weight_mask, dims), name
        structures = torch.tensor([layer.weight.shape[d] for d in dims]).prod()
        assert abs(kept[name] - 50) <= 50 / structures + 1e-4, name  # nearest whole structure
        assert torch.equal(layer.weight != 0, layer.weight_mask.bool()), name


def test_the_highest_scoring_filters_and_columns_are_kept(tiny):
    ranked(tiny)
    prune_structured(tiny, 25, conv='filter', fc='column')
    # filters are ranked by index (later filters hold larger values): the last one stays
    assert tiny.conv1.weight_mask.sum((1, 2, 3)).tolist() == [0, 0, 0, 27]
    # fc2 (10, 16) column j holds j + 1, j + 17, ...: the last 4 columns stay
    assert tiny.fc2.weight_mask.sum(0).nonzero().flatten().tolist() == [12, 13, 14, 15]


def test_l1_and_l2_rank_differently():
    # structure 0: one large weight; structure 1: the same total spread evenly
    weight = torch.tensor([[4.0, 0, 0, 0], [1, 1, 1, 1.1]])
    l1 = structure_scores(weight, 'fc', 'row', 'l1').flatten()
    l2 = structure_scores(weight, 'fc', 'row', 'l2').flatten()
    assert l1[1] > l1[0] and l2[0] > l2[1]


def test_global_scope_keeps_more_of_the_larger_layer(tiny):
    with torch.no_grad():
        tiny.fc1.weight.fill_(0.01)
        tiny.fc2.weight.fill_(1.0)
        tiny.conv1.weight.fill_(0.001)
    kept = prune_structured(tiny, 10, conv='filter', fc='row', scope='global')
    total = sum(layer.weight.numel() for _, layer in tiny.prunable_layers())
    kept_weights = sum(int(layer.weight_mask.sum()) for _, layer in tiny.prunable_layers())
    assert kept['fc2'] == 100 and kept['conv1'] == 0
    assert kept_weights <= 0.1 * total and kept_weights > 0.1 * total - 256  # one fc1 row short at most


def test_pruned_structures_stay_zero_through_training(tiny):
    prune_structured(tiny, 50, conv='kernel', fc='row')
    optimizer = torch.optim.SGD(tiny.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(3):
        tiny(torch.randn(4, 3, 32, 32)).sum().backward()
        tiny.mask_gradients()
        optimizer.step()
        tiny.apply_masks()
    for name, layer in tiny.prunable_layers():
        assert torch.equal((layer.weight != 0), layer.weight_mask.bool()), name


def test_a_second_call_never_revives_weights(tiny):
    prune_structured(tiny, 50, conv='filter', fc='row')
    first = {name: layer.weight_mask.clone() for name, layer in tiny.prunable_layers()}
    prune_structured(tiny, 75, conv='channel', fc='column')
    for name, layer in tiny.prunable_layers():
        assert (layer.weight_mask <= first[name]).all(), name


@pytest.mark.parametrize('kwargs, message', [
    ({'conv': 'row'}, "unknown conv granularity 'row'"),
    ({'fc': 'filter'}, "unknown fc granularity 'filter'"),
    ({'norm': 'l3'}, "unknown norm 'l3'"),
    ({'scope': 'everywhere'}, "unknown scope 'everywhere'"),
])
def test_bad_options_are_refused(tiny, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prune_structured(tiny, 50, **kwargs)


def test_global_scope_takes_one_number(tiny):
    with pytest.raises(ValueError, match='global pruning takes one percent'):
        prune_structured(tiny, {'fc1': 5}, scope='global')


def test_pruning_script_cuts_whole_filters_and_rows(tiny, monkeypatch):
    monkeypatch.setattr(pruning.util, 'test', lambda *a, **k: 0.0)
    args = pruning.parse_args(['--granularity', 'filter', '--fc-granularity', 'row'])
    pruning.prune_round(tiny, args, None, {'conv1': 50, 'fc1': 25, 'fc2': 100})
    assert tiny.conv1.weight_mask.sum((1, 2, 3)).tolist().count(0) == 2
    assert (tiny.fc1.weight_mask.sum(1) == 0).sum() == 12


def test_pruning_script_global_scope(tiny, monkeypatch, capsys):
    monkeypatch.setattr(pruning.util, 'test', lambda *a, **k: 0.0)
    args = pruning.parse_args(['--scope', 'global', '--global-rate', '10', '--norm', 'l2'])
    pruning.prune_round(tiny, args, None, 10)
    kept = sum(int(m.weight_mask.sum()) for _, m in tiny.prunable_layers())
    total = sum(m.weight.numel() for _, m in tiny.prunable_layers())
    assert kept == round(0.1 * total)  # element granularity: exactly 10% of all weights
    with pytest.raises(SystemExit):
        pruning.parse_args(['--scope', 'global'])
    assert 'go together' in capsys.readouterr().err
