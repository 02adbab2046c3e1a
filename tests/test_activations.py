"""Activation-based pruning criteria (net.activations) on the tiny conv + fc model, where
the right choice is known: a unit a ReLU always silences, and units that copy another."""
import pytest
import torch
import torch.nn.functional as F

from net.activations import activation_scores, similar_units
from net.structured import prune_structured


@pytest.fixture
def batches():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(48, 3, 32, 32, generator=g)
    return [images[:16], (images[16:32], torch.zeros(16)), [images[32:], None]]  # all three forms


def silence_fc1_unit_0(model):
    """fc1's unit 0 gets the largest weights, and a bias no input overcomes: ReLU zeroes it."""
    with torch.no_grad():
        model.fc1.weight[0] = 1.0
        model.fc1.bias[0] = -1e6


def fc1_inputs(model, images):
    return F.max_pool2d(F.relu(model.conv1(images)), 4).flatten(1)


def test_scores_are_the_activations_the_next_layer_reads(tiny, batches):
    images = torch.cat([b if torch.is_tensor(b) else b[0] for b in batches])
    with torch.no_grad():
        conv = fc1_inputs(tiny, images).view(48, 4, 64)
        fc1 = F.relu(tiny.fc1(fc1_inputs(tiny, images)))
        fc2 = tiny.fc2(fc1)
    mean_abs = activation_scores(tiny, batches)
    l2 = activation_scores(tiny, batches, 'l2')
    torch.testing.assert_close(mean_abs['conv1'], conv.abs().mean((0, 2)))
    torch.testing.assert_close(mean_abs['fc1'], fc1.abs().mean(0))
    torch.testing.assert_close(mean_abs['fc2'], fc2.abs().mean(0))
    torch.testing.assert_close(l2['conv1'], conv.square().sum(2).sqrt().mean(0))
    torch.testing.assert_close(l2['fc1'], fc1.abs().mean(0))  # one position: the norm is |a|


def test_empty_batches_change_nothing(tiny, batches):
    with_empty = [torch.zeros(0, 3, 32, 32), *batches]
    for statistic in ('mean_abs', 'l2'):
        assert all(torch.equal(a, b) for a, b in zip(activation_scores(tiny, batches, statistic).values(),
                                                     activation_scores(tiny, with_empty, statistic).values(),
                                                     strict=True))


def test_scoring_leaves_the_model_as_it_was(tiny, batches):
    tiny.train()
    activation_scores(tiny, batches)
    similar_units(tiny, batches)
    assert tiny.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in tiny.modules())


def test_silent_units_go_first_by_activation_though_the_weights_rank_one_first(tiny, batches):
    silence_fc1_unit_0(tiny)
    scores = activation_scores(tiny, batches)['fc1']
    silent = scores == 0
    assert silent[0] and 1 < silent.sum() < 8  # unit 0, and a few that ReLU silences anyway
    assert tiny.unit_salience('fc1').argmax() == 0  # the weight criterion ranks it first
    tiny.keep_units('fc1', int((~silent).sum()), salience=scores)
    assert torch.equal((tiny.fc1.weight != 0).any(1), ~silent)
    assert torch.equal((tiny.fc2.weight != 0).any(0), ~silent)


def test_the_weight_criterion_drops_another_unit(tiny, batches):
    silence_fc1_unit_0(tiny)
    weakest = int(tiny.unit_salience('fc1').argmin())
    tiny.keep_units('fc1', 15)
    assert (tiny.fc1.weight[0] != 0).all() and (tiny.fc1.weight[weakest] == 0).all()


def test_filters_and_rows_pruned_by_activation(tiny, batches):
    silence_fc1_unit_0(tiny)
    scores = activation_scores(tiny, batches, 'l2')
    kept = prune_structured(tiny, {'conv1': 50, 'fc1': 50, 'fc2': 100}, unit_scores=scores)
    assert kept == {'conv1': 50.0, 'fc1': 50.0, 'fc2': 100.0}
    rows = (tiny.fc1.weight != 0).any(1)
    assert not rows[0] and torch.equal(rows, scores['fc1'] >= scores['fc1'].sort().values[8])
    filters = (tiny.conv1.weight != 0).flatten(1).any(1)
    assert torch.equal(filters, scores['conv1'] >= scores['conv1'].sort().values[2])


