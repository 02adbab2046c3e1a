"""A canonical Huffman codec over symbols 0..n-1, vectorised with numpy (no Python loop
walks single bits): build a code from symbol counts (optionally length-limited), encode
symbols into zero-padded bytes (MSB first), decode them back. A code is defined by its
symbols' code lengths alone, which is what a file needs to store of it.

Used by both file formats: the homework encodings (net/huffmancoding.py), which store the
code as the starter's preorder tree, and the .dcz file (net/container.py), which stores
4-bit code lengths. Also here: varints, the byte-level integers both formats write.
"""
import numpy as np

# Windows of up to 57 bits are read from 8 bytes at any bit offset. A code that long
# needs more symbols than fit in memory (Huffman depth grows like log_phi of the count).
MAX_CODE_LENGTH = 57
DECODE_CHUNK = 1 << 23  # bits; a multiple of 8
DIRECT_TABLE_BITS = 20  # longer codes are looked up by binary search instead of a table
# Streams of at least LANES_MIN_BITS bits are decoded in lanes of about LANE_SYMBOLS
# codewords; lanes not resynchronised after LANE_ROUNDS rounds fall back to jump tables.
LANES_MIN_BITS = 1 << 16
LANE_SYMBOLS = 256
LANE_ROUNDS = 8


class HuffmanFormatError(ValueError):
    """A Huffman file is truncated, corrupt or not one of ours."""


class HuffmanCode:
    """The canonical Huffman code with these code lengths (one per symbol 0..n-1, each
    1..57; or a single symbol of length 0, which costs no bits)."""

    def __init__(self, lengths):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.codes, self.order = canonical_codes(self.lengths)  # order: symbols by (length, symbol)

    @classmethod
    def from_counts(cls, counts: np.ndarray, max_length: int = MAX_CODE_LENGTH) -> 'HuffmanCode':
        """The Huffman code of symbols with these counts (0 counts as 1) and codes of at
        most max_length bits: counts are halved until it fits, which ends at worst in a
        balanced code. A single symbol gets length 0: it needs no bits."""
        counts = np.maximum(np.asarray(counts, dtype=np.int64), 1)
        if len(counts) <= 1:
            return cls(np.zeros(len(counts), dtype=np.int64))
        while True:
            lengths = huffman_code_lengths(counts)
            if lengths.max() <= max_length:
                return cls(lengths)
            counts = (counts + 1) // 2

    def encode(self, symbols: np.ndarray) -> bytes:
        """The codes of symbols (an integer array), concatenated into zero-padded bytes."""
        return pack_codes(self.codes[symbols], self.lengths[symbols])

    def decode(self, body: bytes, n: int, path: str = 'stream') -> tuple[np.ndarray, int]:
        """(the first n symbols coded in body, the number of bits they take);
        HuffmanFormatError, naming path, if body holds fewer."""
        if n and not len(self.lengths):
            raise HuffmanFormatError(f'{path}: {n} symbols of an empty code')
        if n == 0 or not self.lengths.any():  # a single symbol takes no bits
            return np.zeros(n, dtype=np.int64), 0
        canonical = self.order
        lengths = self.lengths[canonical]
        if n > len(body) * 8 // int(lengths[0]):  # checked before any n-sized allocation
            raise HuffmanFormatError(f'{path}: truncated stream ({n} symbols claimed)')
        starts, leaf = codeword_starts(body, lengths, self.codes[canonical], n, path)
        return canonical[leaf], int(starts[-1] + lengths[leaf[-1]])


