"""The pruning report on a toy network whose counts are checked by hand."""
import torch
import torch.nn.functional as F
from torch import nn

from net.prune import PruningModule
from net.report import format_report, pruning_report


class Toy(PruningModule):
    chain = True
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)  # 18 weights + 2 biases, 4x4 = 16 outputs
        self.fc = nn.Linear(2 * 4 * 4, 3)          # 96 weights + 3 biases

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).flatten(1))


def test_counts_and_macs_by_hand():
    toy = Toy()
    with torch.no_grad():
        for p in toy.parameters():
            p.fill_(0.5)
        toy.conv.weight[1] = 0         # filter 1 gone
        toy.conv.weight[0, 0, 0] = 0   # 3 more zeros: 6 weights left
        toy.fc.weight[:, 16:] = 0      # nothing reads channel 1
        toy.fc.weight[0, 0] = 0        # 47 weights left
    conv, fc, total = pruning_report(toy, input_shape=(1, 4, 4))
    assert conv == {'layer': 'conv', 'parameters': 20, 'nonzeros': 8, 'dense_bytes': 80,
                    'macs_dense': 16 * 18, 'macs_sparse': 16 * 6, 'macs_compact': 16 * 1 * 1 * 9}
    assert fc == {'layer': 'fc', 'parameters': 99, 'nonzeros': 50, 'dense_bytes': 396,
                  'macs_dense': 96, 'macs_sparse': 47, 'macs_compact': 3 * 16}
    assert total['macs_dense'] == 288 + 96 and total['parameters'] == 119
    conv_line = format_report([conv, fc, total]).split('\n')[1].split()
    assert conv_line == ['conv', '20', '8', '80', '288', '96', '144']


def test_hooks_are_removed():
    toy = Toy()
    pruning_report(toy, input_shape=(1, 4, 4))
    assert not toy.conv._forward_hooks and not toy.fc._forward_hooks
