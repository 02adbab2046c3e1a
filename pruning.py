"""Initial training, pruning, and masked retraining of AlexNet on CIFAR-10 (or, with
--model / --dataset, another network and dataset).

Writes saves/initial_model.ptmodel (the --load-model-path) and
saves/model_after_retraining.ptmodel (the --save-model-path).
"""
import argparse
import json
import time

import torch

import util
from net.checkpoint import CheckpointError, load_model, save_model
from net.compact import compact_copy, parameter_count, write_back
from net.models import build_model
from net.prune import validate_rates
from net.report import format_report, pruning_report
from net.structured import CONV_GRANULARITIES, FC_GRANULARITIES, NORMS, SCOPES, prune_structured
from recipe import datasets, rounds
from training import fit, make_optimizer

# Defaults: a full run of the three scripts fits in about an hour on a 2-core CPU.
# The starter's recipe: --schedule constant --lr 0.001 --batch-size 50 --epochs 100
# --re-epochs 30 --prune std --sensitivity 2.
EPOCHS = 20
RE_EPOCHS = 8
BATCH_SIZE = 256
OPTIMIZER = 'adam'
LR = {'adam': 1e-3, 'sgd': 0.005}     # peak of the one-cycle schedule
RE_LR = {'adam': 3e-4, 'sgd': 0.002}  # peak for retraining after pruning
WEIGHT_DECAY = {'adam': 1e-4, 'sgd': 5e-4}  # Adam's is the starter's
# What --round-settings may change from a round on.
ROUND_SETTINGS = ('re_lr', 're_augment', 're_weight_decay')
ROUND_SETTINGS_EXAMPLE = '{"15": {"re_augment": "flip", "re_lr": 0.001}}'


