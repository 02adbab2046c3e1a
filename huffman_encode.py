"""Huffman-encode the weight-shared model, report the compression, decode and re-test.

Reads saves/model_after_weight_sharing.ptmodel, writes encodings/ (the homework format)
and, with --pack PATH, the whole compressed model as one .dcz file. --unpack PATH only
loads such a file and tests it (--export OUT.pt: and writes the compact network of its live
units).
"""
import os
import sys
import time

import torch

import util
from net.checkpoint import CheckpointError, load_model
from net.compact import parameter_count
from net.container import ContainerError, load_compressed, save_compressed, strip_dead_units
from net.export import export_compact
from net.huffmancoding import (
    HuffmanFormatError,
    check_replaceable,
    huffman_decode_model,
    huffman_encode_model,
)
from net.models import build_model, check_model
from net.prune import state_without_masks
from recipe import datasets, settings


def parse_args(argv=None):
    """The settings of a run (recipe/settings.py's EncodingSettings)."""
    return settings.parse(settings.EncodingSettings, argv, 'huffman_encode',
                          'Huffman-encode a weight-shared model')


def command_of(argv=None):
    """The command line itself, recorded beside a shipped .dcz file."""
    return 'python huffman_encode.py ' + ' '.join(sys.argv[1:] if argv is None else argv)


def is_inside(path, folder):
    folder = os.path.abspath(folder)
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def states_equal(a, b):
    """Every tensor of a's state but the masks (parameters, batch-norm statistics, other
    buffers) equals b's exactly (==; the sparse format stores no -0.0)."""
    a, b = state_without_masks(a), state_without_masks(b)
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args, command_of(argv))
    except (ValueError, CheckpointError, datasets.DataError, HuffmanFormatError, ContainerError) as err:
        util.fail(err)


def run(args, command):
    started = time.time()
    if not args.unpack:
        check_replaceable(args.out)  # never a folder holding files the encoder did not write
        if args.pack and is_inside(args.pack, args.out):
            raise ValueError(f'--pack {args.pack} is inside --out {args.out}, which each run '
                             'replaces whole: pack it elsewhere (the recipes use saves/model.dcz)')
    outputs = {'--export': args.export} if args.unpack else {'--out/': args.out, '--pack': args.pack}
    config, _ = util.start_run(args, 'huffman_encode.py', outputs, command=command)
    if (args.pack_float16 or args.pack_bias_bits is not None) and not args.pack:
        raise ValueError('--pack-float16 and --pack-bias-bits change the .dcz file: add --pack PATH')
    if args.pack and args.unpack:
        raise ValueError('--pack writes a .dcz file and --unpack only reads one: use one of them')
    if args.export and not args.unpack:
        raise ValueError('--export writes the compact network of a .dcz file: add --unpack FILE.dcz')
    if args.unpack:
        return unpack(args, config)
    model = load_model(args.load_model_path, 'cpu', made_by='weight_share.py', arch=args.model,
                       dataset=args.dataset)

    print('--- Accuracy before encoding ---')
    before = util.test_with(model, args)
    t0 = time.time()
    rows = huffman_encode_model(model.cpu(), args.out, args.log)
    encode_seconds = time.time() - t0
    total = rows[-1]
    ratio = total['original'] / total['compressed']
    util.log(f"compression {total['original']} -> {total['compressed']} bytes, {ratio:.2f}x", args.log)

    decoded = build_model(model.arch, model.dataset)
    t0 = time.time()
    huffman_decode_model(decoded, args.out)
    decode_seconds = time.time() - t0
    exact = states_equal(model, decoded)
    print('--- Accuracy after decoding ---')
    after = util.test_with(decoded, args)
    util.log(f'accuracy_after_decoding {after}', args.log)
    if not exact or after != before:
        util.fail(f'decoding is not exact (accuracy {before:.2f}% before, {after:.2f}% after)')
    print(f'decoded parameters equal the encoded ones exactly; accuracy unchanged ({after:.2f}%)')
    print(f"total compression: {ratio:.2f}x ({total['compressed']} bytes in {args.out}, and its "
          f"{total['manifest']}-byte manifest); "
          f'encode {encode_seconds:.2f} s, decode {decode_seconds:.2f} s')
    record = {
        'config': config, 'layers': rows, 'ratio': ratio, 'accuracy_before': before,
        'accuracy_after_decoding': after, 'exact': exact, 'encode_seconds': encode_seconds,
        'decode_seconds': decode_seconds}
    if args.pack:
        record['pack'] = pack(model, args, total, command)
    util.write_json(util.results_path(args.log, 'huffman_encode'),
                    record | {'wall_seconds': time.time() - started})


