"""The models: AlexNet for CIFAR-10 with the homework's exact layer shapes, the paper's
other networks (LeNet-300-100, LeNet-5, VGG-16), and ResNet-18 (the CIFAR variant, with
batch normalisation and skip connections), each buildable for every dataset.

``build_model(arch, dataset)`` makes a model for a dataset's image channels, size and
classes, and records both names on it (``model.arch``, ``model.dataset``); they travel
with the pickled checkpoint, so a later script can refuse a model meant for other data.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .prune import DEFAULT_PRUNE_RATE, PruningModule


class Inputs(NamedTuple):
    channels: int
    size: int  # images are size x size
    classes: int


DATASETS = {
    'cifar10': Inputs(3, 32, 10),
    'cifar100': Inputs(3, 32, 100),
    'mnist': Inputs(1, 28, 10),
    'fashion-mnist': Inputs(1, 28, 10),
}


def _he_init(model):
    # He initialisation: PyTorch's default shrinks the signal at each layer, and a deep
    # BatchNorm-free network then barely starts to learn.
    for _, layer in model.prunable_layers():
        nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')
        nn.init.zeros_(layer.bias)


def _log_probabilities(logits):
    # float32 even under bfloat16 autocast (--bf16), which on the CPU would leave
    # log_softmax in bfloat16 and round the loss to about three digits.
    return F.log_softmax(logits, dim=1, dtype=torch.float32)


def _check_size(model, image_size):
    if image_size != model.input_size:
        raise ValueError(f'{model.arch} takes {model.input_size}x{model.input_size} images, '
                         f'not {image_size}x{image_size} (smaller ones are zero-padded to it)')


class AlexNet(PruningModule):
    """conv1..conv5, fc1..fc3; 20,344,650 parameters for CIFAR-10; returns log-probabilities."""
    arch = 'alexnet'
    chain = True
    input_size = 32
    fixed_size = True  # smaller images are zero-padded to input_size
    default_rates = DEFAULT_PRUNE_RATE

    def __init__(self, num_classes=10, in_channels=3, image_size=32):
        super().__init__()
        _check_size(self, image_size)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=5)
        self.conv2 = nn.Conv2d(64, 192, kernel_size=5, padding=2)
        self.conv3 = nn.Conv2d(192, 384, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(384, 256, kernel_size=3, padding=1)
        self.conv5 = nn.Conv2d(256, 256, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(256, 4096)
        self.fc2 = nn.Linear(4096, 4096)
        self.fc3 = nn.Linear(4096, num_classes)
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the classes for a batch of images x."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = F.max_pool2d(F.relu(self.conv5(x)), 2)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return _log_probabilities(self.fc3(x))


class LeNet300(PruningModule):
    """LeNet-300-100: fc1 (pixels -> 300), fc2 (300 -> 100), fc3 (100 -> classes);
    266,610 parameters on MNIST."""
    arch = 'lenet300'
    chain = True
    dataset = 'mnist'  # what the constructor's defaults fit; build_model sets the real one
    input_size = 28
    fixed_size = False  # built for the dataset's image size
    default_rates = {'fc1': 8, 'fc2': 9, 'fc3': 26}  # the paper's Table 2

    def __init__(self, num_classes=10, in_channels=1, image_size=28):
        super().__init__()
        self.input_size = image_size
        self.fc1 = nn.Linear(in_channels * image_size * image_size, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the classes for a batch of images x."""
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return _log_probabilities(self.fc3(x))


class LeNet5(PruningModule):
    """LeNet-5 as in Caffe and the paper: conv1 (20 5x5 filters), conv2 (50), fc1 (500),
    fc2; 431,080 parameters on MNIST. ReLU after every hidden layer."""
    arch = 'lenet5'
    chain = True
    dataset = 'mnist'
    input_size = 28
    fixed_size = False
    default_rates = {'conv1': 66, 'conv2': 12, 'fc1': 8, 'fc2': 19}  # the paper's Table 3

    def __init__(self, num_classes=10, in_channels=1, image_size=28):
        super().__init__()
        self.input_size = image_size
        self.conv1 = nn.Conv2d(in_channels, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f'lenet5 needs images of at least 16x16, not {image_size}x{image_size}')
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, num_classes)
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the classes for a batch of images x."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return _log_probabilities(self.fc2(x))


VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(PruningModule):
    """VGG-16 (no BatchNorm, as in the paper) for 32x32 images: conv1_1..conv5_3 (3x3,
    max pooling after each block), fc6 (512 -> 4096), fc7 (4096 -> 4096), fc8."""
    arch = 'vgg16'
    chain = True
    input_size = 32
    fixed_size = True
    default_rates = {  # the paper's Table 5
        'conv1_1': 58, 'conv1_2': 22, 'conv2_1': 34, 'conv2_2': 36, 'conv3_1': 53,
        'conv3_2': 24, 'conv3_3': 42, 'conv4_1': 32, 'conv4_2': 27, 'conv4_3': 34,
        'conv5_1': 35, 'conv5_2': 29, 'conv5_3': 36, 'fc6': 4, 'fc7': 4, 'fc8': 23}

    def __init__(self, num_classes=10, in_channels=3, image_size=32):
        super().__init__()
        _check_size(self, image_size)
        channels = in_channels
        for block, widths in enumerate(VGG16_BLOCKS, 1):
            for i, width in enumerate(widths, 1):
                setattr(self, f'conv{block}_{i}', nn.Conv2d(channels, width, 3, padding=1))
                channels = width
        self.fc6 = nn.Linear(512, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the classes for a batch of images x."""
        for block, widths in enumerate(VGG16_BLOCKS, 1):
            for i in range(1, len(widths) + 1):
                x = F.relu(getattr(self, f'conv{block}_{i}')(x))
            x = F.max_pool2d(x, 2)
        x = F.relu(self.fc6(x.flatten(1)))
        x = F.relu(self.fc7(x))
        return _log_probabilities(self.fc8(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers and a skip connection (a 1x1 conv + batch norm,
    `downsample`, where the stride or the width changes), as in torchvision's ResNet."""

    def __init__(self, in_channels, channels, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels))

    def forward(self, x):
        skip = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + skip)


RESNET18_WIDTHS = (64, 128, 256, 512)


class ResNet18(PruningModule):
    """ResNet-18 for 32x32 images (He et al. 2016, the CIFAR variant: a 3x3 stem conv1 and
    no max pooling), then layer1..layer4 of two BasicBlocks each and fc; 11,173,962
    parameters for CIFAR-10. Its layers are not a chain (skip connections), so the steps
    that assume one refuse it (``chain = False``)."""
    arch = 'resnet18'
    input_size = 32
    fixed_size = False  # global average pooling: any image size
    chain = False

    def __init__(self, num_classes=10, in_channels=3, image_size=32):
        super().__init__()
        self.input_size = image_size
        self.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        channels = 64
        for i, width in enumerate(RESNET18_WIDTHS, 1):
            stride = 1 if i == 1 else 2
            setattr(self, f'layer{i}', nn.Sequential(BasicBlock(channels, width, stride),
                                                      BasicBlock(width, width, 1)))
            channels = width
        self.fc = nn.Linear(channels, num_classes)
        for _, layer in self.prunable_layers():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode='fan_out', nonlinearity='relu')
        # Percent kept: 10 in the layers that hold nearly all the weights; more in the
        # small, sensitive stem and classifier.
        self.default_rates = dict.fromkeys(dict(self.prunable_layers()), 10) | {'conv1': 80, 'fc': 50}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the classes for a batch of images x."""
        x = F.relu(self.bn1(self.conv1(x)))
        for i in range(1, len(RESNET18_WIDTHS) + 1):
            x = getattr(self, f'layer{i}')(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return _log_probabilities(self.fc(x))


MODELS = {cls.arch: cls for cls in (AlexNet, LeNet300, LeNet5, VGG16, ResNet18)}


def build_model(arch: str = 'alexnet', dataset: str = 'cifar10') -> nn.Module:
    """A freshly initialised `arch` for `dataset`'s images and classes."""
    if arch not in MODELS:
        raise ValueError(f'unknown model {arch!r}; use one of {sorted(MODELS)}')
    if dataset not in DATASETS:
        raise ValueError(f'unknown dataset {dataset!r}; use one of {sorted(DATASETS)}')
    cls, inputs = MODELS[arch], DATASETS[dataset]
    size = cls.input_size if cls.fixed_size else inputs.size
    model = cls(num_classes=inputs.classes, in_channels=inputs.channels, image_size=size)
    model.dataset = dataset
    return model


def input_shape(model: nn.Module) -> tuple[int, int, int]:
    """(channels, height, width) of one input of model."""
    return DATASETS[model.dataset].channels, model.input_size, model.input_size


def describe(model: nn.Module) -> str:
    """'alexnet for cifar10': what a model is and what data it is for."""
    return f'{model.arch} for {model.dataset}'


def check_model(model: nn.Module, path: str, arch: str | None = None, dataset: str | None = None) -> None:
    """Refuse (ValueError) the model read from path when it is not `arch` for `dataset`
    (None: anything)."""
    wanted = (arch or model.arch, dataset or model.dataset)
    if wanted != (model.arch, model.dataset):
        raise ValueError(f'{path} holds {describe(model)}, not {wanted[0]} for {wanted[1]}: pass '
                         f'--model {model.arch} --dataset {model.dataset}, or the file made for '
                         'your model and data')
