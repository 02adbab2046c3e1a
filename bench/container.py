"""The .dcz container on one model: encode and load time against the homework format's
(same model, same run), and per layer how close its coding comes to the entropy of what
it codes, beside the paper's fixed-width relative positions.

    python bench/container.py [--model models/alexnet-cifar10.dcz | a weight-shared .ptmodel]

Entropies are the container's own report (order-0, over the layer's own symbols, tables
not counted): values, H(value index); positions, H(gap) over the order the file scans.
Numbers (codebooks, live biases): bits each against raw float32's 32.
"Paper positions": the paper's relative index, a 5-bit (fc) or 8-bit (conv) gap per
non-zero with a filler zero per overflow, over the whole layer.
"""
import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time

import numpy as np
from common import final_or_synthetic_model

import util
from net.container import load_compressed, save_compressed, strip_dead_units
from net.huffmancoding import huffman_decode_model, huffman_encode_model
from net.models import build_model

REPEATS = 5


def paper_position_bits(weight):
    """Bits of the paper's relative index: width-bit gaps, a filler entry per overflow."""
    width = 8 if weight.ndim == 4 else 5
    gaps = np.diff(np.flatnonzero(weight.reshape(-1)), prepend=-1)
    fillers = (gaps - 1) // (1 << width)
    return int((len(gaps) + fillers.sum()) * width)


def layer_rows(model, report):
    rows = []
    for (name, layer), r in zip(model.prunable_layers(), report['layers'], strict=True):
        n = max(r['nonzeros'], 1)
        rows.append({
            'layer': name, 'nonzeros': r['nonzeros'], 'bytes': r['bytes'],
            'value_bits_per_weight': r['value_bits'] / n,
            'value_entropy_per_weight': r['value_entropy_bits'] / n,
            'position_bits_per_weight': r['position_bits'] / n,
            'position_entropy_per_weight': r['position_entropy_bits'] / n,
            'paper_position_bits_per_weight': paper_position_bits(layer.weight.detach().numpy()) / n,
            'all_bits_per_weight': 8 * r['bytes'] / n})
    return rows


def timed(fn):
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default='models/alexnet-cifar10.dcz')
    p.add_argument('--json', default=None, help='also write the figures here')
    args = p.parse_args()
    if args.model.endswith('.dcz') and os.path.isfile(args.model):
        print(f'model: {args.model}')
        model = load_compressed(args.model)
    else:
        model = final_or_synthetic_model(args.model)
    model = strip_dead_units(model)  # both formats code the same weights
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'model.dcz')
        encode_s, report = timed(lambda: save_compressed(model, path))
        load_s, _ = timed(lambda: load_compressed(path))
        homework = os.path.join(tmp, 'encodings')
        with contextlib.redirect_stdout(io.StringIO()):  # its per-layer table
            hw_encode_s, hw_rows = timed(lambda: huffman_encode_model(model, homework,
                                                                      os.path.join(tmp, 'log')))
        hw_decode_s, _ = timed(lambda: huffman_decode_model(build_model(model.arch, model.dataset), homework))
    rows = layer_rows(model, report)
    print(f"{'layer':7}{'non-zeros':>10}{'bytes':>7}{'value b/w':>10}{'H value':>9}"
          f"{'pos b/w':>9}{'H pos':>8}{'paper pos':>10}{'all b/w':>9}")
    for r in rows:
        print(f"{r['layer']:7}{r['nonzeros']:>10}{r['bytes']:>7}{r['value_bits_per_weight']:>10.2f}"
              f"{r['value_entropy_per_weight']:>9.2f}{r['position_bits_per_weight']:>9.2f}"
              f"{r['position_entropy_per_weight']:>8.2f}{r['paper_position_bits_per_weight']:>10.2f}"
              f"{r['all_bits_per_weight']:>9.2f}")
    nonzeros = sum(r['nonzeros'] for r in rows)
    homework_bytes = hw_rows[-1]['compressed']
    print(f"container: {report['bytes']} bytes ({report['ratio']:.1f}x), "
          f"{8 * report['bytes'] / nonzeros:.2f} bits per non-zero weight, all included")
    units = sum(r['live_units'] for r in report['layers'])
    bias_bits = sum(r['bias_bits'] for r in report['layers']) / max(units, 1)
    values = sum(r['values'] for r in report['layers'])
    codebook_bits = sum(r['codebook_bits'] for r in report['layers']) / max(values, 1)
    print(f'numbers: {bias_bits:.2f} bits per live bias ({units}), {codebook_bits:.2f} per codebook '
          f'value ({values}); raw float32: 32')
    print(f"homework format: {homework_bytes} bytes ({report['dense_bytes'] / homework_bytes:.1f}x)")
    print(f'encode: container {encode_s * 1000:.1f} ms, homework format {hw_encode_s * 1000:.1f} ms')
    print(f'load:   container {load_s * 1000:.1f} ms, homework format {hw_decode_s * 1000:.1f} ms '
          f'(median of {REPEATS})')
    if args.json:
        util.write_json(args.json, {
            'model': args.model, 'bytes': report['bytes'], 'ratio': report['ratio'],
            'homework_bytes': homework_bytes, 'encode_seconds': encode_s, 'load_seconds': load_s,
            'homework_encode_seconds': hw_encode_s, 'homework_decode_seconds': hw_decode_s,
            'bits_per_live_bias': bias_bits, 'bits_per_codebook_value': codebook_bits, 'layers': rows})


if __name__ == '__main__':
    main()
