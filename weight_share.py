"""Weight sharing (k-means per layer) of the retrained model.

Reads saves/model_after_retraining.ptmodel, writes saves/model_after_weight_sharing.ptmodel.
"""
import argparse
import json
import time

import util
from net.checkpoint import CheckpointError, load_model, save_model
from net.quantization import apply_weight_sharing, check_bits


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Weight-share (k-means quantize) a pruned AlexNet')
    p.add_argument('--load-model-path', type=str, default='saves/model_after_retraining.ptmodel')
    p.add_argument('--save-model-path', type=str, default='saves/model_after_weight_sharing.ptmodel')
    p.add_argument('--bits', type=int, default=5, help='2**bits shared values per layer (1..16)')
    p.add_argument('--no-cuda', action='store_true', default=False, help='disables CUDA')
    p.add_argument('--log', type=str, default='log.txt', help='log file name')
    p.add_argument('--data-dir', type=str, default=None, metavar='DIR',
                   help='ImageFolder copy of CIFAR-10 (DIR/train, DIR/test) instead of the download')
    p.add_argument('--subset', type=int, default=None, metavar='N', help='test on N images only')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        check_bits(args.bits)
        run(args)
    except (ValueError, CheckpointError, util.DataError) as err:
        util.fail(err)


def run(args):
    started = time.time()
    util.DATA_DIR, util.SUBSET = args.data_dir, args.subset
    use_cuda = not args.no_cuda
    config = vars(args) | {'device': str(util.device_for(use_cuda))}
    print(f'config: {json.dumps(config)}')
    util.log(f'weight_share.py config {json.dumps(config)}', args.log)
    model = load_model(args.load_model_path, util.device_for(use_cuda), made_by='pruning.py')

    print('--- Accuracy before weight sharing ---')
    before = util.test(model, use_cuda)
    util.log(f'accuracy_before_weight_sharing {before}', args.log)

    apply_weight_sharing(model, args.bits)
    print('--- Accuracy after weight sharing ---')
    after = util.test(model, use_cuda)
    util.log(f'accuracy_after_weight_sharing {after}', args.log)
    save_model(model, args.save_model_path)

    distinct = {name: len(p.detach().unique()) for name, p in model.named_parameters()
                if p.dim() > 1}
    print('distinct values per layer (including 0): ' + json.dumps(distinct))
    util.write_json(util.results_path(args.log, 'weight_share'), {
        'config': config, 'accuracy_before': before, 'accuracy_after': after,
        'distinct_values': distinct, 'wall_seconds': time.time() - started})
    print(f'wrote {args.save_model_path} in {time.time() - started:.0f} s')


if __name__ == '__main__':
    main()
