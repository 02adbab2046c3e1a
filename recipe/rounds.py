"""The pruning rounds' schedule: what each round cuts and how its retraining differs. Pure:
no model, no I/O, so a recipe's whole plan can be printed or tested before any training."""
from collections.abc import Sequence
from typing import NamedTuple


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