def test_silent_units_count_towards_the_percent_kept(tiny, batches):
    silence_fc1_unit_0(tiny)
    scores = activation_scores(tiny, batches)
    assert (scores['fc1'] == 0).sum() > 1
    assert prune_structured(tiny, 100, unit_scores=scores) == {'conv1': 100.0, 'fc1': 100.0, 'fc2': 100.0}
    prune_structured(tiny, {'conv1': 100, 'fc1': 50, 'fc2': 100}, unit_scores=scores)
    assert torch.equal((tiny.fc1.weight != 0).any(1), scores['fc1'] >= scores['fc1'].sort().values[8])
    # a second cut ranks the units left; the pruned ones stay out
    prune_structured(tiny, {'conv1': 100, 'fc1': 25, 'fc2': 100}, unit_scores=scores)
    assert torch.equal((tiny.fc1.weight != 0).any(1), scores['fc1'] >= scores['fc1'].sort().values[12])


def test_unit_scores_need_whole_units_and_one_score_each(tiny, batches):
    scores = activation_scores(tiny, batches)
    with pytest.raises(ValueError, match="conv1 needs the conv granularity 'filter', not 'kernel'"):
        prune_structured(tiny, 50, conv='kernel', unit_scores=scores)
    with pytest.raises(ValueError, match=r'fc1 has 16 units, its unit scores have shape \(3,\)'):
        prune_structured(tiny, 50, unit_scores={'fc1': torch.ones(3)})
    with pytest.raises(ValueError, match="unit scores rank the units within each layer: use scope='local'"):
        prune_structured(tiny, 50, scope='global', unit_scores=scores)
    with pytest.raises(ValueError, match="unknown layer name 'fc9'"):
        prune_structured(tiny, 50, unit_scores={'fc9': torch.ones(3)})
    with pytest.raises(ValueError, match=r'fc1 has 16 units, the salience given has shape \(4,\)'):
        tiny.keep_units('fc1', 8, salience=torch.ones(4))


def test_copies_of_a_unit_are_found_and_the_first_one_kept(tiny, batches):
    with torch.no_grad():
        tiny.fc1.weight[8] = tiny.fc1.weight[6]
        tiny.fc1.bias[8] = tiny.fc1.bias[6]
        tiny.fc1.weight[10] = 2 * tiny.fc1.weight[6]  # twice the activation: the same direction
        tiny.fc1.bias[10] = 2 * tiny.fc1.bias[6]
        tiny.conv1.weight[2] = tiny.conv1.weight[1]
        tiny.conv1.bias[2] = tiny.conv1.bias[1]
    removed = similar_units(tiny, batches, threshold=0.9999)
    exact = similar_units(tiny, batches, threshold=1)  # exact copies reach 1
    assert {k: v.tolist() for k, v in exact.items()} == {k: v.tolist() for k, v in removed.items()}
    assert set(removed) == {'conv1', 'fc1'}  # never the outputs
    assert removed['conv1'].tolist() == [2]
    assert removed['fc1'].tolist() == [8, 10]
    tiny.remove_units('fc1', removed['fc1'])
    assert torch.equal((tiny.fc1.weight != 0).any(1), ~torch.isin(torch.arange(16), removed['fc1']))
    assert (tiny.fc2.weight[:, [8, 10]] == 0).all() and (tiny.fc2.weight_mask[:, [8, 10]] == 0).all()


def test_silent_units_are_not_duplicates(tiny, batches):
    silence_fc1_unit_0(tiny)
    with torch.no_grad():
        tiny.fc1.weight[1], tiny.fc1.bias[1] = tiny.fc1.weight[0], tiny.fc1.bias[0]
    assert similar_units(tiny, batches, threshold=0.9999)['fc1'].tolist() == []


def test_bad_arguments_are_refused(tiny, batches):
    with pytest.raises(ValueError, match="unknown activation statistic 'max'"):
        activation_scores(tiny, batches, 'max')
    with pytest.raises(ValueError, match='at least one calibration batch'):
        activation_scores(tiny, [])
    with pytest.raises(ValueError, match='at least one calibration batch'):
        similar_units(tiny, [torch.zeros(0, 3, 32, 32)])
    with pytest.raises(ValueError, match=r'threshold is in \(0, 1\], got 1.5'):
        similar_units(tiny, batches, threshold=1.5)
