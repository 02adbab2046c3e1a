"""The compact network of a model's live units (net/export.py, huffman_encode.py --export)."""
import json
import os

import pytest
import torch

from net.container import load_compressed, save_compressed
from net.export import export_compact, load_compact
from net.models import AlexNet
from net.quantization import apply_weight_sharing
from tests.conftest import DATA_DIR
from tests.test_scripts import assert_one_line_error, run


@pytest.fixture
def pruned_alexnet():
    torch.manual_seed(0)
    model = AlexNet()
    model.prune_by_percentile({'conv1': 50, 'conv2': 10, 'conv3': 5, 'conv4': 5, 'conv5': 5,
                               'fc1': 0.5, 'fc2': 0.1, 'fc3': 20})
    model.prune_units({'fc1': 2, 'fc2': 2})  # 82 units each: most of fc1 and fc2 unread
    model.prune_dead_units()
    apply_weight_sharing(model, 4)
    return model


def test_the_compact_network_computes_the_same_function_in_fewer_parameters(pruned_alexnet, tmp_path):
    export_compact(pruned_alexnet, tmp_path / 'compact.pt')
    saved = torch.load(tmp_path / 'compact.pt', weights_only=True)  # plain types: no code runs
    compact = load_compact(tmp_path / 'compact.pt')
    read_by_fc3 = int((pruned_alexnet.fc3.weight != 0).any(dim=0).sum())  # the fc2 units kept
    assert saved['shapes']['fc2'][0] == read_by_fc3 and saved['shapes']['fc3'] == [10, read_by_fc3]
    size = sum(p.numel() for p in compact.parameters())
    assert size < sum(p.numel() for p in pruned_alexnet.parameters()) / 8  # conv1-5 keep every filter
    assert not any('mask' in name for name in saved['state_dict'])
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(compact(x), pruned_alexnet.eval()(x), atol=1e-5)


def test_a_file_that_is_not_a_compact_network_is_refused(tmp_path):
    torch.save({'weights': torch.zeros(3)}, tmp_path / 'other.pt')
    with pytest.raises(ValueError, match='not a compact network of this project.*--export OUT.pt'):
        load_compact(tmp_path / 'other.pt')


def test_export_needs_unpack(tmp_path):
    assert_one_line_error(run('huffman_encode.py', '--export', 'compact.pt', cwd=tmp_path),
                          '--export writes the compact network of a .dcz file: add --unpack FILE.dcz')


@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason='../shared/data/cifar-10-batches-bin missing')
def test_unpack_export_writes_and_tests_the_compact_network(pruned_alexnet, tmp_path):
    save_compressed(pruned_alexnet, tmp_path / 'model.dcz')
    result = run('huffman_encode.py', '--unpack', 'model.dcz', '--export', 'out/compact.pt', '--data-dir',
                 DATA_DIR, '--subset', '500', '--no-cuda', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / 'log.huffman_encode.json').read_text())
    assert record['export']['accuracy'] == record['accuracy']  # the same function on the same images
    compact = load_compact(tmp_path / 'out' / 'compact.pt')
    decoded = load_compressed(tmp_path / 'model.dcz').eval()
    assert record['export']['parameters'] == sum(p.numel() for p in compact.parameters())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(compact(x), decoded(x), atol=1e-5)
