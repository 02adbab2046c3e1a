import os

import numpy as np
import pytest
import torch
from torchvision import transforms

import util
from tests.conftest import DATA_DIR


def test_normalize_matches_the_starter_transform():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    starter = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    expected = torch.stack([starter(img.permute(1, 2, 0).numpy()) for img in images])
    assert torch.allclose(util.normalize(images), expected, atol=1e-6)


def test_augment_is_a_padded_crop_and_optional_flip():
    images = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = util.augment(images, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flips = 0
    for img, pad, got in zip(images, padded, out, strict=True):
        windows = [pad[:, r:r + 32, c:c + 32] for r in range(9) for c in range(9)]
        plain = any(torch.equal(got, w) for w in windows)
        flipped = any(torch.equal(got, w.flip(-1)) for w in windows)
        assert plain or flipped
        flips += flipped and not plain
        assert (got != 0).sum() >= 24 * 24 * 3  # at most 4 rows/cols of padding each way
        del img
    assert 10 < flips < 54  # about half are flipped


def test_batches_cover_every_image_once_in_a_shuffled_order():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 32, 32).contiguous()
    labels = torch.arange(10)
    seen = [y for _, ys in util.batches(images, labels, 3, torch.Generator().manual_seed(1), train=True)
            for y in ys.tolist()]
    assert sorted(seen) == list(range(10)) and seen != list(range(10))


needs_data = pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason='../shared/data/cifar10-jpg missing')


@needs_data
def test_image_folder_subset_is_fixed_and_mixed():
    images, labels = util.load_split(False, DATA_DIR, subset=200)
    again, labels_again = util.load_split(False, DATA_DIR, subset=200)
    assert images.shape == (200, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images, again) and torch.equal(labels, labels_again)
    assert len(labels.unique()) == 10


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(util.DataError, match='ImageFolder layout'):
        util.load_split(True, str(tmp_path))


def test_wrong_image_size_is_a_clear_error(tmp_path):
    from PIL import Image
    (tmp_path / 'test' / 'cat').mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / 'test' / 'cat' / '1.png')
    with pytest.raises(util.DataError, match='must be 32x32'):
        util.load_split(False, str(tmp_path))
