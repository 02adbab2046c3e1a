"""Weight sharing (k-means per layer) of the retrained model, optionally followed by
trained quantization (fine-tuning the shared values).

Reads saves/model_after_retraining.ptmodel, writes saves/model_after_weight_sharing.ptmodel.
"""
import json
import time

import torch

import util
from net.checkpoint import CheckpointError, load_model, save_model
from net.quantization import (
    SharedWeights,
    apply_bias_sharing,
    apply_grid,
    apply_weight_sharing,
    validate_bits,
)
from recipe import datasets, settings
from recipe.training import Phase, fit


def parse_args(argv=None):
    """The settings of a run (recipe/settings.py's WeightSharingSettings)."""
    return settings.parse(settings.WeightSharingSettings, argv, 'weight_share',
                          'Weight-share (k-means quantize) a pruned model')


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args, args.bits)
    except (ValueError, CheckpointError, datasets.DataError) as err:
        util.fail(err)


def trained_quantization(model, args, device, history):
    """Fine-tune the shared values and biases; zeros and cluster assignments stay fixed
    (and shared values on their grid, with --grid-bits)."""
    data = datasets.model_data(model, args.data_dir, args.subset, device)
    shared_biases = args.bias_bits is not None
    shared = SharedWeights(model, biases=shared_biases, grid_bits=args.grid_bits)
    raw_biases = [] if shared_biases else [m.bias for _, m in model.prunable_layers()
                                           if m.bias is not None]
    phase = Phase('quantize', args.quantize_epochs, shared.parameters() + raw_biases,
                  shared.accumulate_gradients, shared.write_back)
    fit(model, data, settings.quantization(args), phase, torch.Generator().manual_seed(args.seed),
        history)


def share(model, args, bits):
    """The weight sharing of the run: k-means of the weights, then (if asked) of the
    biases, then (if asked) the fixed-point grid."""
    apply_weight_sharing(model, bits, args.init)
    if args.bias_bits is not None:
        apply_bias_sharing(model, args.bias_bits, args.init)
    if args.grid_bits is not None:
        apply_grid(model, args.grid_bits, biases=args.bias_bits is not None)


def run(args, bits):
    started = time.time()
    config, device = util.start_run(args, 'weight_share.py',
                                    {'--save-model-path': args.save_model_path}, bits=bits)
    model = load_model(args.load_model_path, device, made_by='pruning.py', arch=args.model,
                       dataset=args.dataset)
    validate_bits(model, bits)

    print('--- Accuracy before weight sharing ---')
    before = util.test_with(model, args)
    util.log(f'accuracy_before_weight_sharing {before}', args.log)

    share(model, args, bits)
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
