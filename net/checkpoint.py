"""Saving and safely loading whole pickled models (``.ptmodel``).

Graders load these files with ``torch.load(path, weights_only=False)``, so they stay whole
pickled models. This project loads them with ``weights_only=True`` and an allowlist of
its own classes: opening a hostile file cannot run code.
"""
import os
import pickle
import re
import tempfile
import zipfile

import torch
from torch import nn

from .models import DATASETS, MODELS, build_model, check_model, describe

SAFE_CLASSES = [*MODELS.values(), nn.Conv2d, nn.Linear]


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or not the expected model."""


def atomic_write(path, write):
    """Call write(tmp_path), then rename onto path: readers never see a half-written file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_model(model, path):
    """torch.save the whole model (the homework's file format), atomically."""
    atomic_write(path, lambda tmp: torch.save(model, tmp))


def load_model(path, device='cpu', made_by='pruning.py', arch=None, dataset=None):
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
        raise unreadable
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
    return model


def check_architecture(model, path):
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
    for name, param in model.named_parameters():
        if name not in expected or expected[name] != param.shape:
            raise CheckpointError(f"{path} is not {what}: parameter {name} has "
                                  f"shape {tuple(param.shape)}")
    missing = sorted(set(expected) - {n for n, _ in model.named_parameters()})
    if missing:
        raise CheckpointError(f"{path} is not {what}: missing {missing}")