def parse_args(argv=None, settings=None, source='settings'):
    """The flags; `settings` ({setting: value} as in a recipe's pruning section; errors
    name `source`) replace --config's."""
    p = util.ArgumentParser(description='Train, prune and retrain AlexNet on CIFAR-10 '
                                            '(or --model on --dataset)')
    p.add_argument('--batch-size', type=int, default=BATCH_SIZE, metavar='N')
    p.add_argument('--test-batch-size', type=int, default=1000, metavar='N')
    p.add_argument('--epochs', type=int, default=EPOCHS, metavar='N', help='initial training epochs')
    p.add_argument('--re-epochs', type=int, default=RE_EPOCHS, metavar='N', help='retraining epochs')
    p.add_argument('--lr', type=float, default=None, metavar='LR',
                   help=f'(peak) learning rate; default {LR}')
    p.add_argument('--re-lr', type=float, default=None, metavar='LR',
                   help=f'(peak) retraining learning rate; default {RE_LR}')
    p.add_argument('--optimizer', choices=['adam', 'sgd'], default=OPTIMIZER,
                   help='adam (the starter\'s) or sgd with Nesterov momentum')
    p.add_argument('--re-optimizer', choices=['adam', 'sgd'], default=None,
                   help='optimizer of the retraining phases; default: --optimizer')
    p.add_argument('--schedule', choices=['onecycle', 'constant'], default='onecycle',
                   help='one-cycle learning rate per phase, or the starter\'s constant rate')
    p.add_argument('--weight-decay', type=float, default=None, metavar='WD',
                   help=f'default {WEIGHT_DECAY}')
    p.add_argument('--re-weight-decay', type=float, default=None, metavar='WD',
                   help='weight decay of the retraining phases; default: --weight-decay when '
                        'both phases use the same optimizer, else that optimizer\'s default')
    p.add_argument('--re-augment', choices=list(datasets.AUGMENTATIONS), default='crop-flip',
                   help='augmentation of the training images in the retraining phases (the '
                        'initial training always crops and flips): crop-flip, flip only, or '
                        'none. A heavily pruned network underfits (its training accuracy under '
                        'crop-flip falls to its test accuracy), and a gentler one lets it fit more')
    p.add_argument('--no-cuda', action='store_true', default=False, help='disables CUDA training')
    p.add_argument('--bf16', action='store_true',
                   help='train in bfloat16 autocast (mixed precision): about 1.5x faster on '
                        'CPUs with AVX512-BF16 or AMX and on recent GPUs; weights and test '
                        'accuracy stay float32')
    p.add_argument('--compact-training', action='store_true',
                   help='retrain a smaller copy holding only the units that some later weight '
                        'reads (same function and gradients; several times faster once '
                        'pruning leaves most units unread); implies --prune-dead-units')
    p.add_argument('--seed', type=int, default=42, metavar='S')
    p.add_argument('--log-interval', type=int, default=10, metavar='N',
                   help='batches between progress-bar updates')
    p.add_argument('--log', type=str, default='log.txt', help='log file name')
    p.add_argument('--prune', choices=['percentile', 'std'], default='percentile',
                   help='percentile: keep --rates percent per layer; std: threshold std*sensitivity')
    p.add_argument('--sensitivity', type=float, default=2, help='s of prune_by_std')
    p.add_argument('--granularity', choices=CONV_GRANULARITIES, default='element',
                   help='what percentile pruning removes from conv layers: single weights, '
                        'whole kernels, input channels or filters')
    p.add_argument('--fc-granularity', choices=FC_GRANULARITIES, default='element',
                   help='what percentile pruning removes from fc layers: weights, rows or columns')
    p.add_argument('--norm', choices=NORMS, default='l1', help='score of a structure')
    p.add_argument('--scope', choices=SCOPES, default='local',
                   help='local: --rates per layer; global: one threshold across layers, '
                        'keeping --global-rate percent of all weights')
    p.add_argument('--global-rate', type=float, default=None, metavar='P',
                   help='with --scope global: percent of all weights kept')
    p.add_argument('--rates', type=str, default=None, metavar='JSON',
                   help='percent KEPT per layer, e.g. \'{"fc1": 5, "fc2": 3}\' (others keep '
                        'the paper\'s defaults for the model)')
    p.add_argument('--load-model-path', type=str, default='saves/initial_model.ptmodel',
                   help='the initial model: written after initial training, read with --from-initial')
    p.add_argument('--save-model-path', type=str, default='saves/model_after_retraining.ptmodel')
    p.add_argument('--from-initial', action='store_true',
                   help='skip initial training and start from --load-model-path')
    p.add_argument('--prune-rounds', type=int, default=1, metavar='N',
                   help='iterative pruning: N prune + retrain rounds toward --rates, each '
                        'keeping the same fraction of the weights left (percentile only)')
    p.add_argument('--round-spans', type=str, default=None, metavar='JSON',
                   help='per layer, the share of the rounds after which it reaches its rate, '
                        'e.g. \'{"fc2": 0.25}\' (default 1: the last round)')
    p.add_argument('--unit-rates', type=str, default=None, metavar='JSON',
                   help='percent of a layer\'s output units kept, e.g. \'{"fc1": 2, "fc2": 1.5}\': '
                        'after each cut, the least salient units (L1 of incoming x outgoing '
                        'weights) lose all their weights, on the same schedule as --rates. In '
                        'the homework format every distinct unit of an fc layer costs a 33-bit '
                        'code-tree leaf')
    p.add_argument('--round-epochs', type=round_epochs_list, default=[2], metavar='N',
                   help='retraining epochs after each round but the last (which gets '
                        '--re-epochs): a number, or a JSON list of one per round, whose last '
                        'entry holds for the later rounds, e.g. \'[3, 3, 6]\' (early rounds '
                        'cost the most time and lose the least accuracy)')
    p.add_argument('--round-settings', type=str, default=None, metavar='JSON',
                   help='retraining settings that change from a given round on (its final epochs '
                        f'included), e.g. \'{ROUND_SETTINGS_EXAMPLE}\'; a later round\'s replace an '
                        'earlier one\'s. Settings: ' + ', '.join(ROUND_SETTINGS) + '. A large '
                        'network overfits without crops, a heavily pruned one underfits with them')
    p.add_argument('--round-report', action='store_true',
                   help='after each round, also weight-share a copy (5 bits) and report its '
                        'accuracy and homework-format compression ratio (finds the best round)')
    p.add_argument('--target-ratio', type=float, default=None, metavar='R',
                   help='end the pruning rounds early, at the first round whose cut brings a '
                        '5-bit weight-shared copy to this homework-format compression ratio')
    p.add_argument('--min-accuracy', type=float, default=None, metavar='A',
                   help='end the pruning rounds early: when a round\'s retrained accuracy falls '
                        'below A percent, go back to the round before and give it --re-epochs')
    p.add_argument('--time-limit', type=float, default=None, metavar='MINUTES',
                   help='end the pruning rounds early when, judged by the last round, another '
                        'round and its --re-epochs would end after MINUTES from the start; '
                        'the last round then gets --re-epochs')
    p.add_argument('--prune-dead-units', action='store_true',
                   help='after each cut, also zero the incoming weights of units that no '
                        'later weight reads (the network computes the same function)')
    p.add_argument('--fold-constant-units', action='store_true',
                   help='after each cut, fold units left without incoming weights (constant '
                        'outputs) into the next fc layer\'s bias and drop their outgoing weights')
    util.add_data_arguments(p, from_checkpoint=False)
    p.add_argument('--subset', type=int, default=None, metavar='N',
                   help='use only N train and N test images (smoke runs)')
    util.add_config_argument(p)
    args = util.parse_with_config(p, argv, 'pruning', settings, source)
    args.round_settings = parse_round_settings(args.round_settings, p)
    if args.compact_training:
        # The copy leaves unread units out: their incoming weights must go at every cut
        # (which changes nothing the network computes), or they would stay frozen.
        args.prune_dead_units = True
    if (args.scope == 'global') != (args.global_rate is not None):
        util.fail('--scope global and --global-rate P go together (P: percent of all weights kept)')
    if args.re_optimizer is None:
        args.re_optimizer = args.optimizer
    same = args.re_optimizer == args.optimizer
    if args.lr is None:
        args.lr = LR[args.optimizer]
    if args.re_lr is None:
        if args.schedule == 'constant':
            args.re_lr = args.lr if same else LR[args.re_optimizer]
        else:
            args.re_lr = RE_LR[args.re_optimizer]
    if args.weight_decay is None:
        args.weight_decay = WEIGHT_DECAY[args.optimizer]
    if args.re_weight_decay is None:
        args.re_weight_decay = args.weight_decay if same else WEIGHT_DECAY[args.re_optimizer]
    return args