# ---------------------------------------------------------------- building a code
def huffman_code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code length of each symbol, given their counts (all > 0).

    One symbol gets length 1: the starter's dummy sibling makes it cost one bit each.
    """
    n = len(counts)
    if n == 1:
        return np.ones(1, dtype=np.int64)
    # Two-queue Huffman over counts sorted ascending: O(n) after the sort.
    order = np.argsort(counts, kind='stable')
    leaves = counts[order].tolist()
    parent = [0] * (2 * n - 1)           # nodes 0..n-1 leaves (sorted), then internal
    weights = leaves + [0] * (n - 1)
    leaf_next, node_next, node_end = 0, n, n
    for node in range(n, 2 * n - 1):
        picked = []
        for _ in range(2):
            if leaf_next < n and (node_next >= node_end or leaves[leaf_next] <= weights[node_next]):
                picked.append(leaf_next)
                leaf_next += 1
            else:
                picked.append(node_next)
                node_next += 1
        weights[node] = weights[picked[0]] + weights[picked[1]]
        parent[picked[0]] = parent[picked[1]] = node
        node_end += 1
    depth = [0] * (2 * n - 1)
    for node in range(2 * n - 3, -1, -1):  # parents are created after their children
        depth[node] = depth[parent[node]] + 1
    lengths = np.empty(n, dtype=np.int64)
    lengths[order] = depth[:n]
    return lengths


def canonical_codes(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical code values for the given lengths, in symbol order.

    Symbols sorted by (length, index) get consecutive codes; that order is also the
    left-to-right leaf order of the code tree.
    """
    order = np.lexsort((np.arange(len(lengths)), lengths))
    sorted_lengths = lengths[order]
    codes_sorted = np.zeros(len(lengths), dtype=np.uint64)
    code = 0
    previous_length = int(sorted_lengths[0]) if len(lengths) else 0
    starts = np.flatnonzero(np.diff(sorted_lengths, prepend=-1))
    for i, start in enumerate(starts):  # one step per distinct length, at most 57
        length = int(sorted_lengths[start])
        code <<= length - previous_length
        end = starts[i + 1] if i + 1 < len(starts) else len(lengths)
        codes_sorted[start:end] = np.arange(code, code + end - start, dtype=np.uint64)
        code += end - start
        previous_length = length
    codes = np.empty_like(codes_sorted)
    codes[order] = codes_sorted
    return codes, order


