"""Saving and safely loading whole pickled models (``.ptmodel``).

Graders load these files with ``torch.load(path, weights_only=False)``, so they stay whole
pickled models. This project loads them with ``weights_only=True`` and an allowlist of
its own classes: opening a hostile file cannot run code.
"""
import copy
import os
import pickle
import re
import zipfile

import torch
from torch import nn

from .files import atomic_write
from .models import DATASETS, MODELS, BasicBlock, build_model, check_model, describe

SAFE_CLASSES = [*MODELS.values(), BasicBlock, nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.Sequential]


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or not the expected model."""


def save_model(model: nn.Module, path: str) -> None:
    """torch.save the whole model (the homework's file format), atomically; from a GPU
    model a CPU copy, since graders' torch.load (no map_location) fails on a CPU-only
    machine for tensors saved on a GPU."""
    if any(tensor.device.type != 'cpu' for tensor in model.state_dict().values()):
        model = copy.deepcopy(model).cpu()

    def write(tmp):
        # Through a file object: given a path, torch.save names the zip's records after
        # it, and the temporary name would make every save of the same model differ.
        with open(tmp, 'wb') as file:
            torch.save(model, file)
    atomic_write(path, write)


def load_model(path: str, device: str | torch.device = 'cpu', made_by: str = 'pruning.py',
               arch: str | None = None, dataset: str | None = None) -> nn.Module:
    """Load a whole model saved by this project, refusing anything else.

    ``made_by`` names the script that writes ``path``, for the error when it is missing.
    ``arch`` / ``dataset``, when given, must be what the model was built for.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} not found: run `python {made_by}` first "
                              "(or pass --load-model-path)")
    unreadable = CheckpointError(f"cannot read {path} (truncated or not a torch file); "
                                 f"re-run `python {made_by}`")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since 1.6
        with open(path, 'rb') as f:
            start = f.read(3)
        if start == b'DCZ':
            raise CheckpointError(f'{path} is a .dcz file, not a checkpoint: test it with '
                                  f'`python huffman_encode.py --unpack {path}`')
        if start[:1] == b'\x80':  # a bare pickle: torch's format before 1.6
            raise CheckpointError(f'{path} is in torch\'s legacy format (before 1.6), which can '
                                  'hold any code: re-save it with torch.save(model, path) under a '
                                  'current torch')
        raise unreadable
    check_zip(path, made_by)
    try:
        with torch.serialization.safe_globals(SAFE_CLASSES):
            model = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r'GLOBAL ([\w.]+)', str(err))
        what = f'it references {found.group(1)}' if found else 'it holds objects'
        raise CheckpointError(f"refusing to load {path}: {what}, which is not a model class of "
                              "this project (loading it could run arbitrary code)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile):
        raise unreadable from None
    check_architecture(model, path)
    check_model(model, path, arch, dataset)
    check_values(model, path)
    return model


def check_zip(path: str, made_by: str) -> None:
    """Refuse a file whose zip entries fail their CRC (torch.load never checks them)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as err:
        bad = f'its archive ({err})'
    if bad is not None:
        raise CheckpointError(f'{path} is corrupt: {bad} fails its checksum; re-run `python '
                              f'{made_by}`')


def check_attributes(model: nn.Module, reference: nn.Module, path: str) -> None:
    """Refuse a model whose modules or their settings (strides, sizes, input_size, ...)
    differ from what its architecture builds: such a file was edited."""
    modules = dict(reference.named_modules())
    for name, module in model.named_modules():
        if name not in modules:
            raise CheckpointError(f'{path} holds an extra {type(module).__name__} "{name}", which '
                                  f'{model.arch} does not have: the file was edited')
        if type(module) is not type(modules[name]):
            raise CheckpointError(f'{path} holds a {type(module).__name__} at "{name or "the top"}", '
                                  f'where {model.arch} has {type(modules[name]).__name__}')
        expected = _settings(modules[name])
        for key, value in _settings(module).items():
            if key not in expected:
                raise CheckpointError(f'{path}: unexpected attribute {name or model.arch}.{key}')
            if key in expected and (type(value) is not type(expected[key]) or value != expected[key]):
                raise CheckpointError(f'{path}: {name or model.arch}.{key} is {value!r}, not '
                                      f'{expected[key]!r}: the file was edited or is damaged')


def _settings(module):
    """A module's own public attributes, except its train/eval flag."""
    return {k: v for k, v in vars(module).items() if not k.startswith('_') and k != 'training'}


def check_values(model: nn.Module, path: str) -> None:
    """Refuse NaN or infinite parameters and masks that are not 0/1 of their weight's shape
    with zeros under their zeros; convert float64, float16 and bfloat16 to float32 (noted)."""
    tensors = [t for name, t in model.state_dict().items()
               if not name.endswith('num_batches_tracked')]  # batch norm's step counter: int64
    other = sorted({str(t.dtype) for t in tensors if t.dtype != torch.float32})
    if any(not t.dtype.is_floating_point for t in tensors):
        raise CheckpointError(f'{path} holds {", ".join(other)} tensors; a model of this project '
                              'holds float32 parameters, statistics and masks')
    if other:
        print(f'note: {path} holds {", ".join(other)} tensors; converted to float32')
        model.float()
    for name, layer in model.prunable_layers():
        if not layer.weight.count_nonzero():
            raise CheckpointError(f'{path}: {name} keeps no weights, so the network ignores its '
                                  'input: prune less (pruning.py --rates)')
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            raise CheckpointError(f'{path}: {name} holds NaN or infinite values; re-run the '
                                  'script that wrote it (a diverged training?)')
    for name, module in model.named_modules():
        mask = getattr(module, 'weight_mask', None)
        if mask is None:
            continue
        if mask.shape != module.weight.shape:
            raise CheckpointError(f'{path}: {name}.weight_mask has shape {tuple(mask.shape)}, its '
                                  f'weight {tuple(module.weight.shape)}: the file is damaged')
        if not ((mask == 0) | (mask == 1)).all():
            raise CheckpointError(f'{path}: {name}.weight_mask holds values other than 0 and 1: '
                                  'the file is damaged')
        if (module.weight[mask == 0] != 0).any():
            raise CheckpointError(f'{path}: {name} has non-zero weights where its mask prunes '
                                  'them: the file is damaged')


def check_architecture(model: object, path: str) -> None:
    """Refuse a file whose object is not one of this project's models with exactly the
    shapes that its recorded architecture and dataset give."""
    if not isinstance(model, tuple(MODELS.values())):
        raise CheckpointError(f"{path} holds a {type(model).__name__}, not a whole model of this "
                              f"project ({', '.join(MODELS)}; save it with torch.save(model, path))")
    if model.dataset not in DATASETS:
        raise CheckpointError(f"{path} records an unknown dataset {model.dataset!r} (this version "
                              f"knows {sorted(DATASETS)}); update this project or retrain")
    with torch.device('meta'):  # shapes only: no memory, no initialisation cost
        reference = build_model(model.arch, model.dataset)
    expected = {k: v.shape for k, v in reference.state_dict().items()}
    what = 'the homework AlexNet' if describe(model) == 'alexnet for cifar10' else describe(model)
    tensors = {name: tensor for name, tensor in model.state_dict().items()
               if not name.endswith('weight_mask')}
    for name, tensor in tensors.items():
        if name not in expected or expected[name] != tensor.shape:
            raise CheckpointError(f"{path} is not {what}: {name} has "
                                  f"shape {tuple(tensor.shape)}")
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(f"{path} is not {what}: missing {missing}")
    check_attributes(model, reference, path)