def round_epochs_list(text):
    """--round-epochs: N, or a JSON list of per-round epochs (the last one repeats)."""
    try:
        epochs = json.loads(text)
    except json.JSONDecodeError:
        epochs = None
    epochs = epochs if isinstance(epochs, list) else [epochs]
    if not epochs or not all(isinstance(n, (int, float)) and not isinstance(n, bool)
                             and n >= 0 and float(n).is_integer() for n in epochs):
        raise argparse.ArgumentTypeError(f'{text!r} is neither a number of epochs nor a '
                                         'JSON list of them, e.g. 6 or [3, 3, 6]')
    return [int(n) for n in epochs]


def parse_round_settings(text, parser):
    """--round-settings JSON -> {first round: {setting: value}}, each checked like a recipe's."""
    if text is None:
        return {}
    try:
        given = json.loads(text)
    except json.JSONDecodeError as err:
        util.fail(f'--round-settings: not valid JSON ({err.msg}): {text}')
    if not isinstance(given, dict):
        util.fail(f'--round-settings: a JSON object such as {ROUND_SETTINGS_EXAMPLE}, got {text}')
    settings = {}
    for start, values in given.items():
        if not (start.isascii() and start.isdigit() and int(start) >= 1 and isinstance(values, dict)):
            util.fail(f'--round-settings: each key is a round number from 1, each value a JSON '
                      f'object of settings, e.g. {ROUND_SETTINGS_EXAMPLE}; '
                      f'got "{start}": {json.dumps(values)}')
        fixed = sorted({key.replace('-', '_') for key in values} - set(ROUND_SETTINGS))
        if fixed:
            util.fail(f'--round-settings: {fixed} cannot change by round; these can: {list(ROUND_SETTINGS)}')
        settings[int(start)] = util.checked_settings(values, parser, f'--round-settings (round {start})',
                                                     'pruning')
    return settings


def with_settings(args, step):
    """args as they hold for a round's retraining: the --round-settings in effect then."""
    return argparse.Namespace(**(vars(args) | step.settings))


def parse_rates(text, model):
    """--rates JSON -> the full per-layer dict of model (the paper's rates for unnamed
    layers)."""
    rates = dict(model.default_rates)
    if text is not None:
        try:
            given = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f'--rates is not valid JSON ({err.msg}): {text}') from None
        if not isinstance(given, dict):
            raise ValueError(f'--rates must be a JSON object of layer -> percent kept, got {text}')
        rates.update(given)
    return keeps_something(validate_rates(model, rates), '--rates', 'weights')


def keeps_something(rates, flag, what):
    """Refuse a rate of 0: that layer would lose every weight and the network its input."""
    for name, rate in rates.items():
        if rate == 0:
            raise ValueError(f'{flag}: {name} would keep no {what}, and the network would ignore '
                             'its input: give it a rate above 0')
    return rates


