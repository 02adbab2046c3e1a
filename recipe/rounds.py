"""The pruning rounds: the schedule (what each round cuts and how its retraining differs;
pure, so a recipe's whole plan can be printed or tested before any training), and the loop
that runs it, with its stop rules (target ratio, accuracy floor, time limit)."""
import contextlib
import copy
import io
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

import util
from net.huffmancoding import huffman_encode_model, minimum_compressed_bytes
from net.quantization import apply_weight_sharing


class Round(NamedTuple):
    number: int  # from 1
    rates: dict | float | None  # percent kept after the cut: per layer, of all weights, or None (by std)
    unit_rates: dict | None  # percent of each layer's units kept after the cut
    epochs: int  # retraining epochs when this round is not the last
    settings: dict  # the --round-settings in effect (its own and earlier rounds', later replacing earlier)
    last: bool  # the schedule's last round


def round_rates(rates: dict, rounds: int, spans: dict | None = None) -> list[dict]:
    """Per-layer percent kept after each of `rounds` pruning rounds: each round keeps the
    same fraction of what the previous one kept, the last one exactly `rates`.

    spans (layer -> 0..1, default 1) lets a layer reach its rate sooner: after that share
    of the rounds, and then stay there (insensitive layers first, so that every round's
    model is as small as its accuracy allows)."""
    spans = spans or {}
    return [{name: 100 * (rate / 100) ** min(1.0, r / (rounds * spans.get(name, 1.0)))
             for name, rate in rates.items()}
            for r in range(1, rounds + 1)]


def schedule(rates: dict | float | None, rounds: int, spans: dict | None = None,
             unit_rates: dict | None = None, round_epochs: Sequence[int] = (2,),
             round_settings: dict | None = None) -> list[Round]:
    """The rounds of a run, in order. rates: per-layer percent kept (percentile pruning),
    one percent of all weights (global scope), or None (one cut by std, one round).
    round_epochs: per round, the last entry repeating; round_settings: {first round:
    {setting: value}}, a later round's replacing an earlier one's."""
    if rates is None:
        cuts = [None]
    elif isinstance(rates, dict):
        cuts = round_rates(rates, rounds, spans)
    else:  # one threshold for every layer, on the same geometric schedule
        cuts = [r['all'] for r in round_rates({'all': rates}, rounds)]
    unit_cuts = round_rates(unit_rates, len(cuts), spans) if unit_rates else [None] * len(cuts)
    plan, settings = [], {}
    for number, (cut, unit_cut) in enumerate(zip(cuts, unit_cuts, strict=True), 1):
        settings = settings | (round_settings or {}).get(number, {})
        plan.append(Round(number, cut, unit_cut, round_epochs[min(number, len(round_epochs)) - 1],
                          settings, number == len(cuts)))
    return plan


# ----------------------------------------------------------------- running the rounds
class Steps(NamedTuple):
    """What a round does to the model, as callables the round loop calls in turn."""
    cut: Callable[[Round], dict]  # prune for this round, test; the round's record so far
    train: Callable[[Round, int], float]  # retrain for n epochs; seconds per epoch (0 for none)
    evaluate: Callable[[], float]  # test accuracy in percent
    describe: Callable[[], dict]  # what else a retrained round's record holds
    log: Callable[[int, dict], None]  # a finished round's record


class Ending(NamedTuple):
    """How a stop rule ends the rounds: one more retraining of `step`'s model (restored
    from `state` first, unless None), whose record extends `record`."""
    message: str
    step: Round
    record: dict
    state: dict | None = None


class StopRule:
    """Ends the pruning rounds early; the round loop asks after each cut and each round."""

    def after_cut(self, model: torch.nn.Module, record: dict) -> bool:
        """Whether the round just cut is the last (it then gets the final epochs)."""
        return False

    def after_round(self, model: torch.nn.Module, record: dict, step: Round,
                    seconds: tuple[float, float]) -> Ending | None:
        """How the rounds end after this retrained round, or None to go on; seconds: the
        round's and its retraining's per epoch (0 without epochs)."""
        return None


class TargetRatio(StopRule):
    """The first round whose cut brings a 5-bit weight-shared copy to `ratio` (in the
    homework format) is the last. The size follows from the zero pattern, fixed once cut,
    so it is judged before retraining and that round gets the final epochs."""

    def __init__(self, ratio: float):
        self.ratio = ratio

    def after_cut(self, model: torch.nn.Module, record: dict) -> bool:
        """Whether this round's cut reaches the ratio (recorded in record if so)."""
        if not reaches(model, self.ratio):
            return False
        record['ratio_after_pruning'] = shared_copy(model)['shared_ratio']
        if record['ratio_after_pruning'] < self.ratio:
            return False
        print(f'target ratio {self.ratio}x reached: this is the last round')
        return True