# ---------------------------------------------------------------- bit packing
def pack_codes(codes: np.ndarray, lengths: np.ndarray) -> bytes:
    """Concatenate variable-length codes (MSB first, each at most 57 bits) into
    zero-padded bytes.

    Each code lands in one 64-bit word or straddles two. Codes never overlap, so the
    words are sums: np.add.reduceat over the codes of each word, in stream order.
    """
    ends = np.cumsum(lengths, dtype=np.int64)
    total_bits = int(ends[-1]) if len(ends) else 0
    if total_bits == 0:
        return b''
    starts = ends - lengths
    word = starts >> 6
    end_in_word = (starts & 63) + lengths                  # 1..120 (0 for empty codes)
    head = codes << (64 - end_in_word).clip(0, 63).astype(np.uint64)
    straddling = np.flatnonzero(end_in_word > 64)         # these spill into the next word
    spill = (end_in_word[straddling] - 64).astype(np.uint64)
    head[straddling] = codes[straddling] >> spill
    words = np.zeros((total_bits + 63) // 64 + 1, dtype=np.uint64)
    first = np.flatnonzero(np.diff(word, prepend=-1))
    words[word[first]] = np.add.reduceat(head, first)
    words[word[straddling] + 1] += codes[straddling] << (np.uint64(64) - spill)
    return words.astype('>u8').tobytes()[:(total_bits + 7) // 8]


def _byte_words(body):
    """A view: the big-endian 64-bit word starting at every byte of body (zero-padded)."""
    padded = np.frombuffer(body + bytes(8), dtype=np.uint8)
    return np.ndarray((len(body) + 1,), dtype='>u8', buffer=padded, strides=(1,))


def bit_windows(body: bytes, positions: np.ndarray, width: int) -> np.ndarray:
    """The `width`-bit big-endian integer starting at each bit position of body."""
    words = _byte_words(body)[positions >> 3].astype(np.uint64)
    return (words << (positions & 7).astype(np.uint64)) >> np.uint64(64 - width)


# ---------------------------------------------------------------- decoding
def codeword_starts(body: bytes, lengths: np.ndarray, codes: np.ndarray, n: int,
                    path: str) -> tuple[np.ndarray, np.ndarray]:
    """Bit offsets and leaf indices of the first n codewords of body."""
    total_bits = len(body) * 8
    max_length = int(lengths.max())
    leaf_of = _leaf_lookup(lengths, codes, max_length)
    if len(np.unique(lengths)) == 1:  # a fixed-length code
        starts = np.arange(n, dtype=np.int64) * int(lengths[0])
    else:
        starts = None
        if total_bits >= LANES_MIN_BITS:
            starts = _starts_by_lanes(body, lengths, leaf_of, max_length, n)
        if starts is None:
            starts = _starts_by_jumps(body, lengths, leaf_of, max_length, n)
    if len(starts) < n or starts[n - 1] >= total_bits:
        raise HuffmanFormatError(f'{path}: truncated stream (fewer than {n} symbols)')
    starts = starts[:n]
    leaf = leaf_of(bit_windows(body, starts, max_length))
    if starts[-1] + lengths[leaf[-1]] > total_bits:
        raise HuffmanFormatError(f'{path}: truncated stream (fewer than {n} symbols)')
    return starts, leaf


def _starts_by_lanes(body, lengths, leaf_of, max_length, n):
    """Codeword starts found by decoding many lanes of the stream side by side.

    The stream is cut into lanes of equal bit length and every lane is decoded at once
    (numpy over lanes, one step per codeword) from its first bit, as if a codeword
    started there. Huffman codes resynchronise: a lane entered mid-codeword soon falls
    onto the true codeword boundaries. Each lane's true entry is where the lane before
    it exits; from there it is decoded again until it meets a position of its first
    pass, after which that pass is right. Returns None if lanes fail to resynchronise
    (then the caller uses the jump-table method, which always works).
    """
    total_bits = len(body) * 8
    step_of = _step_lookup(lengths.astype(np.int64), leaf_of, max_length)
    words = _byte_words(body).astype(np.uint64)
    shift = np.uint64(64 - max_length)

    def step(p):
        return step_of((words[p >> 3] << (p & 7).astype(np.uint64)) >> shift)

    # Lanes of about LANE_SYMBOLS codewords; a multiple of the code lengths' common
    # divisor, so a lane starts on the same residue as the true boundaries.
    granule = int(np.gcd.reduce(lengths))
    lane_bits = max(8 * max_length, int(total_bits / n * LANE_SYMBOLS))
    lane_bits += -lane_bits % granule
    lane_start = np.arange(0, total_bits, lane_bits, dtype=np.int64)
    lanes = len(lane_start)
    lane_end = np.minimum(lane_start + lane_bits, total_bits)
    first_pass, first_exits, _ = _walk_lanes(step, np.arange(lanes), lane_start, lane_end)
    # The last lane may end up to max_length bits past total_bits (codewords read into
    # the zero padding); those positions are never true starts but must be indexable.
    visited = np.zeros(total_bits + max_length + 1, dtype=bool)
    visited[first_pass[1]] = True

    merged_at = np.full(lanes, -1, dtype=np.int64)
    merged_at[0] = 0  # lane 0 starts at bit 0, a true boundary
    exits = first_exits.copy()
    entry = np.append(0, exits[:-1])
    fixups, last_round = [], np.full(lanes, -1)
    todo = np.arange(1, lanes)
    for round_ in range(LANE_ROUNDS):
        if len(todo) == 0:
            break
        walked, stops, merged = _walk_lanes(step, todo, entry[todo], lane_end[todo], visited)
        fixups.append((round_, *walked))
        last_round[todo] = round_
        merged_at[todo] = np.where(merged, stops, -1)
        exits[todo] = np.where(merged, first_exits[todo], stops)
        following = todo[todo + 1 < lanes]
        todo = following[exits[following] != entry[following + 1]] + 1
        entry[todo] = exits[todo - 1]
    if len(todo):
        return None
    lane, kept = first_pass
    # The true starts are distinct bit positions: marking them in a bit-position mask
    # puts them in order in O(total_bits), much faster than sorting them.
    is_start = np.zeros(len(visited), dtype=bool)
    is_start[kept[(merged_at[lane] >= 0) & (kept >= merged_at[lane])]] = True
    for round_, lane, positions in fixups:
        is_start[positions[last_round[lane] == round_]] = True
    return np.flatnonzero(is_start)


def _walk_lanes(step, lanes, entries, ends, visited=None):
    """Follow codeword chains from entries, all lanes in lockstep, until each reaches
    its end (or, given visited, a visited position).

    Returns ((lane, position) of every codeword decoded), where each lane stopped, and
    whether it stopped on a visited position.
    """
    stops = entries.copy()
    active = np.flatnonzero(entries < ends) if visited is None else \
        np.flatnonzero((entries < ends) & ~visited[entries])
    p, end = entries[active], ends[active]
    walked_lanes, walked = [], []
    while len(active):
        walked_lanes.append(active)
        walked.append(p)
        p = p + step(p)
        running = p < end
        if visited is not None:
            running &= ~visited[np.minimum(p, len(visited) - 1)]
        if not running.all():
            stops[active[~running]] = p[~running]
            active, p, end = active[running], p[running], end[running]
    merged = np.zeros(len(entries), dtype=bool) if visited is None else \
        (stops < ends) & visited[np.minimum(stops, len(visited) - 1)]
    if walked:
        return (lanes[np.concatenate(walked_lanes)], np.concatenate(walked)), stops, merged
    return (lanes[:0], entries[:0]), stops, merged


def _starts_by_jumps(body, lengths, leaf_of, max_length, n):
    """Codeword starts by jump tables over every bit position.

    Every bit position is looked up as if a codeword started there (a vectorised pass
    giving jump[p] = p + length of that codeword); the chain of real starts 0, jump[0],
    ... is then followed 2**levels codewords per Python step with jump tables built by
    pointer doubling, and filled in between with numpy.
    """
    total_bits = len(body) * 8
    sink = total_bits  # one past the end: maps to itself
    index_type = np.int32 if sink < 2**31 else np.int64
    jump = np.empty(total_bits + 1, dtype=index_type)
    jump[sink] = sink
    step_of = _step_lookup(lengths.astype(index_type), leaf_of, max_length)
    for start in range(0, total_bits, DECODE_CHUNK):
        stop = min(start + DECODE_CHUNK, total_bits)
        positions = np.arange(start, stop, dtype=index_type)
        positions += step_of(_all_windows(body, start // 8, stop // 8, max_length))
        np.minimum(positions, sink, out=jump[start:stop])
    levels = _jump_levels(total_bits, n)
    level_jump = jump
    for _ in range(levels):
        level_jump = level_jump[level_jump]
    stride = 1 << levels
    anchors = np.empty(-(-n // stride), dtype=np.int64)
    p = 0
    for i in range(len(anchors)):  # one Python step per 2**levels codewords
        anchors[i] = p
        p = level_jump[p]
    del level_jump
    starts = np.empty((len(anchors), stride), dtype=np.int64)
    starts[:, 0] = anchors
    for r in range(1, stride):
        starts[:, r] = jump[starts[:, r - 1]]
    return starts.reshape(-1)[:n]


def _jump_levels(total_bits, n):
    """Doubling levels that balance their numpy cost (about 2 ns per bit each) against
    the Python steps they save (about 150 ns per anchor)."""
    costs = [k * total_bits * 2 + n / 2 ** k * 150 for k in range(8)]
    return int(np.argmin(costs))


def _all_windows(body, first_byte, last_byte, width):
    """The width-bit windows starting at every bit of bytes [first_byte, last_byte)."""
    words = _byte_words(body)[first_byte:last_byte].astype(np.uint64)
    out = np.empty((last_byte - first_byte, 8), dtype=np.uint32 if width <= 32 else np.uint64)
    for r in range(8):
        out[:, r] = (words << np.uint64(r)) >> np.uint64(64 - width)
    return out.reshape(-1)


def _leaf_lookup(lengths, codes, max_length):
    """A function: max_length-bit windows -> index of the codeword each starts with."""
    if max_length <= DIRECT_TABLE_BITS:
        table = np.repeat(np.arange(len(lengths)), 1 << (max_length - lengths))
        return table.__getitem__
    # Left-justified codewords split the window space into one interval per codeword.
    left_justified = codes << (max_length - lengths).astype(np.uint64)
    return lambda windows: np.searchsorted(left_justified, windows, side='right') - 1


def _step_lookup(lengths, leaf_of, max_length):
    """A function: windows -> length of the codeword each starts with (one table read)."""
    if max_length <= DIRECT_TABLE_BITS:
        return lengths[leaf_of(np.arange(1 << max_length))].__getitem__
    return lambda windows: lengths[leaf_of(windows)]


# ---------------------------------------------------------------- varints
def varint(n: int) -> bytes:
    """n (>= 0) as a varint: 7 bits per byte, lowest first, the high bit set on all but the last."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(buf: bytes, pos: int, path: str) -> tuple[int, int]:
    """(the varint at pos of buf, the position after it); HuffmanFormatError, naming path,
    if it is truncated or longer than 64 bits."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise HuffmanFormatError(f'{path}: truncated or corrupt header')
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos
