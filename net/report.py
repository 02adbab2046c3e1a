"""What pruning saves: per layer parameters, non-zeros, dense bytes and multiply-accumulates.

MACs are for one input. Dense: every weight once per output position. Sparse: only the
non-zero weights (what a sparse kernel would compute). Compact: the smaller dense layer
left when the filters / fc rows without weights and the input channels / fc columns that
no weight reads are removed (what filter or channel pruning buys on ordinary hardware).
"""
import torch

from . import models


def output_positions(model: torch.nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """{layer name: output positions per input (H*W for conv, 1 for fc)}, from one forward
    pass of zeros with hooks."""
    positions, hooks = {}, []
    for name, layer in model.prunable_layers():
        def record(module, inputs, output, name=name):
            positions[name] = output[0, 0].numel() if output.dim() == 4 else 1
        hooks.append(layer.register_forward_hook(record))
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return positions


def pruning_report(model: torch.nn.Module, input_shape: tuple[int, ...] | None = None) -> list[dict]:
    """[row per layer] + [total row]: parameters, non-zeros, dense float32 bytes, and MACs
    dense / sparse / compact (see the module docstring), for one input of `shape`
    (default: what the model takes)."""
    shape = models.input_shape(model) if input_shape is None else input_shape
    positions = output_positions(model, shape)
    rows = []
    for name, layer in model.prunable_layers():
        weight = layer.weight.detach()
        live = weight != 0
        per_position = weight[0, 0].numel() if weight.dim() == 4 else 1  # kH * kW
        rows_with_weights = int(live.flatten(1).any(1).sum())
        inputs_read = int(live.transpose(0, 1).flatten(1).any(1).sum())
        parameters = sum(p.numel() for p in layer.parameters(recurse=False))
        rows.append({
            'layer': name, 'parameters': parameters,
            'nonzeros': int(live.sum()) + (int(layer.bias.count_nonzero()) if layer.bias is not None else 0),
            'dense_bytes': 4 * parameters,
            'macs_dense': positions[name] * weight.numel(),
            'macs_sparse': positions[name] * int(live.sum()),
            'macs_compact': positions[name] * rows_with_weights * inputs_read * per_position})
    total = {'layer': 'total'} | {key: sum(r[key] for r in rows) for key in rows[0] if key != 'layer'}
    return rows + [total]


def format_report(rows: list[dict]) -> str:
    """The rows of pruning_report as an aligned text table."""
    width = max(8, *(len(r['layer']) + 1 for r in rows))
    header = (f"{'layer':{width}}{'parameters':>12}{'non-zeros':>11}{'dense bytes':>13}"
              f"{'MACs dense':>14}{'MACs sparse':>13}{'MACs compact':>14}")
    lines = [header]
    for r in rows:
        lines.append(f"{r['layer']:{width}}{r['parameters']:>12,}{r['nonzeros']:>11,}{r['dense_bytes']:>13,}"
                     f"{r['macs_dense']:>14,}{r['macs_sparse']:>13,}{r['macs_compact']:>14,}")
    return '\n'.join(lines)
