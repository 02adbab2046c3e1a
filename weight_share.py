"""Weight sharing (k-means per layer) of the retrained model, optionally followed by
trained quantization (fine-tuning the shared values).

Reads saves/model_after_retraining.ptmodel, writes saves/model_after_weight_sharing.ptmodel.
"""
import json
import time

import torch

import util
from net.checkpoint import CheckpointError, load_model, save_model
from net.quantization import INITS, SharedWeights, apply_weight_sharing, check_bits, validate_bits
from recipe import datasets
from training import fit, make_optimizer


def parse_args(argv=None):
    p = util.ArgumentParser(description='Weight-share (k-means quantize) a pruned model')
    p.add_argument('--load-model-path', type=str, default='saves/model_after_retraining.ptmodel')
    p.add_argument('--save-model-path', type=str, default='saves/model_after_weight_sharing.ptmodel')
    p.add_argument('--bits', type=str, default='5',
                   help='2**bits shared values per layer (1..16), or JSON per layer, e.g. '
                        '\'{"fc1": 3, "fc2": 2}\' (unnamed layers: 5)')
    p.add_argument('--init', choices=INITS, default='linear',
                   help='centroid initialisation of k-means (the paper\'s three; linear: the slides\')')
    p.add_argument('--quantize-epochs', type=int, default=0, metavar='N',
                   help='trained quantization: fine-tune the shared values (and biases) for N '
                        'epochs, assignments and zeros fixed (0: off, as in the homework)')
    p.add_argument('--quantize-lr', type=float, default=1e-4, metavar='LR',
                   help='peak (one-cycle) Adam learning rate of trained quantization')
    p.add_argument('--quantize-augment', choices=list(datasets.AUGMENTATIONS), default='crop-flip',
                   help='augmentation of the training images in trained quantization (as '
                        'pruning.py --re-augment): crop-flip, flip only, or none')
    p.add_argument('--batch-size', type=int, default=256, metavar='N',
                   help='batch size of trained quantization')
    p.add_argument('--seed', type=int, default=42, metavar='S')
    p.add_argument('--no-cuda', action='store_true', default=False, help='disables CUDA')
    p.add_argument('--log', type=str, default='log.txt', help='log file name')
    util.add_data_arguments(p, from_checkpoint=True)
    p.add_argument('--subset', type=int, default=None, metavar='N',
                   help='use only N train and N test images')
    util.add_config_argument(p)
    return util.parse_with_config(p, argv, 'weight_share')


def parse_bits(text):
    """--bits: an integer, or a JSON object layer -> integer (the layer names are checked
    against the model by net.quantization.validate_bits)."""
    try:
        bits = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f'--bits is neither an integer nor valid JSON ({err.msg}): {text}') from None
    if isinstance(bits, dict):
        return {name: check_bits(value) for name, value in bits.items()}
    return check_bits(bits)



def main(argv=None):
    args = parse_args(argv)
    try:
        run(args, parse_bits(args.bits))
    except (ValueError, CheckpointError, datasets.DataError) as err:
        util.fail(err)


def trained_quantization(model, args, device, history):
    """Fine-tune the shared values and biases; zeros and cluster assignments stay fixed."""
    data = datasets.model_data(model, args.data_dir, args.subset, device)
    shared = SharedWeights(model)
    biases = [m.bias for _, m in model.prunable_layers() if m.bias is not None]
    steps = -(-len(data[1]) // args.batch_size) * args.quantize_epochs
    optimizer, scheduler = make_optimizer(shared.parameters() + biases, 'adam', args.quantize_lr,
                                          0, 'onecycle', steps)
    fit(model, data, args.quantize_epochs, optimizer, scheduler,
        phase='quantize', generator=torch.Generator().manual_seed(args.seed), history=history,
        batch_size=args.batch_size, after_backward=shared.accumulate_gradients,
        after_step=shared.write_back, augmentation=args.quantize_augment)


def run(args, bits):
    started = time.time()
    torch.manual_seed(args.seed)
    device = util.device_for(not args.no_cuda)
    config = util.start_run(args, 'weight_share.py', {'--save-model-path': args.save_model_path},
                            bits=bits, device=str(device))
    model = load_model(args.load_model_path, device, made_by='pruning.py', arch=args.model,
                       dataset=args.dataset)
    validate_bits(model, bits)

    print('--- Accuracy before weight sharing ---')
    before = util.test_with(model, args)
    util.log(f'accuracy_before_weight_sharing {before}', args.log)

    apply_weight_sharing(model, bits, args.init)
    print('--- Accuracy after weight sharing ---')
    after = util.test_with(model, args)
    results = {'config': config, 'accuracy_before': before, 'accuracy_after_sharing': after}
    if args.quantize_epochs > 0:
        history = []
        trained_quantization(model, args, device, history)
        print('--- Accuracy after trained quantization ---')
        after = util.test_with(model, args)
        results |= {'accuracy_after_trained_quantization': after, 'history': history}
    util.log(f'accuracy_after_weight_sharing {after}', args.log)
    save_model(model, args.save_model_path)

    distinct = {name: len(p.detach().unique()) for name, p in model.named_parameters()
                if p.dim() > 1}
    print('distinct values per layer (including 0): ' + json.dumps(distinct))
    util.write_json(util.results_path(args.log, 'weight_share'), results | {
        'accuracy_after': after, 'distinct_values': distinct,
        'wall_seconds': time.time() - started})
    print(f'wrote {args.save_model_path} in {time.time() - started:.0f} s')


if __name__ == '__main__':
    main()
