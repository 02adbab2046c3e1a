"""Huffman encode/decode time of a model: this project's codec against a straightforward
bit-string implementation in the style of the slides' starter code, same streams, same run.

    python bench/huffman.py [--load-model-path saves/model_after_weight_sharing.ptmodel]
"""
import argparse
import heapq
import time
from collections import Counter, defaultdict

import numpy as np
from common import final_or_synthetic_model

import util
from net.huffmancoding import decode_stream, encode_stream, model_streams


# ---------------------------------------------------------------- the baselines
class Node:
    def __init__(self, freq, value, left=None, right=None):
        self.freq, self.value, self.left, self.right = freq, value, left, right

    def __lt__(self, other):
        return self.freq < other.freq


def build_codes(freq_map):
    """Huffman tree and {value: '0'/'1' string} from a frequency map (dummy sibling for one)."""
    heap = [Node(f, v) for v, f in freq_map.items()]
    if len(heap) == 1:
        heap.append(Node(0, None))
    heapq.heapify(heap)
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        heapq.heappush(heap, Node(a.freq + b.freq, None, a, b))
    codes = {}

    def walk(node, code):
        if node.left is None:
            codes[node.value] = code
        else:
            walk(node.left, code + '0')
            walk(node.right, code + '1')
    if heap:
        walk(heap[0], '')
    return (heap[0] if heap else None), codes


def walk_bits(root, bits, dtype):
    """Decode by walking the tree one '0'/'1' character at a time."""
    out, node = [], root
    for bit in bits:
        node = node.left if bit == '0' else node.right
        if node.left is None:
            out.append(node.value)
            node = root
    return np.array(out, dtype=dtype)


def starter_encode(arr):
    """As the slides' starter code does it: np.nditer for counting and coding, a string of
    '0'/'1' characters, packed eight characters at a time."""
    convert = {'float32': float, 'int32': int}[str(arr.dtype)]
    freq_map = defaultdict(int)
    for value in np.nditer(arr):
        freq_map[convert(value)] += 1
    root, codes = build_codes(freq_map)
    bits = ''.join(codes[convert(value)] for value in np.nditer(arr))
    padding = -len(bits) % 8
    bits = f'{padding:08b}' + bits + '0' * padding
    return root, bytearray(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


def starter_decode(root, data, dtype):
    bits = ''.join(f'{byte:08b}' for byte in data[1:])
    if data[0]:
        bits = bits[:-data[0]]
    return walk_bits(root, bits, dtype)


def tuned_encode(arr):
    """The same bit-string method with faster Python: tolist, one int() over the string."""
    values = arr.tolist()
    root, codes = build_codes(Counter(values))
    bits = ''.join(codes[v] for v in values)
    padded = bits + '0' * (-len(bits) % 8)
    return root, (int(padded, 2).to_bytes(len(padded) // 8, 'big') if padded else b'', len(bits))


def tuned_decode(root, encoded, dtype):
    data, n_bits = encoded
    return walk_bits(root, bin(int.from_bytes(data, 'big'))[2:].zfill(len(data) * 8)[:n_bits], dtype)


CODECS = {
    'starter-style bit strings': (starter_encode, starter_decode),
    'tuned bit strings': (tuned_encode, tuned_decode),
    'this project': (lambda arr: (None, encode_stream(arr)),
                     lambda _, encoded, dtype: decode_stream(*encoded)),
}


# ---------------------------------------------------------------- measurement
def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--load-model-path', default='saves/model_after_weight_sharing.ptmodel')
    p.add_argument('--json', default=None, help='also write the figures to this JSON file')
    args, _ = p.parse_known_args()  # make bench passes the common flags too
    streams = model_streams(final_or_synthetic_model(args.load_model_path))
    symbols = sum(len(a) for _, a in streams)
    print(f'{len(streams)} streams, {symbols:,} symbols')
    figures = {'streams': len(streams), 'symbols': symbols}
    for codec, (encode, decode) in CODECS.items():
        encode_s = decode_s = 0.0
        for prefix, arr in streams:
            (root, encoded), t = timed(encode, arr)
            encode_s += t
            decoded, t = timed(decode, root, encoded, arr.dtype)
            decode_s += t
            assert np.array_equal(decoded.view(np.uint32), arr.view(np.uint32)), (codec, prefix)
        figures[codec] = {'encode_s': encode_s, 'decode_s': decode_s}
    ours = figures['this project']
    print(f"{'':28} {'encode s':>9} {'decode s':>9} {'speed-up (enc / dec / both)':>30}")
    for codec in CODECS:
        f = figures[codec]
        f['speedup'] = {k: f[f'{k}_s'] / ours[f'{k}_s'] for k in ('encode', 'decode')}
        f['speedup']['both'] = (f['encode_s'] + f['decode_s']) / (ours['encode_s'] + ours['decode_s'])
        s = f['speedup']
        print(f"{codec:28} {f['encode_s']:9.3f} {f['decode_s']:9.3f} "
              f"{s['encode']:12.1f}x {s['decode']:7.1f}x {s['both']:7.1f}x")
    print('(speed-up: how many times longer that codec takes than this project)')
    if args.json:
        util.write_json(args.json, figures)


if __name__ == '__main__':
    main()
