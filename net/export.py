"""A compact network to run: only the live units of a pruned model, in smaller dense
layers (the same function up to float rounding; see net/compact.py).

The file is a dict of plain types and tensors, so ``torch.load(path, weights_only=True)``
reads it without running code; ``load_compact`` builds the module from it.
"""
import torch
from torch import nn

from .compact import compact_copy
from .files import atomic_write
from .models import build_model

FORMAT = 'deep-compression-compact/1'


def export_compact(model: nn.Module, path: str) -> nn.Module:
    """Write model's live units to path (atomically) as a compact network; return that
    network."""
    model.require_chain('--export (a compact network of the live units)')
    compact = compact_copy(model).model
    for _, layer in compact.prunable_layers():
        if hasattr(layer, 'weight_mask'):  # its zeros are in the weights: nothing to keep
            del layer.weight_mask
    saved = {'format': FORMAT, 'arch': model.arch, 'dataset': model.dataset,
             'shapes': {name: list(layer.weight.shape) for name, layer in compact.prunable_layers()},
             'state_dict': {name: tensor.detach().cpu() for name, tensor in compact.state_dict().items()}}

    def write(tmp):
        with open(tmp, 'wb') as file:
            torch.save(saved, file)
    atomic_write(path, write)
    return compact


def load_compact(path: str, device: str | torch.device = 'cpu') -> nn.Module:
    """The compact network written by export_compact, on device."""
    saved = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(saved, dict) or saved.get('format') != FORMAT:
        raise ValueError(f'{path} is not a compact network of this project ({FORMAT}): write one with '
                         '`python huffman_encode.py --unpack FILE.dcz --export OUT.pt`')
    with torch.device('meta'):
        model = build_model(saved['arch'], saved['dataset'])
    for name, shape in saved['shapes'].items():
        old = model.get_submodule(name)
        parent, _, attribute = name.rpartition('.')
        setattr(model.get_submodule(parent), attribute, _resized(old, shape))
    model.load_state_dict(saved['state_dict'], assign=True)
    return model.to(device).eval()


def _resized(layer, shape):
    """An empty layer like `layer` with weight shape `shape`, on the meta device."""
    bias = layer.bias is not None
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(shape[1], shape[0], layer.kernel_size, layer.stride, layer.padding,
                         layer.dilation, bias=bias, device='meta')
    return nn.Linear(shape[1], shape[0], bias=bias, device='meta')
