"""Initial training, pruning, and masked retraining of AlexNet on CIFAR-10.

Writes saves/initial_model.ptmodel (the --load-model-path) and
saves/model_after_retraining.ptmodel (the --save-model-path).
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import util
from net.checkpoint import CheckpointError, load_model, save_model
from net.models import AlexNet
from net.prune import DEFAULT_PRUNE_RATE, validate_rates

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
MOMENTUM = 0.9


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train, prune and retrain AlexNet on CIFAR-10')
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
    p.add_argument('--schedule', choices=['onecycle', 'constant'], default='onecycle',
                   help='one-cycle learning rate per phase, or the starter\'s constant rate')
    p.add_argument('--weight-decay', type=float, default=None, metavar='WD',
                   help=f'default {WEIGHT_DECAY}')
    p.add_argument('--no-cuda', action='store_true', default=False, help='disables CUDA training')
    p.add_argument('--seed', type=int, default=42, metavar='S')
    p.add_argument('--log-interval', type=int, default=10, metavar='N',
                   help='batches between progress-bar updates')
    p.add_argument('--log', type=str, default='log.txt', help='log file name')
    p.add_argument('--prune', choices=['percentile', 'std'], default='percentile',
                   help='percentile: keep --rates percent per layer; std: threshold std*sensitivity')
    p.add_argument('--sensitivity', type=float, default=2, help='s of prune_by_std')
    p.add_argument('--rates', type=str, default=None, metavar='JSON',
                   help='percent KEPT per layer, e.g. \'{"fc1": 5, "fc2": 3}\' (others keep '
                        'the paper\'s defaults)')
    p.add_argument('--load-model-path', type=str, default='saves/initial_model.ptmodel',
                   help='the initial model: written after initial training, read with --from-initial')
    p.add_argument('--save-model-path', type=str, default='saves/model_after_retraining.ptmodel')
    p.add_argument('--from-initial', action='store_true',
                   help='skip initial training and start from --load-model-path')
    p.add_argument('--data-dir', type=str, default=None, metavar='DIR',
                   help='ImageFolder copy of CIFAR-10 (DIR/train, DIR/test) instead of the download')
    p.add_argument('--subset', type=int, default=None, metavar='N',
                   help='use only N train and N test images (smoke runs)')
    args = p.parse_args(argv)
    if args.lr is None:
        args.lr = LR[args.optimizer]
    if args.re_lr is None:
        args.re_lr = args.lr if args.schedule == 'constant' else RE_LR[args.optimizer]
    if args.weight_decay is None:
        args.weight_decay = WEIGHT_DECAY[args.optimizer]
    return args


def parse_rates(text):
    """--rates JSON -> the full per-layer dict (paper defaults for unnamed layers)."""
    rates = dict(DEFAULT_PRUNE_RATE)
    if text is not None:
        try:
            given = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f'--rates is not valid JSON ({err.msg}): {text}') from None
        if not isinstance(given, dict):
            raise ValueError(f'--rates must be a JSON object of layer -> percent kept, got {text}')
        rates.update(given)
    return validate_rates(AlexNet(), rates)


def make_optimizer(model, args, lr, epochs, steps_per_epoch):
    """(optimizer, per-step scheduler or None)."""
    if args.optimizer == 'adam':
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, nesterov=True,
                                    weight_decay=args.weight_decay)
    if args.schedule == 'constant':
        return optimizer, None
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(1, epochs * steps_per_epoch), pct_start=0.25)
    return optimizer, scheduler


def train(model, data, args, epochs, lr, phase, device, generator, history):
    """Train for `epochs`; pruned weights stay exactly zero throughout.

    After backward() the gradients of pruned weights are zeroed, and after every
    optimizer step the masks are re-applied, so neither momentum nor weight decay
    can revive a pruned weight.
    """
    train_x, train_y, test_x, test_y = data
    steps = -(-len(train_y) // args.batch_size)
    optimizer, scheduler = make_optimizer(model, args, lr, epochs, steps)
    for epoch in range(1, epochs + 1):
        model.train()
        seen = correct = 0
        total_loss = 0.0
        bar = tqdm(util.batches(train_x, train_y, args.batch_size, generator, train=True),
                   total=steps, desc=f'{phase} {epoch}/{epochs}', leave=False, mininterval=1)
        for i, (x, y) in enumerate(bar):
            optimizer.zero_grad()
            output = model(x)
            loss = F.nll_loss(output, y)
            loss.backward()
            model.mask_gradients()
            optimizer.step()
            model.apply_masks()
            if scheduler is not None:
                scheduler.step()
            seen += len(y)
            total_loss += loss.item() * len(y)
            correct += (output.argmax(1) == y).sum().item()
            if i % args.log_interval == 0:
                bar.set_postfix(loss=f'{total_loss / seen:.3f}', acc=f'{100 * correct / seen:.1f}%')
        _, accuracy = util.evaluate(model, test_x, test_y, args.test_batch_size)
        record = {'phase': phase, 'epoch': epoch, 'train_loss': total_loss / seen,
                  'train_accuracy': 100 * correct / seen, 'test_accuracy': accuracy}
        history.append(record)
        print(f'{phase} epoch {epoch}/{epochs}: loss {record["train_loss"]:.4f}, '
              f'train {record["train_accuracy"]:.2f}%, test {accuracy:.2f}%')


def layer_report(model):
    return {name: {'nonzero': nz, 'total': total}
            for name, (nz, total) in util.nonzero_counts(model).items()}


def main(argv=None):
    args = parse_args(argv)
    try:
        rates = parse_rates(args.rates) if args.prune == 'percentile' else None
        run(args, rates)
    except (ValueError, CheckpointError, util.DataError) as err:
        util.fail(err)


def run(args, rates):
    started = time.time()
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    device = util.device_for(not args.no_cuda)
    util.DATA_DIR, util.SUBSET = args.data_dir, args.subset
    config = {k: v for k, v in vars(args).items()} | {'rates': rates, 'device': str(device)}
    print(f'config: {json.dumps(config)}')
    util.log(f'pruning.py config {json.dumps(config)}', args.log)

    if args.from_initial:
        model = load_model(args.load_model_path, device, made_by='pruning.py')
    else:
        model = AlexNet().to(device)
    train_x, train_y = (t.to(device) for t in util.load_split(True, args.data_dir, args.subset))
    test_x, test_y = (t.to(device) for t in util.cached_split(False, args.data_dir, args.subset))
    data = (train_x, train_y, test_x, test_y)
    history, results = [], {'config': config}

    if not args.from_initial:
        print('--- Initial training ---')
        train(model, data, args, args.epochs, args.lr, 'initial', device, generator, history)
        save_model(model, args.load_model_path)
    results['initial_accuracy'] = util.test(model, not args.no_cuda)
    util.log(f'initial_accuracy {results["initial_accuracy"]}', args.log)
    print('--- Before pruning ---')
    util.print_nonzeros(model)

    if args.prune == 'percentile':
        model.prune_by_percentile(rates)
    else:
        model.prune_by_std(args.sensitivity)
    results['accuracy_after_pruning'] = util.test(model, not args.no_cuda)
    util.log(f'accuracy_after_pruning {results["accuracy_after_pruning"]}', args.log)
    print('--- After pruning ---')
    util.print_nonzeros(model)

    print('--- Retraining ---')
    train(model, data, args, args.re_epochs, args.re_lr, 'retrain', device, generator, history)
    save_model(model, args.save_model_path)
    results['accuracy_after_retraining'] = util.test(model, not args.no_cuda)
    util.log(f'accuracy_after_retraining {results["accuracy_after_retraining"]}', args.log)
    print('--- After retraining ---')
    alive = util.print_nonzeros(model)
    util.log(f'alive_percent_after_retraining {alive:.4f}', args.log)

    results |= {'layers': layer_report(model), 'history': history,
                'wall_seconds': time.time() - started}
    util.write_json(util.results_path(args.log, 'pruning'), results)
    print(f'wrote {args.load_model_path} and {args.save_model_path} '
          f'in {results["wall_seconds"]:.0f} s')


if __name__ == '__main__':
    main()
