import gzip
import os

import numpy as np
import pytest
import torch
from torchvision import transforms

import util
from tests.conftest import DATA_DIR, FASHION_DIR, fake_mnist_dir, write_idx


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


def test_flip_only_augmentation_keeps_every_pixel():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = util.augment(images, torch.Generator().manual_seed(0), padding=0)
    plain = [torch.equal(got, img) for img, got in zip(images, out, strict=True)]
    flipped = [torch.equal(got, img.flip(-1)) for img, got in zip(images, out, strict=True)]
    assert all(p or f for p, f in zip(plain, flipped, strict=True))
    assert 10 < sum(flipped) < 54  # about half are flipped


def test_no_augmentation_yields_the_images_themselves():
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(10)
    for x, y in util.batches(images, labels, 4, torch.Generator().manual_seed(0), train=True,
                             augmentation='none'):
        assert torch.equal(x, util.normalize(images[y]))


def test_an_unknown_augmentation_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation 'cutout'; use one of crop-flip, flip, none"):
        next(util.batches(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.arange(2), 2,
                          augmentation='cutout'))


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


def image_folder(root, classes, shape, split='test'):
    """An ImageFolder split with one image of `shape` per class folder (named 0, 1, ...)."""
    from PIL import Image
    for label in range(classes):
        (root / split / str(label)).mkdir(parents=True)
        Image.fromarray(np.full(shape, 200, np.uint8)).save(root / split / str(label) / '1.png')
    return str(root)


def test_wrong_image_size_is_a_clear_error(tmp_path):
    with pytest.raises(util.DataError, match='must be 32x32'):
        util.load_split(False, image_folder(tmp_path, 10, (64, 64, 3)))


@pytest.mark.parametrize('classes', [9, 100])
def test_a_folder_with_other_classes_than_the_dataset_is_refused(tmp_path, classes):
    with pytest.raises(util.DataError, match=f'has {classes} class folders, but cifar10 has 10 '
                                             'classes: pass the --dataset of this data'):
        util.load_split(False, image_folder(tmp_path, classes, (32, 32, 3)))


# ---------------------------------------------------------------- MNIST-style IDX files
def test_idx_folder_loads_and_pads_to_the_model_size(tmp_path):
    root = fake_mnist_dir(tmp_path)
    images, labels = util.load_split(True, root, dataset='fashion-mnist')
    assert images.shape == (50, 1, 28, 28) and images.dtype == torch.uint8 and labels.shape == (50,)
    raw = util.read_idx(os.path.join(root, 'train-images-idx3-ubyte.gz'))
    assert torch.equal(images[:, 0], torch.from_numpy(raw.copy()))
    padded, _ = util.load_split(False, root, subset=7, dataset='mnist', size=32)
    assert padded.shape == (7, 1, 32, 32)
    assert padded[:, :, :2].sum() == padded[:, :, -2:].sum() == padded[..., :2].sum() == 0
    small, _ = util.load_split(False, root, subset=7, dataset='mnist')
    assert torch.equal(padded[:, :, 2:30, 2:30], small)


@pytest.mark.parametrize('damage, message', [
    (lambda b: b'\x00\x00\x0d' + b[3:], 'not an IDX file of unsigned bytes'),
    (lambda b: b[:-5], 'truncated or corrupt'),
])
def test_bad_idx_files_are_clear_errors(tmp_path, damage, message):
    write_idx(tmp_path / 'x.gz', np.zeros((3, 28, 28)))
    with gzip.open(tmp_path / 'x.gz') as f:
        data = f.read()
    (tmp_path / 'x').write_bytes(damage(data))
    with pytest.raises(util.DataError, match=message):
        util.read_idx(str(tmp_path / 'x'))


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    write_idx(tmp_path / 'x.gz', np.zeros((3, 28, 28)))
    data = bytearray((tmp_path / 'x.gz').read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the deflate stream
    (tmp_path / 'x.gz').write_bytes(bytes(data))
    with pytest.raises(util.DataError, match='cannot read'):
        util.read_idx(str(tmp_path / 'x.gz'))


def test_idx_folder_errors_name_the_fix(tmp_path):
    root = fake_mnist_dir(tmp_path)
    with pytest.raises(util.DataError, match='MNIST-style .* but the model is for cifar10'):
        util.load_split(True, root, dataset='cifar10')
    write_idx(tmp_path / 'train-labels-idx1-ubyte.gz', np.full(50, 42))
    with pytest.raises(util.DataError, match='has labels up to 42, but mnist has 10 classes'):
        util.load_split(True, root, dataset='mnist')
    os.remove(os.path.join(root, 't10k-labels-idx1-ubyte.gz'))
    with pytest.raises(util.DataError, match='no t10k-labels-idx1-ubyte'):
        util.load_split(False, root, dataset='mnist')


def test_grayscale_image_folder(tmp_path):
    images, labels = util.load_split(True, image_folder(tmp_path, 10, (28, 28, 3), 'train'),
                                     dataset='fashion-mnist')
    assert images.shape == (10, 1, 28, 28) and int(images.min()) == 200
    assert labels.tolist() == list(range(10))


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason='dataset-fashion-mnist not installed')
def test_the_official_fashion_mnist_files():
    images, labels = util.load_split(False, FASHION_DIR, dataset='fashion-mnist')
    assert images.shape == (10000, 1, 28, 28) and torch.equal(labels.bincount(), torch.full((10,), 1000))


@pytest.mark.parametrize('dataset, data, shape', [
    ('fashion-mnist', torch.zeros(5, 28, 28, dtype=torch.uint8), (5, 1, 28, 28)),  # a tensor
    ('cifar100', np.zeros((5, 32, 32, 3), np.uint8), (5, 3, 32, 32)),  # a numpy array, NHWC
])
def test_torchvision_downloads_become_uint8_nchw(monkeypatch, dataset, data, shape):
    from torchvision import datasets

    class Downloaded:
        def __init__(self, root, train, download):
            assert (root, download) == ('data', True)
            self.data, self.targets = data, list(range(5))
    monkeypatch.setattr(datasets, util.TORCHVISION[dataset], Downloaded)
    images, labels = util.load_split(True, dataset=dataset)
    assert images.shape == shape and images.dtype == torch.uint8 and labels.tolist() == list(range(5))
