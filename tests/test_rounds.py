"""The round engine (recipe/rounds.py): the pure schedule, the loop, and its stop rules,
driven by stub callables on a tiny model."""
import importlib.util
import os
import time

import pytest
import torch

import pruning
from recipe import rounds, settings
from recipe.rounds import AccuracyFloor, TargetRatio, TimeLimit, round_rates, schedule
from tests.conftest import ROOT


# ---------------------------------------------------------------- the schedule
def test_round_rates_shrink_geometrically_to_the_target():
    plan = round_rates({'fc1': 1, 'conv1': 64, 'fc3': 100}, 4)
    assert len(plan) == 4
    assert plan[-1] == pytest.approx({'fc1': 1, 'conv1': 64, 'fc3': 100})
    fc1 = [r['fc1'] for r in plan]
    assert fc1 == pytest.approx([100 * 0.01 ** (k / 4) for k in range(1, 5)])
    assert [r['conv1'] for r in plan] == pytest.approx([64 ** (k / 4) * 100 ** (1 - k / 4)
                                                        for k in range(1, 5)])


def test_round_spans_reach_the_rate_sooner_and_stay():
    plan = round_rates({'fc2': 1, 'conv1': 64}, 4, {'fc2': 0.5})
    assert [r['fc2'] for r in plan] == pytest.approx([10, 1, 1, 1])
    assert [r['conv1'] for r in plan] == pytest.approx(
        [r['conv1'] for r in round_rates({'conv1': 64}, 4)])


def test_the_schedule_gives_each_round_its_cut_epochs_and_settings():
    plan = schedule({'conv1': 64, 'fc2': 1}, 4, {'fc2': 0.5}, {'fc1': 25}, [3, 6],
                    {2: {'re_lr': 0.01}, 4: {'re_augment': 'flip'}})
    assert [step.number for step in plan] == [1, 2, 3, 4]
    assert [step.rates for step in plan] == round_rates({'conv1': 64, 'fc2': 1}, 4, {'fc2': 0.5})
    assert [step.unit_rates['fc1'] for step in plan] == pytest.approx([25 ** (k / 4) * 100 ** (1 - k / 4)
                                                                        for k in range(1, 5)])
    assert [step.epochs for step in plan] == [3, 6, 6, 6]  # the last entry repeats
    assert [step.settings for step in plan] == [  # a later round's add to (or replace) earlier ones
        {}, {'re_lr': 0.01}, {'re_lr': 0.01}, {'re_lr': 0.01, 're_augment': 'flip'}]
    assert [step.last for step in plan] == [False, False, False, True]


def test_a_global_rate_or_a_cut_by_std_schedule_one_number_or_one_round():
    assert [step.rates for step in schedule(1.0, 2)] == pytest.approx([10, 1])
    (only,) = schedule(None, 5)  # prune_by_std: one cut, whatever --prune-rounds says
    assert (only.rates, only.unit_rates, only.last) == (None, None, True)


# ---------------------------------------------------------------- the loop
class Stub:
    """Steps for the round loop: a real cut of the model by the round's rates (and unit
    rates), stub retraining that records (round, epochs, settings) and returns `seconds`
    in turn (default 1 s per epoch), and `accuracies` in turn as the test accuracy (per
    round: after the cut, after retraining)."""

    def __init__(self, model, accuracies, seconds=None):
        self.model, self.answers = model, iter(accuracies)
        self.seconds = iter(seconds) if seconds is not None else None
        self.trained, self.logged = [], []

    def cut(self, step):
        self.model.prune_by_percentile(step.rates)
        record = {'rates': step.rates}
        if step.unit_rates:
            record['unit_rates'] = step.unit_rates
            self.model.prune_units(step.unit_rates)
        return record | {'accuracy_after_pruning': next(self.answers)}

    def train(self, step, epochs):
        self.trained.append((step.number, epochs, step.settings))
        return next(self.seconds) if self.seconds else 1.0

    def describe(self):
        return {'alive': sum(int(layer.weight.count_nonzero()) for _, layer in self.model.prunable_layers())}

    def steps(self):
        return rounds.Steps(self.cut, self.train, lambda: next(self.answers), self.describe,
                            lambda number, record: self.logged.append(number))


class TimesOut(TimeLimit):
    """A time limit that runs out when `answers` (one per round, in turn) says so, and
    collects the per-epoch seconds it judges by."""

    def __init__(self, answers, epoch_seconds=0.0):
        super().__init__(60, 7, time.time(), epoch_seconds)
        self.answers, self.judged = iter(answers), []

    def out_of_time(self, round_seconds):
        self.judged.append(self.epoch_seconds)
        return next(self.answers)