class AccuracyFloor(StopRule):
    """When a round retrains below `minimum` percent, the last round above it comes back
    (weights and masks) for the final `epochs`."""

    def __init__(self, minimum: float, epochs: int):
        self.minimum, self.epochs = minimum, epochs
        self.kept = None  # (state, record, round) of the last round above the floor

    def after_round(self, model: torch.nn.Module, record: dict, step: Round,
                    seconds: tuple[float, float]) -> Ending | None:
        """Keep a round above the floor; below it, end at the last one kept."""
        if record['accuracy_after_retraining'] >= self.minimum:
            self.kept = (copy.deepcopy(model.state_dict()), record, step)
            return None
        if self.kept is None:  # nothing to go back to: go on
            return None
        state, kept_record, kept_step = self.kept
        return Ending(f'accuracy below --min-accuracy {self.minimum}%: back to round '
                      f'{kept_step.number}, which gets {self.epochs} more epochs',
                      kept_step, kept_record | {'back_to_round': kept_step.number}, state)


class TimeLimit(StopRule):
    """When another round like the last one, plus the final `epochs`, would end past
    `minutes` after `started`, the last round is the last and gets the final epochs
    (rounds only get cheaper as the network shrinks). epoch_seconds: the per-epoch time
    to judge by until a round has epochs."""

    def __init__(self, minutes: float, epochs: int, started: float, epoch_seconds: float = 0.0):
        self.minutes, self.epochs, self.started = minutes, epochs, started
        self.epoch_seconds = epoch_seconds

    def out_of_time(self, round_seconds: float) -> bool:
        """Whether another round of round_seconds and the final epochs would end too late."""
        finish = time.time() + round_seconds + self.epochs * self.epoch_seconds
        return finish > self.started + 60 * self.minutes

    def after_round(self, model: torch.nn.Module, record: dict, step: Round,
                    seconds: tuple[float, float]) -> Ending | None:
        """End at this round if another would end past the limit."""
        round_seconds, epoch_seconds = seconds
        self.epoch_seconds = epoch_seconds or self.epoch_seconds
        if not self.out_of_time(round_seconds):
            return None
        return Ending(f'another round would end past --time-limit {self.minutes} minutes: '
                      f'round {step.number} is the last and gets {self.epochs} more epochs',
                      step, record | {'ended_by': 'time limit'})


def run(model: torch.nn.Module, plan: Sequence[Round], steps: Steps,
        rules: Sequence[StopRule] = (), final_epochs: int = 0) -> list[dict]:
    """Cut and retrain round after round of plan until its last round or a stop rule ends
    the rounds; the last round retrains for final_epochs. Returns the rounds' records (a
    stop rule's one more retraining adds a record)."""
    records = []
    for step in plan:
        started = time.time()
        tag = '' if len(plan) == 1 else f' (round {step.number}/{len(plan)})'
        record = steps.cut(step)
        print(f'--- After pruning{tag} ---')
        util.print_nonzeros(model)
        last = step.last or any(rule.after_cut(model, record) for rule in rules)
        print(f'--- Retraining{tag} ---')
        epoch_seconds = steps.train(step, final_epochs if last else step.epochs)
        record['accuracy_after_retraining'] = steps.evaluate()
        record |= steps.describe()
        records.append(record)
        steps.log(step.number, record)
        if last:
            break
        seconds = (time.time() - started, epoch_seconds)
        ending = next(filter(None, (rule.after_round(model, record, step, seconds)
                                    for rule in rules)), None)
        if ending is not None:
            records.append(retrain_ending(model, ending, steps, final_epochs))
            break
    return records


def retrain_ending(model: torch.nn.Module, ending: Ending, steps: Steps, epochs: int) -> dict:
    """A stop rule's ending: restore its round's model if it says so, retrain for the final
    epochs, log and return the updated record."""
    print(ending.message)
    if ending.state is not None:
        model.load_state_dict(ending.state)
    steps.train(ending.step, epochs)
    record = ending.record | {'round': ending.step.number,
                              'accuracy_after_retraining': steps.evaluate()}
    steps.log(ending.step.number, record)
    return record


def shared_copy(model: torch.nn.Module, evaluate: Callable | None = None) -> dict:
    """Homework-format ratio and bytes (and accuracy by evaluate(copy), if given) of a 5-bit
    weight-shared copy of model, printed."""
    shared = copy.deepcopy(model).cpu()
    apply_weight_sharing(shared, 5)
    with tempfile.TemporaryDirectory() as directory:
        with contextlib.redirect_stdout(io.StringIO()):
            total = huffman_encode_model(shared, os.path.join(directory, 'enc'), None)[-1]
    report = {'shared_ratio': total['original'] / total['compressed'],
              'shared_bytes': total['compressed']}
    accuracy = ''
    if evaluate is not None:
        report['shared_accuracy'] = evaluate(shared)
        accuracy = f"{report['shared_accuracy']:.2f}%, "
    print(f"if weight-shared now: {accuracy}{report['shared_ratio']:.2f}x "
          f"({report['shared_bytes']} bytes)")
    return report


def reaches(model: torch.nn.Module, target_ratio: float) -> bool:
    """False when even the format's lower bound on the bytes misses target_ratio (then
    the costly k-means and encoding of shared_copy are skipped)."""
    dense = sum(p.numel() * 4 for p in model.parameters())
    return dense / minimum_compressed_bytes(model) >= target_ratio
