"""Huffman-encode the weight-shared model, report the compression, decode and re-test.

Reads saves/model_after_weight_sharing.ptmodel, writes encodings/.
"""
import argparse
import json
import time

import torch

import util
from net.checkpoint import CheckpointError, load_model
from net.huffmancoding import HuffmanFormatError, huffman_decode_model, huffman_encode_model
from net.models import AlexNet


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Huffman-encode a weight-shared AlexNet')
    p.add_argument('--load-model-path', type=str, default='saves/model_after_weight_sharing.ptmodel')
    p.add_argument('--out', type=str, default='encodings/', help='directory of the encodings')
    p.add_argument('--no-cuda', action='store_true', default=False, help='disables CUDA')
    p.add_argument('--log', type=str, default='log.txt', help='log file name')
    p.add_argument('--data-dir', type=str, default=None, metavar='DIR',
                   help='ImageFolder copy of CIFAR-10 (DIR/train, DIR/test) instead of the download')
    p.add_argument('--subset', type=int, default=None, metavar='N', help='test on N images only')
    util.add_config_argument(p)
    return util.parse_with_config(p, argv, 'huffman_encode')


def parameters_equal(a, b):
    """Every parameter of a equals b's exactly (==; the sparse format stores no -0.0)."""
    return all(torch.equal(p.cpu(), q.cpu())
               for p, q in zip(a.parameters(), b.parameters(), strict=True))


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, CheckpointError, util.DataError, HuffmanFormatError) as err:
        util.fail(err)


def run(args):
    started = time.time()
    util.DATA_DIR, util.SUBSET = args.data_dir, args.subset
    use_cuda = not args.no_cuda
    config = vars(args) | {'device': str(util.device_for(use_cuda))}
    print(f'config: {json.dumps(config)}')
    util.log(f'huffman_encode.py config {json.dumps(config)}', args.log)
    model = load_model(args.load_model_path, 'cpu', made_by='weight_share.py')

    print('--- Accuracy before encoding ---')
    before = util.test(model, use_cuda)
    t0 = time.time()
    rows = huffman_encode_model(model.cpu(), args.out, args.log)
    encode_seconds = time.time() - t0
    total = rows[-1]
    ratio = total['original'] / total['compressed']
    util.log(f"compression {total['original']} -> {total['compressed']} bytes, {ratio:.2f}x", args.log)

    decoded = AlexNet()
    t0 = time.time()
    huffman_decode_model(decoded, args.out)
    decode_seconds = time.time() - t0
    exact = parameters_equal(model, decoded)
    print('--- Accuracy after decoding ---')
    after = util.test(decoded, use_cuda)
    util.log(f'accuracy_after_decoding {after}', args.log)
    if not exact or after != before:
        util.fail(f'decoding is not exact (accuracy {before:.2f}% before, {after:.2f}% after)')
    print(f'decoded parameters equal the encoded ones exactly; accuracy unchanged ({after:.2f}%)')
    print(f"total compression: {ratio:.2f}x ({total['compressed']} bytes on disk in {args.out}); "
          f'encode {encode_seconds:.2f} s, decode {decode_seconds:.2f} s')
    util.write_json(util.results_path(args.log, 'huffman_encode'), {
        'config': config, 'layers': rows, 'ratio': ratio, 'accuracy_before': before,
        'accuracy_after_decoding': after, 'exact': exact, 'encode_seconds': encode_seconds,
        'decode_seconds': decode_seconds, 'wall_seconds': time.time() - started})


if __name__ == '__main__':
    main()
