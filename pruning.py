"""Initial training, pruning, and masked retraining of AlexNet on CIFAR-10 (or, with
--model / --dataset, another network and dataset).

Writes saves/initial_model.ptmodel (the --load-model-path) and
saves/model_after_retraining.ptmodel (the --save-model-path).
"""
import json
import time

import torch
from torch import nn

import util
from net.activations import activation_scores, similar_units
from net.checkpoint import CheckpointError, load_model, save_model
from net.models import build_model
from net.prune import validate_rates
from net.report import format_report, pruning_report
from net.structured import prune_structured
from recipe import datasets, rounds, settings
from recipe.training import train


def parse_args(argv=None):
    """The settings of a run (recipe/settings.py's PruningSettings)."""
    return settings.pruning_settings(argv)


def rates_for(model, given):
    """--rates (a dict, or None) -> the full per-layer dict of model (the paper's rates for
    unnamed layers), checked."""
    rates = dict(model.default_rates) | (given or {})
    return keeps_something(validate_rates(model, rates), '--rates', 'weights')


def keeps_something(rates, flag, what):
    """Refuse a rate of 0: that layer would lose every weight and the network its input."""
    for name, rate in rates.items():
        if rate == 0:
            raise ValueError(f'{flag}: {name} would keep no {what}, and the network would ignore '
                             'its input: give it a rate above 0')
    return rates


def schedules_for(args, model):
    """(rates, spans, unit rates) of args for model's layers, checked, after refusing the
    steps that need a chain of layers (model.chain) if it is not one."""
    if args.prune_dead_units:
        model.require_chain('dead-unit removal (--prune-dead-units, --compact-training)')
    if args.fold_constant_units:
        model.require_chain('constant folding (--fold-constant-units)')
    rates = rates_for(model, args.rates) if args.prune == 'percentile' else None
    return rates, spans_for(model, args.round_spans), unit_rates_for(model, args.unit_rates)


def unit_rates_for(model, given):
    """--unit-rates (a dict, or None) -> {layer: percent of its units kept}, checked."""
    if given is None:
        return None
    try:
        rates = validate_rates(model, given, of='units')
        for name in rates:
            model.unit_reader(name)
    except ValueError as err:
        raise ValueError(f'--unit-rates: {err}') from None
    return keeps_something(rates, '--unit-rates', 'units')


def spans_for(model, spans):
    """--round-spans (a dict, or None), its layer names checked against model's."""
    names = [name for name, _ in model.prunable_layers()]
    if spans is not None and set(spans) - set(names):
        raise ValueError(f'--round-spans must map layer names {names} to shares of the rounds')
    return spans


def structured(args):
    """Whether the cut goes through net.structured: anything but the homework's
    per-layer percentile of single weights by magnitude."""
    homework = (args.granularity == args.fc_granularity == 'element' and args.norm == 'l1'
                and args.scope == 'local')
    return not homework


def calibration(args, data):
    """The calibration batches of the activation criteria: the first --calibration-images
    training images, in order, not augmented."""
    images, labels = data[0][:args.calibration_images], data[1][:args.calibration_images]
    return list(datasets.batches(images, labels, args.test_batch_size))


def unit_scores(model, args, data):
    """{layer: per-unit activation score} of --unit-criterion, or None for weight norms."""
    if args.unit_criterion == 'weight':
        return None
    return activation_scores(model, calibration(args, data), args.unit_criterion)


def ranked_by_units(model, args, scores):
    """The scores of the layers whose structures are whole units (filters, fc rows)."""
    whole = {nn.Conv2d: args.granularity == 'filter', nn.Linear: args.fc_granularity == 'row'}
    return {name: score for name, score in scores.items() if whole[type(model.layer(name))]}


def prune_round(model, args, data, rates, unit_rates=None):
    """Prune (by rates, or by std when rates is None), then the least salient units (by
    unit_rates, if given) and near-duplicate units (--similarity); optionally fold
    constant units and drop dead units; test."""
    scores = unit_scores(model, args, data)
    if rates is None:
        model.prune_by_std(args.sensitivity)
    elif structured(args):
        prune_structured(model, rates, conv=args.granularity, fc=args.fc_granularity,
                         norm=args.norm, scope=args.scope,
                         unit_scores=scores and ranked_by_units(model, args, scores))
    else:
        model.prune_by_percentile(rates)
    record = {'rates': rates}
    if unit_rates:
        record['unit_rates'] = unit_rates
        record['unit_weights_removed'] = model.prune_units(unit_rates, scores)
    if args.similarity is not None:
        similar = similar_units(model, calibration(args, data), args.similarity)
        record['similar_units'] = {name: len(units) for name, units in similar.items()}
        record['similar_units_weights_removed'] = sum(
            model.remove_units(name, units) for name, units in similar.items())
    if args.fold_constant_units:
        record['constant_units_weights_removed'] = model.fold_constant_units()
    if args.prune_dead_units:
        record['dead_units_weights_removed'] = model.prune_dead_units()
    empty = [name for name, layer in model.prunable_layers() if not layer.weight.count_nonzero()]
    if empty:  # refused now: a model that ignores its input is worth no retraining
        raise ValueError(f'this cut leaves {empty[0]} without weights (the network would ignore '
                         'its input): keep more (--rates, --unit-rates, --sensitivity)')
    record['accuracy_after_pruning'] = util.test_with(model, args)
    return record