def pack(model, args, homework, command):
    """Write the .dcz file, load it back, check it and test it; describe it in a JSON file
    beside it (PATH with .json for .dcz); return its report."""
    lossy = args.pack_float16 or args.pack_bias_bits is not None
    t0 = time.time()
    report = save_compressed(model, args.pack, args.pack_float16, args.pack_bias_bits)
    encode_seconds = time.time() - t0
    t0 = time.time()
    loaded = load_compressed(args.pack)
    decode_seconds = time.time() - t0
    print(format_pack_table(report))
    print('--- Accuracy after loading the .dcz file ---')
    accuracy = util.test_with(loaded, args)
    if not lossy and not states_equal(strip_dead_units(model), loaded):
        util.fail(f'{args.pack} does not load back bit-exact (accuracy {accuracy:.2f}% after loading)')
    what = 'lossy: ' + ', '.join(filter(None, [
        'float16 values' if args.pack_float16 else '',
        f'{args.pack_bias_bits}-bit shared biases' if args.pack_bias_bits is not None else '']))
    print(f"{args.pack}: {report['bytes']} bytes, {report['ratio']:.2f}x, accuracy {accuracy:.2f}% "
          f"({what if lossy else 'lossless: loads back bit-exact'}); "
          f'encode {encode_seconds:.2f} s, load {decode_seconds:.2f} s')
    util.log(f"pack {args.pack} {report['bytes']} bytes {report['ratio']:.2f}x accuracy {accuracy}",
             args.log)
    report |= {'path': args.pack, 'accuracy': accuracy, 'encode_seconds': encode_seconds,
               'decode_seconds': decode_seconds}
    util.write_json(description_path(args.pack), describe_pack(report, args, homework, command))
    return report


def description_path(pack_path):
    """model.dcz -> model.json; any other name gets .json appended (never the file itself)."""
    stem, extension = os.path.splitext(pack_path)
    return stem + '.json' if extension == '.dcz' else pack_path + '.json'


def describe_pack(report, args, homework, command):
    """What a shipped .dcz file is, how well it does, and the command that made it."""
    data = f'the test split of {datasets.data_source(args.data_dir, report["dataset"])}'
    if args.subset:
        data += f', first {args.subset} images of a fixed random subset'
    return {
        'file': os.path.basename(args.pack), 'model': report['architecture'],
        'dataset': report['dataset'], 'bytes': report['bytes'], 'ratio': report['ratio'],
        'accuracy': report['accuracy'], 'measured_on': data,
        'lossy_extras': {'float16': args.pack_float16, 'bias_bits': args.pack_bias_bits},
        'homework_format_bytes': homework['compressed'],
        'homework_format_ratio': homework['original'] / homework['compressed'],
        'dense_float32_bytes': report['dense_bytes'],
        'layers': {r['layer']: {k: v for k, v in r.items() if k != 'layer'} for r in report['layers']},
        'command': command}


def unpack(args, config):
    t0 = time.time()
    model = load_compressed(args.unpack)
    seconds = time.time() - t0
    check_model(model, args.unpack, args.model, args.dataset)
    print(f'--- Accuracy of {args.unpack} ---')
    accuracy = util.test_with(model, args)
    print(f'{args.unpack}: accuracy {accuracy:.2f}% (loaded in {seconds:.2f} s)')
    util.log(f'unpack {args.unpack} accuracy {accuracy}', args.log)
    record = {'config': config, 'unpack': args.unpack, 'accuracy': accuracy, 'load_seconds': seconds}
    if args.export:
        record['export'] = export(model, args)
    util.write_json(util.results_path(args.log, 'huffman_encode'), record)


def export(model, args):
    """Write and test the compact network of model's live units; return its record."""
    compact = export_compact(model, args.export)
    print(f'--- Accuracy of the compact network {args.export} ---')
    accuracy = util.test_with(compact, args)
    size = parameter_count(compact)
    print(f'{args.export}: {size:,} parameters (of {parameter_count(model):,}), accuracy {accuracy:.2f}%; '
          'load it with net.export.load_compact')
    util.log(f'export {args.export} parameters {size} accuracy {accuracy}', args.log)
    return {'path': args.export, 'parameters': size, 'accuracy': accuracy}


def format_pack_table(report):
    """Per-layer bytes of a .dcz file: the parts of each layer section, with the order-0
    entropy of each coded stream in brackets."""
    width = max(8, *(len(r['layer']) + 1 for r in report['layers']))
    lines = [f"{'layer':{width}}{'non-zeros':>10}{'values':>7}{'live units':>11}{'codebook bits':>14}"
             f"{'value bits (H0)':>18}{'position bits (H0)':>21}{'bias bits':>10}{'section B':>10}"]
    for r in report['layers']:
        values = f"{r['value_bits']} ({r['value_entropy_bits']:.0f})"
        positions = f"{r['position_bits']} ({r['position_entropy_bits']:.0f})"
        lines.append(f"{r['layer']:{width}}{r['nonzeros']:>10}{r['values']:>7}{r['live_units']:>11}"
                     f"{r['codebook_bits']:>14}{values:>18}{positions:>21}{r['bias_bits']:>10}"
                     f"{r['bytes']:>10}")
    tensors = f"tensors {report['tensor_bytes']} B; " if report['tensor_bytes'] else ''
    lines.append(f"header {report['header_bytes']} B; {tensors}total {report['bytes']} B "
                 f"({report['dense_bytes']} dense float32 B, {report['ratio']:.2f}x)")
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
