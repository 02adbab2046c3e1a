"""Markdown tables of one run of the three scripts, from the JSON logs they write.

    python docs/tables.py [RUN_DIR]   # RUN_DIR holds log.pruning.json etc. (default .)

Prints the accuracy at every stage with each script's wall time, the per-layer table
(kept %, non-zeros, bits, compressed bytes, ratio) and, for iterative pruning, one row
per round. docs/RESULTS.md and the README's results are pasted from this output.
"""
import json
import os
import sys


def load(run_dir, script):
    path = os.path.join(run_dir, f'log.{script}.json')
    if not os.path.isfile(path):
        sys.exit(f'error: {path} not found: run {script}.py first')
    with open(path) as f:
        return json.load(f)


def stages(pruning, sharing, encoding):
    rows = [('initial training', pruning['initial_accuracy'], ''),
            ('after pruning', pruning['accuracy_after_pruning'], ''),
            ('after retraining', pruning['accuracy_after_retraining'],
             f"pruning.py: {pruning['wall_seconds'] / 60:.1f} min"),
            ('after weight sharing', sharing['accuracy_after_sharing'], '')]
    if 'accuracy_after_trained_quantization' in sharing:
        rows.append(('after trained quantization', sharing['accuracy_after_trained_quantization'], ''))
    rows[-1] = rows[-1][:2] + (f"weight_share.py: {sharing['wall_seconds'] / 60:.1f} min",)
    rows.append(('after Huffman decoding', encoding['accuracy_after_decoding'],
                 f"huffman_encode.py: {encoding['wall_seconds']:.0f} s"))
    lines = ['| stage | test accuracy | wall time |', '|---|---|---|']
    lines += [f'| {stage} | {accuracy:.2f}% | {time} |' for stage, accuracy, time in rows]
    total = pruning['wall_seconds'] + sharing['wall_seconds'] + encoding['wall_seconds']
    lines.append(f'| total (three scripts) | | {total / 60:.1f} min |')
    return lines


def layers(pruning, sharing, encoding):
    bits = sharing['config']['bits']
    rows = {row['name']: row for row in encoding['layers']}
    lines = ['| layer | kept % | non-zeros | bits | weight bytes | bias bytes | ratio |',
             '|---|---|---|---|---|---|---|']
    weights = {p: c for p, c in pruning['layers'].items() if p.endswith('.weight')}
    for param, counts in weights.items():
        name = param.removesuffix('.weight')
        weight, bias = rows[param], rows[f'{name}.bias']
        layer_bits = bits.get(name, 5) if isinstance(bits, dict) else bits
        ratio = (weight['original'] + bias['original']) / (weight['compressed'] + bias['compressed'])
        lines.append(f"| {name} | {100 * counts['nonzero'] / counts['total']:.4g} | "
                     f"{counts['nonzero']:,} | {layer_bits} | {weight['compressed']:,} | "
                     f"{bias['compressed']:,} | {ratio:.1f}x |")
    total = rows['total']
    alive = sum(c['nonzero'] for c in weights.values())
    every = sum(c['total'] for c in weights.values())
    lines.append(f"| total | {100 * alive / every:.4g} | {alive:,} | | | "
                 f"{total['compressed']:,} (all) | {encoding['ratio']:.2f}x |")
    return lines


def rounds(pruning):
    if len(pruning['rounds']) < 2:
        return []
    lines = ['| round | weights left | ratio after the cut (5-bit copy) | accuracy after pruning '
             '| after retraining |', '|---|---|---|---|---|']
    for number, r in enumerate(pruning['rounds'], 1):
        ratio = f"{r['ratio_after_pruning']:.1f}x" if 'ratio_after_pruning' in r else ''
        if 'back_to_round' in r:  # --min-accuracy restored that round and retrained it
            number = f"back to {r['back_to_round']}"
        elif 'ended_by' in r:  # --time-limit gave the round its final epochs
            number = f"{r['round']}, final epochs ({r['ended_by']})"
        lines.append(f"| {number} | {r['alive']:,} | {ratio} | {r['accuracy_after_pruning']:.2f}% | "
                     f"{r['accuracy_after_retraining']:.2f}% |")
    return lines


def main():
    run_dir = sys.argv[1] if len(sys.argv) > 1 else '.'
    logs = [load(run_dir, script) for script in ('pruning', 'weight_share', 'huffman_encode')]
    for table in (stages(*logs), layers(*logs), rounds(logs[0])):
        if table:
            print('\n'.join(table) + '\n')


if __name__ == '__main__':
    main()