def round_steps(model, args, data, generator, history, plan):
    """What each round of plan does to model: the flags' cut, retraining with the round's
    settings, testing, and logging."""
    def retrain(step, epochs):
        phase = 'retrain' if len(plan) == 1 else f'retrain{step.number}'
        return train(model, data, settings.retraining(args, step.settings), epochs, phase,
                     generator, history)

    def describe():
        record = {'alive': sum(nz for nz, _ in util.nonzero_counts(model).values())}
        if args.round_report:
            record |= rounds.shared_copy(model, lambda shared: util.test_with(shared, args))
        return record

    return rounds.Steps(
        cut=lambda step: prune_round(model, args, data, step.rates, step.unit_rates),
        train=retrain, evaluate=lambda: util.test_with(model, args), describe=describe,
        log=lambda number, record: util.log(f'round {number} {json.dumps(record)}', args.log))


def stop_rules(args, started, epoch_seconds):
    """The stop rules the flags ask for, in the order they are asked (a fall below the
    floor goes back even when time has also run out)."""
    rules = []
    if args.target_ratio is not None:
        rules.append(rounds.TargetRatio(args.target_ratio))
    if args.min_accuracy is not None:
        rules.append(rounds.AccuracyFloor(args.min_accuracy, args.re_epochs))
    if args.time_limit is not None:
        rules.append(rounds.TimeLimit(args.time_limit, args.re_epochs, started, epoch_seconds))
    return rules


def layer_report(model):
    return {name: {'nonzero': nz, 'total': total}
            for name, (nz, total) in util.nonzero_counts(model).items()}


def main(argv=None):
    args = parse_args(argv)
    try:
        with torch.device('meta'):  # layer names only
            layers = build_model(args.model, args.dataset)
        run(args, *schedules_for(args, layers))  # refused now, not after the training
    except (ValueError, CheckpointError, datasets.DataError) as err:
        util.fail(err)


def run(args, rates, spans=None, unit_rates=None):
    started = time.time()
    generator = torch.Generator().manual_seed(args.seed)
    outputs = {'--save-model-path': args.save_model_path,
               '--load-model-path': None if args.from_initial else args.load_model_path}
    config, device = util.start_run(args, 'pruning.py', outputs, rates=rates)

    if args.from_initial:
        model = load_model(args.load_model_path, device, made_by='pruning.py',
                           arch=args.model, dataset=args.dataset)
    else:
        model = build_model(args.model, args.dataset).to(device)
    data = datasets.model_data(model, args.data_dir, args.subset, device)
    history, results = [], {'config': config}
    if args.bf16 and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        raise ValueError('--bf16: this GPU does not support bfloat16; run without --bf16')

    epoch_seconds = 0.0
    if not args.from_initial:
        print('--- Initial training ---')
        epoch_seconds = train(model, data, settings.initial_training(args), args.epochs,
                              'initial', generator, history)
        save_model(model, args.load_model_path)
    results['initial_accuracy'] = util.test_with(model, args)
    util.log(f'initial_accuracy {results["initial_accuracy"]}', args.log)
    print('--- Before pruning ---')
    util.print_nonzeros(model)

    plan = rounds.schedule(args.global_rate if args.scope == 'global' else rates,
                           args.prune_rounds, spans, unit_rates, args.round_epochs,
                           args.round_settings)
    results['rounds'] = rounds.run(model, plan, round_steps(model, args, data, generator, history, plan),
                                   stop_rules(args, started, epoch_seconds), args.re_epochs)
    save_model(model, args.save_model_path)
    results['accuracy_after_pruning'] = results['rounds'][-1]['accuracy_after_pruning']
    results['accuracy_after_retraining'] = results['rounds'][-1]['accuracy_after_retraining']
    util.log(f'accuracy_after_pruning {results["accuracy_after_pruning"]}', args.log)
    util.log(f'accuracy_after_retraining {results["accuracy_after_retraining"]}', args.log)
    print('--- After retraining ---')
    alive = util.print_nonzeros(model)
    util.log(f'alive_percent_after_retraining {alive:.4f}', args.log)

    print(f'--- What pruning saves (one {model.input_size}x{model.input_size} input) ---')
    report = pruning_report(model)
    print(format_report(report))
    results |= {'layers': layer_report(model), 'report': report, 'history': history,
                'wall_seconds': time.time() - started}
    util.write_json(util.results_path(args.log, 'pruning'), results)
    print(f'wrote {args.load_model_path} and {args.save_model_path} '
          f'in {results["wall_seconds"]:.0f} s')


if __name__ == '__main__':
    main()