def run(model, stub, rules=(), n=5, **plan):
    """The loop over n rounds toward fc2 keeping 1%, 7 final epochs."""
    return rounds.run(model, schedule({'conv1': 100, 'fc1': 100, 'fc2': 1}, n, **plan),
                      stub.steps(), rules, final_epochs=7)


def fc2_kept(model):
    """Percent of fc2's 160 weights kept (to within one weight: abs=100 / 160)."""
    return 100 * int(model.fc2.weight.count_nonzero()) / model.fc2.weight.numel()


def tables():
    """docs/tables.py as a module."""
    spec = importlib.util.spec_from_file_location('tables', os.path.join(ROOT, 'docs', 'tables.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_round_is_cut_retrained_and_logged_and_the_last_gets_the_final_epochs(tiny):
    stub = Stub(tiny, [60] * 10)
    records = run(tiny, stub)
    assert [(number, epochs) for number, epochs, _ in stub.trained] == [(1, 2), (2, 2), (3, 2),
                                                                        (4, 2), (5, 7)]
    assert stub.logged == [1, 2, 3, 4, 5] and len(records) == 5
    assert fc2_kept(tiny) == pytest.approx(1, abs=100 / 160)


def test_time_limit_ends_the_rounds_with_the_final_epochs(tiny):
    stub = Stub(tiny, [60] * 5)
    records = run(tiny, stub, [TimesOut([False, True])])
    assert [epochs for _, epochs, _ in stub.trained] == [2, 2, 7]  # time runs out after round 2
    assert [r.get('ended_by') for r in records] == [None, None, 'time limit']
    assert records[-1]['round'] == 2 and stub.logged == [1, 2, 2]
    assert tables().rounds({'rounds': records})[-1].startswith('| 2, final epochs (time limit) |')
    assert fc2_kept(tiny) == pytest.approx(100 * 0.01 ** (2 / 5), abs=100 / 160)  # round 2's share


def test_below_the_floor_goes_back_even_when_out_of_time(tiny):
    # Round 2 retrains to 40%, under the floor, when time has also run out: round 1
    # (65%) comes back for the final epochs, as without a time limit.
    stub = Stub(tiny, [60, 65, 55, 40, 62])
    records = run(tiny, stub, [AccuracyFloor(50, 7), TimesOut([False, True])])
    assert [epochs for _, epochs, _ in stub.trained] == [2, 2, 7]
    assert [r.get('back_to_round') for r in records] == [None, None, 1]
    assert 'ended_by' not in records[-1] and records[-1]['accuracy_after_retraining'] == 62


def test_min_accuracy_goes_back_to_the_last_good_round(tiny):
    # Round 3 falls below 50%, so round 2's model (weights and masks) comes back for the
    # final epochs.
    stub = Stub(tiny, [60, 65, 55, 60, 30, 45, 62])
    floor = AccuracyFloor(50, 7)
    records = run(tiny, stub, [floor])
    assert [epochs for _, epochs, _ in stub.trained] == [2, 2, 2, 7]  # rounds 1-3, then round 2 again
    assert torch.equal(tiny.fc2.weight_mask, floor.kept[0]['fc2.weight_mask'])
    assert fc2_kept(tiny) == pytest.approx(100 * 0.01 ** (2 / 5), abs=100 / 160)  # round 2's share
    assert [r.get('back_to_round') for r in records] == [None, None, None, 2]
    assert records[-1]['accuracy_after_retraining'] == 62 and records[-1]['round'] == 2


def test_below_the_floor_with_no_round_to_go_back_to_goes_on(tiny):
    stub = Stub(tiny, [40, 45] + [60] * 8)
    records = run(tiny, stub, [AccuracyFloor(50, 7)])
    assert len(records) == 5 and 'back_to_round' not in records[-1]


def test_rounds_get_their_listed_epochs_and_the_last_entry_repeats(tiny):
    stub = Stub(tiny, [60] * 10)
    run(tiny, stub, round_epochs=[1, 3])
    assert [epochs for _, epochs, _ in stub.trained] == [1, 3, 3, 3, 7]  # round 5: the final epochs


def test_the_time_limit_judges_the_final_epochs_by_the_last_rounds_epochs(tiny):
    # Initial epochs take 50 s, round epochs 20 s, 10 s, (none), 8 s: the final epochs run
    # on the last round's network, so its time counts, not the slow initial epochs'.
    limit = TimesOut([False] * 4, epoch_seconds=50.0)
    run(tiny, Stub(tiny, [60] * 10, seconds=[20.0, 10.0, 0.0, 8.0, 7.0]), [limit])
    assert limit.judged == [20.0, 10.0, 10.0, 8.0]  # round 3 has no epochs: round 2's stand


def test_out_of_time_judges_by_the_last_round():
    limit = TimeLimit(10, 4, time.time() - 300, epoch_seconds=40)
    assert not limit.out_of_time(round_seconds=100)  # 5 + 1.7 + 2.7 = 9.3 minutes
    limit.epoch_seconds = 60
    assert limit.out_of_time(round_seconds=100)  # 10.7 minutes


def test_round_settings_hold_from_their_round_on(tiny):
    stub = Stub(tiny, [60] * 10)
    run(tiny, stub, round_settings={2: {'re_augment': 'flip'}, 4: {'re_lr': 0.01}})
    assert [settings for _, _, settings in stub.trained] == [
        {}, {'re_augment': 'flip'}, {'re_augment': 'flip'},
        {'re_augment': 'flip', 're_lr': 0.01}, {'re_augment': 'flip', 're_lr': 0.01}]


def test_a_round_that_comes_back_keeps_its_own_settings(tiny):
    # Round 3 falls below the floor: round 2 gets the final epochs with round 2's settings.
    stub = Stub(tiny, [60, 65, 55, 62, 30, 40, 61])
    run(tiny, stub, [AccuracyFloor(50, 7)],
        round_settings={2: {'re_augment': 'flip'}, 3: {'re_augment': 'none'}})
    assert stub.trained == [(1, 2, {}), (2, 2, {'re_augment': 'flip'}), (3, 2, {'re_augment': 'none'}),
                            (2, 7, {'re_augment': 'flip'})]


def test_a_rounds_settings_replace_the_flags_for_its_retraining():
    args = pruning.parse_args(['--re-lr', '0.002', '--optimizer', 'sgd', '--re-optimizer', 'adam'])
    (step,) = schedule({'fc1': 1}, 1, round_settings={1: {'re_augment': 'flip'}})
    training = settings.retraining(args, step.settings)
    assert (training.optimizer, training.augment, training.lr) == ('adam', 'flip', 0.002)
    assert args.re_augment == 'crop-flip'  # the flags themselves stay
    initial = settings.initial_training(args)
    assert (initial.optimizer, initial.augment, initial.lr) == ('sgd', 'crop-flip', 0.005)


def test_unit_rates_follow_the_round_schedule(tiny):
    stub = Stub(tiny, [60] * 8)
    records = rounds.run(tiny, schedule({'fc2': 100}, 4, {'fc1': 0.5}, {'fc1': 25}),
                         stub.steps(), final_epochs=1)
    assert [r['unit_rates']['fc1'] for r in records] == pytest.approx([50, 25, 25, 25])
    assert int((tiny.fc2.weight != 0).any(0).sum()) == 4  # fc1's units that fc2 still reads


# ---------------------------------------------------------------- the target ratio
def test_the_target_ratio_makes_the_round_that_reaches_it_the_last(tiny, capsys):
    tiny.prune_by_percentile({'conv1': 50, 'fc1': 2, 'fc2': 50})
    record = {}
    assert TargetRatio(3).after_cut(tiny, record)
    assert record['ratio_after_pruning'] >= 3
    assert 'target ratio 3x reached: this is the last round' in capsys.readouterr().out
    assert not TargetRatio(record['ratio_after_pruning'] + 1).after_cut(tiny, record)


def test_a_target_ratio_out_of_the_formats_reach_skips_the_costly_measure(tiny):
    record = {}
    assert not TargetRatio(1000).after_cut(tiny, record)
    assert record == {}  # no weight-shared copy was encoded


def test_the_target_ratio_ends_the_loop_at_its_round(tiny):
    class ReachedAt(TargetRatio):
        def __init__(self, number):
            super().__init__(10)
            self.cuts, self.number = 0, number

        def after_cut(self, model, record):
            self.cuts += 1
            return self.cuts == self.number

    stub = Stub(tiny, [60] * 10)
    records = run(tiny, stub, [ReachedAt(3)])
    assert [epochs for _, epochs, _ in stub.trained] == [2, 2, 7] and len(records) == 3


def test_stop_rules_follow_the_flags():
    def rules(*argv):
        return [type(rule) for rule in pruning.stop_rules(pruning.parse_args(list(argv)), 0.0, 0.0)]
    assert rules() == []
    assert rules('--time-limit', '9', '--min-accuracy', '50', '--target-ratio', '400') == [
        TargetRatio, AccuracyFloor, TimeLimit]