def train(model, data, args, epochs, phase, generator, history, initial=False):
    """Train for `epochs`, with the initial training's optimizer settings (--optimizer,
    --lr, --weight-decay) if `initial`, else the retraining's (--re-optimizer, --re-lr,
    --re-weight-decay); pruned weights stay exactly zero throughout. Returns the seconds
    per epoch (0 for no epochs).

    After backward() the gradients of pruned weights are zeroed, and after every
    optimizer step the masks are re-applied, so neither momentum nor weight decay
    can revive a pruned weight. With --compact-training a compact copy of a pruned model
    (net.compact) trains in its place and its weights are written back.
    """
    started = time.time()
    compact = args.compact_training and any(
        hasattr(layer, 'weight_mask') for _, layer in model.prunable_layers())
    trained = model
    if compact:
        compacted = compact_copy(model)
        trained = compacted.model
        print(f'training a compact copy: {parameter_count(trained):,} of '
              f'{parameter_count(model):,} parameters')
    steps = -(-len(data[1]) // args.batch_size)
    name, lr, decay = ((args.optimizer, args.lr, args.weight_decay) if initial
                       else (args.re_optimizer, args.re_lr, args.re_weight_decay))
    optimizer, scheduler = make_optimizer(trained.parameters(), name, lr, decay,
                                          args.schedule, epochs * steps)
    fit(trained, data, epochs, optimizer, scheduler, phase=phase, generator=generator,
        history=history, batch_size=args.batch_size, test_batch_size=args.test_batch_size,
        log_interval=args.log_interval, after_backward=trained.mask_gradients,
        after_step=trained.apply_masks, bf16=args.bf16,
        augmentation='crop-flip' if initial else args.re_augment)
    if compact:
        write_back(model, compacted)
    return (time.time() - started) / epochs if epochs else 0.0


def parse_schedules(args, model):
    """(rates, spans, unit rates) of args for model's layers, checked."""
    rates = parse_rates(args.rates, model) if args.prune == 'percentile' else None
    return rates, parse_spans(args.round_spans, model), parse_unit_rates(args.unit_rates, model)


def parse_unit_rates(text, model):
    """--unit-rates JSON -> {layer: percent of its units kept}, checked (None if not given)."""
    if text is None:
        return None
    try:
        given = json.loads(text)
        if not isinstance(given, dict):
            raise ValueError(f'it must be a JSON object of layer -> percent of its units kept, got {text}')
        rates = keeps_something(validate_rates(model, given, of='units'), '--unit-rates', 'units')
        for name in rates:
            model.unit_reader(name)
    except json.JSONDecodeError as err:
        raise ValueError(f'--unit-rates is not valid JSON ({err.msg}): {text}') from None
    except ValueError as err:
        raise ValueError(f'--unit-rates: {err}') from None
    return rates


def parse_spans(text, model):
    """--round-spans JSON -> {layer: share of the rounds of model's layers}, checked."""
    if text is None:
        return None
    try:
        spans = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f'--round-spans is not valid JSON ({err.msg}): {text}') from None
    names = [name for name, _ in model.prunable_layers()]
    if not isinstance(spans, dict) or set(spans) - set(names):
        raise ValueError(f'--round-spans must map layer names {names} to shares of the rounds')
    for name, span in spans.items():
        if isinstance(span, bool) or not isinstance(span, (int, float)) or not 0 < span <= 1:
            raise ValueError(f'--round-spans: {name} is {span!r}; it must be above 0 and at most 1')
    return spans


def structured(args):
    """Whether the cut goes through net.structured: anything but the homework's
    per-layer percentile of single weights by magnitude."""
    homework = (args.granularity == args.fc_granularity == 'element' and args.norm == 'l1'
                and args.scope == 'local')
    return not homework


def prune_round(model, args, rates, unit_rates=None):
    """Prune (by rates, or by std when rates is None), then the least salient units (by
    unit_rates, if given); optionally fold constant units and drop dead units; test."""
    if rates is None:
        model.prune_by_std(args.sensitivity)
    elif structured(args):
        prune_structured(model, rates, conv=args.granularity, fc=args.fc_granularity,
                         norm=args.norm, scope=args.scope)
    else:
        model.prune_by_percentile(rates)
    record = {'rates': rates}
    if unit_rates:
        record['unit_rates'] = unit_rates
        record['unit_weights_removed'] = model.prune_units(unit_rates)
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
        return train(model, data, with_settings(args, step), epochs, phase, generator, history)

    def describe():
        record = {'alive': sum(nz for nz, _ in util.nonzero_counts(model).values())}
        if args.round_report:
            record |= rounds.shared_copy(model, lambda shared: util.test_with(shared, args))
        return record

    return rounds.Steps(
        cut=lambda step: prune_round(model, args, step.rates, step.unit_rates),
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
        run(args, *parse_schedules(args, layers))  # refused now, not after the training
    except (ValueError, CheckpointError, datasets.DataError) as err:
        util.fail(err)


def run(args, rates, spans=None, unit_rates=None):
    started = time.time()
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    device = util.device_for(not args.no_cuda)
    outputs = {'--save-model-path': args.save_model_path,
               '--load-model-path': None if args.from_initial else args.load_model_path}
    config = util.start_run(args, 'pruning.py', outputs, rates=rates, device=str(device))

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
        epoch_seconds = train(model, data, args, args.epochs, 'initial', generator, history,
                              initial=True)
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
