import gzip
import os

import numpy as np
import pytest
import torch
from torchvision import transforms

from recipe import datasets
from tests.conftest import DATA_DIR, FASHION_DIR, fake_mnist_dir, write_idx


def test_normalize_matches_the_starter_transform():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    starter = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    expected = torch.stack([starter(img.permute(1, 2, 0).numpy()) for img in images])
    assert torch.allclose(datasets.normalize(images), expected, atol=1e-6)


def test_augment_is_a_padded_crop_and_optional_flip():
    images = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = datasets.augment(images, torch.Generator().manual_seed(0))
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
    out = datasets.augment(images, torch.Generator().manual_seed(0), padding=0)
    plain = [torch.equal(got, img) for img, got in zip(images, out, strict=True)]
    flipped = [torch.equal(got, img.flip(-1)) for img, got in zip(images, out, strict=True)]
    assert all(p or f for p, f in zip(plain, flipped, strict=True))
    assert 10 < sum(flipped) < 54  # about half are flipped


def test_no_augmentation_yields_the_images_themselves():
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(10)
    for x, y in datasets.batches(images, labels, 4, torch.Generator().manual_seed(0), train=True,
                             augmentation='none'):
        assert torch.equal(x, datasets.normalize(images[y]))


def test_an_unknown_augmentation_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation 'cutout'; use one of crop-flip, flip, none"):
        next(datasets.batches(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.arange(2), 2,
                          augmentation='cutout'))


def test_batches_cover_every_image_once_in_a_shuffled_order():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 32, 32).contiguous()
    labels = torch.arange(10)
    seen = [y for _, ys in datasets.batches(images, labels, 3, torch.Generator().manual_seed(1), train=True)
            for y in ys.tolist()]
    assert sorted(seen) == list(range(10)) and seen != list(range(10))


def test_image_folder_subset_is_fixed_and_mixed(tmp_path):
    root = image_folder(tmp_path, 10, (32, 32, 3), per_class=30)
    images, labels = datasets.load_split(False, root, subset=200)
    again, labels_again = datasets.load_split(False, root, subset=200)
    assert images.shape == (200, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images, again) and torch.equal(labels, labels_again)
    assert len(labels.unique()) == 10
    assert all((images[labels == c] == 10 * c).all() for c in range(10))  # each class its pixels


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(datasets.DataError, match='not found: --data-dir DIR takes the official binary '
                                             'version of CIFAR-10 .* an ImageFolder copy'):
        datasets.load_split(True, str(tmp_path))


def image_folder(root, classes, shape, split='test', per_class=1):
    """An ImageFolder split with `per_class` images of `shape` per class folder (named 0,
    1, ...); class c's pixels are all 10 * c."""
    from PIL import Image
    for label in range(classes):
        (root / split / str(label)).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full(shape, 10 * label % 256, np.uint8)).save(
                root / split / str(label) / f'{i}.png')
    return str(root)


def test_wrong_image_size_is_a_clear_error(tmp_path):
    with pytest.raises(datasets.DataError, match='must be 32x32'):
        datasets.load_split(False, image_folder(tmp_path, 10, (64, 64, 3)))


@pytest.mark.parametrize('classes', [9, 100])
def test_a_folder_with_other_classes_than_the_dataset_is_refused(tmp_path, classes):
    with pytest.raises(datasets.DataError, match=f'has {classes} class folders, but cifar10 has 10 '
                                             'classes: pass the --dataset of this data'):
        datasets.load_split(False, image_folder(tmp_path, classes, (32, 32, 3)))


# ---------------------------------------------------------------- MNIST-style IDX files
def test_idx_folder_loads_and_pads_to_the_model_size(tmp_path):
    root = fake_mnist_dir(tmp_path)
    images, labels = datasets.load_split(True, root, dataset='fashion-mnist')
    assert images.shape == (50, 1, 28, 28) and images.dtype == torch.uint8 and labels.shape == (50,)
    raw = datasets.read_idx(os.path.join(root, 'train-images-idx3-ubyte.gz'))
    assert torch.equal(images[:, 0], torch.from_numpy(raw.copy()))
    padded, _ = datasets.load_split(False, root, subset=7, dataset='mnist', size=32)
    assert padded.shape == (7, 1, 32, 32)
    assert padded[:, :, :2].sum() == padded[:, :, -2:].sum() == padded[..., :2].sum() == 0
    small, _ = datasets.load_split(False, root, subset=7, dataset='mnist')
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
    with pytest.raises(datasets.DataError, match=message):
        datasets.read_idx(str(tmp_path / 'x'))


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    write_idx(tmp_path / 'x.gz', np.zeros((3, 28, 28)))
    data = bytearray((tmp_path / 'x.gz').read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the deflate stream
    (tmp_path / 'x.gz').write_bytes(bytes(data))
    with pytest.raises(datasets.DataError, match='cannot read'):
        datasets.read_idx(str(tmp_path / 'x.gz'))


def test_idx_folder_errors_name_the_fix(tmp_path):
    root = fake_mnist_dir(tmp_path)
    with pytest.raises(datasets.DataError, match='MNIST-style .* but the model is for cifar10'):
        datasets.load_split(True, root, dataset='cifar10')
    write_idx(tmp_path / 'train-labels-idx1-ubyte.gz', np.full(50, 42))
    with pytest.raises(datasets.DataError, match='has labels up to 42, but mnist has 10 classes'):
        datasets.load_split(True, root, dataset='mnist')
    os.remove(os.path.join(root, 't10k-labels-idx1-ubyte.gz'))
    with pytest.raises(datasets.DataError, match='no t10k-labels-idx1-ubyte'):
        datasets.load_split(False, root, dataset='mnist')


def test_grayscale_image_folder(tmp_path):
    images, labels = datasets.load_split(True, image_folder(tmp_path, 10, (28, 28, 3), 'train'),
                                     dataset='fashion-mnist')
    assert images.shape == (10, 1, 28, 28)
    assert torch.equal(images.amax((1, 2, 3)), 10 * torch.arange(10, dtype=torch.uint8))
    assert labels.tolist() == list(range(10))


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason='dataset-fashion-mnist not installed')
def test_the_official_fashion_mnist_files():
    images, labels = datasets.load_split(False, FASHION_DIR, dataset='fashion-mnist')
    assert images.shape == (10000, 1, 28, 28) and torch.equal(labels.bincount(), torch.full((10,), 1000))


@pytest.mark.parametrize('dataset, data, shape', [
    ('fashion-mnist', torch.zeros(5, 28, 28, dtype=torch.uint8), (5, 1, 28, 28)),  # a tensor
    ('cifar100', np.zeros((5, 32, 32, 3), np.uint8), (5, 3, 32, 32)),  # a numpy array, NHWC
])
def test_torchvision_downloads_become_uint8_nchw(monkeypatch, dataset, data, shape):
    import torchvision.datasets

    class Downloaded:
        def __init__(self, root, train, download):
            assert (root, download) == ('data', True)
            self.data, self.targets = data, list(range(5))
    monkeypatch.setattr(torchvision.datasets, datasets.TORCHVISION[dataset], Downloaded)
    images, labels = datasets.load_split(True, dataset=dataset)
    assert images.shape == shape and images.dtype == torch.uint8 and labels.tolist() == list(range(5))


# ---------------------------------------------------------------- CIFAR, binary version
def records(path, label_bytes=1):
    """The raw records of a binary CIFAR file: (label bytes [N, k], image bytes [N, 3072])."""
    raw = np.fromfile(path, np.uint8).reshape(-1, label_bytes + 3072)
    return raw[:, :label_bytes], raw[:, label_bytes:]


@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason='../shared/data/cifar-10-batches-bin missing')
def test_the_official_cifar10_binary_files():
    train_x, train_y = datasets.load_split(True, DATA_DIR)
    test_x, test_y = datasets.load_split(False, DATA_DIR)
    assert train_x.shape == (50000, 3, 32, 32) and test_x.shape == (10000, 3, 32, 32)
    assert train_x.dtype == torch.uint8 and train_x.is_contiguous() and train_y.dtype == torch.int64
    assert torch.equal(train_y.bincount(), torch.full((10,), 5000))
    assert torch.equal(test_y.bincount(), torch.full((10,), 1000))
    # The published first labels: frog, truck, truck, deer, ...; cat, ship, ship, airplane, ...
    assert train_y[:6].tolist() == [6, 9, 9, 4, 1, 1] and test_y[:6].tolist() == [3, 8, 8, 0, 6, 6]
    labels, pixels = records(os.path.join(DATA_DIR, 'data_batch_2.bin'))
    assert torch.equal(train_x[10000:20000], torch.from_numpy(pixels.reshape(-1, 3, 32, 32)))
    assert torch.equal(train_y[10000:20000], torch.from_numpy(labels[:, 0].astype(np.int64)))
    # The folder the official archive extracts into works too, with the same subset.
    subset_x, subset_y = datasets.load_split(False, os.path.dirname(DATA_DIR), subset=300)
    keep = torch.from_numpy(datasets._subset_indices(10000, 300))
    assert torch.equal(subset_x, test_x[keep]) and torch.equal(subset_y, test_y[keep])


@pytest.mark.parametrize('dataset', ['cifar10', 'cifar100'])
@pytest.mark.parametrize('archive_layout', [False, True])
def test_binary_records_become_images_and_fine_labels(tmp_path, small_cifar_binary, dataset,
                                                      archive_layout):
    spec = datasets.CIFAR_BINARY[dataset]
    folder = small_cifar_binary(tmp_path / spec['folder'], dataset)
    images, labels = datasets.load_split(True, str(tmp_path) if archive_layout else folder,
                                     dataset=dataset)
    train_files = [name for name in spec['files'] if name != spec['test']]
    parts = [records(os.path.join(folder, name), spec['label_bytes']) for name in train_files]
    assert images.shape == (6 * len(train_files), 3, 32, 32)
    assert torch.equal(images, torch.from_numpy(np.concatenate([p for _, p in parts])).view(-1, 3, 32, 32))
    assert labels.tolist() == np.concatenate([lab[:, -1] for lab, _ in parts]).tolist()  # the fine one
    test_images, _ = datasets.load_split(False, folder, dataset=dataset)
    _, pixels = records(os.path.join(folder, spec['test']), spec['label_bytes'])
    assert torch.equal(test_images.flatten(1), torch.from_numpy(pixels))


def test_each_record_byte_lands_at_its_channel_row_and_column(tmp_path, small_cifar_binary):
    """The layout the official README gives: label, then 1,024 red, 1,024 green, 1,024 blue
    bytes, each plane row by row."""
    small_cifar_binary(tmp_path)
    path = tmp_path / 'test_batch.bin'
    data = bytearray(path.read_bytes())
    places = [(0, 0, 0), (0, 0, 31), (0, 31, 0), (1, 2, 3), (2, 31, 31)]
    for value, (channel, row, column) in enumerate(places, start=1):
        data[3073 * 2 + 1 + 1024 * channel + 32 * row + column] = 250 + value  # image 2
    path.write_bytes(bytes(data))
    images, _ = datasets.load_split(False, str(tmp_path))
    assert [int(images[2, c, r, col]) for c, r, col in places] == [251, 252, 253, 254, 255]


def test_binary_subset_is_fixed_and_padding_applies(tmp_path, small_cifar_binary):
    folder = small_cifar_binary(tmp_path)
    images, labels = datasets.load_split(True, folder)
    part, part_labels = datasets.load_split(True, folder, subset=7, size=36)
    keep = torch.from_numpy(datasets._subset_indices(30, 7))
    assert part.shape == (7, 3, 36, 36) and torch.equal(part[:, :, 2:34, 2:34], images[keep])
    assert torch.equal(part_labels, labels[keep])


def set_byte(path, offset, value):
    data = bytearray(path.read_bytes())
    data[offset] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize('dataset, damage, message', [
    ('cifar10', lambda d: (d / 'data_batch_3.bin').unlink(),
     r'data_batch_3.bin is missing: a CIFAR-10 binary folder holds data_batch_1.bin, .*'
     r'test_batch.bin, batches.meta.txt \(the test file and the first training files are enough'),
    ('cifar10', lambda d: (d / 'test_batch.bin').unlink(), 'test_batch.bin is missing'),
    ('cifar10', lambda d: [(d / f'data_batch_{i}.bin').unlink() for i in range(1, 6)],
     'data_batch_1.bin is missing'),
    ('cifar10', lambda d: (d / 'test_batch.bin').write_bytes((d / 'test_batch.bin').read_bytes()[:-1]),
     r'test_batch.bin is 18,437 bytes, not 18,438 \(6 records of 3,073 bytes\): truncated'),
    ('cifar10', lambda d: set_byte(d / 'data_batch_5.bin', 3073 * 4, 10),
     'data_batch_5.bin has labels up to 10, but CIFAR-10 has 10 classes: the file is corrupt'),
    ('cifar10', lambda d: (d / 'batches.meta.txt').write_text('cat\ndog\n'),
     'batches.meta.txt names 2 classes, but CIFAR-10 has 10'),
    ('cifar100', lambda d: set_byte(d / 'train.bin', 3074 + 1, 100),
     'train.bin has labels up to 100, but CIFAR-100 has 100 classes'),
    ('cifar100', lambda d: set_byte(d / 'train.bin', 0, 20),
     'train.bin has coarse labels up to 20, but CIFAR-100 has 20'),
    ('cifar100', lambda d: (d / 'train.bin').unlink(), 'train.bin is missing'),
])
def test_a_damaged_binary_folder_is_refused_naming_the_file(tmp_path, small_cifar_binary, dataset,
                                                             damage, message):
    small_cifar_binary(tmp_path, dataset)
    damage(tmp_path)
    with pytest.raises(datasets.DataError, match=message):
        datasets.load_split(True, str(tmp_path), dataset=dataset)


def test_a_folder_of_the_first_training_files_trains_on_them_and_says_so(tmp_path, small_cifar_binary,
                                                                        capsys):
    # What a GPU machine that carries 60 MB holds: data_batch_1.bin and test_batch.bin.
    folder = small_cifar_binary(tmp_path)
    labels, pixels = records(f'{folder}/data_batch_1.bin', 1)
    for name in ('data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin',
                 'batches.meta.txt'):
        (tmp_path / name).unlink()
    images, loaded_labels = datasets.load_split(True, folder)
    assert torch.equal(images.flatten(1), torch.from_numpy(pixels))
    assert torch.equal(loaded_labels, torch.from_numpy(labels[:, 0]).long())
    assert 'holds 1 of CIFAR-10\'s 5 training files: 6 training images' in capsys.readouterr().out
    assert datasets.load_split(False, folder)[0].shape == (6, 3, 32, 32)


def test_a_folder_holding_both_binary_cifars_gives_each_its_own(tmp_path, small_cifar_binary):
    small_cifar_binary(tmp_path / 'cifar-10-batches-bin', 'cifar10', seed=1)
    folder = small_cifar_binary(tmp_path / 'cifar-100-binary', 'cifar100', seed=2)
    assert datasets.load_split(False, str(tmp_path))[0].shape == (6, 3, 32, 32)
    images, _ = datasets.load_split(False, str(tmp_path), dataset='cifar100')
    assert torch.equal(images.flatten(1), torch.from_numpy(records(f'{folder}/test.bin', 2)[1]))
    assert datasets.data_source(str(tmp_path), 'cifar100').startswith('the official CIFAR-100')


def test_the_requested_datasets_torchvision_folder_wins_over_another_binary(tmp_path, monkeypatch,
                                                                           small_cifar_binary):
    import torchvision.datasets.cifar as cifar
    small_cifar_binary(tmp_path / 'cifar-100-binary', 'cifar100')
    last = write_cifar_python(tmp_path / 'cifar-10-batches-py')
    monkeypatch.setattr(cifar.CIFAR10, '_check_integrity', lambda self: True)
    monkeypatch.setattr(cifar, 'check_integrity', lambda path, md5: True)
    images, _ = datasets.load_split(False, str(tmp_path))
    assert torch.equal(images.flatten(1), torch.from_numpy(last['data']))
    assert datasets.data_source(str(tmp_path), 'cifar10') == (f"the official data, torchvision's copy "
                                                          f"at {tmp_path}")


@pytest.mark.parametrize('files, dataset, message', [
    ('cifar10', 'cifar100', "holds CIFAR-10's binary files, but the model is for cifar100: "
                            'pass --dataset cifar10'),
    ('cifar100', 'cifar10', "holds CIFAR-100's binary files, but the model is for cifar10"),
    ('cifar10', 'mnist', 'but the model is for mnist'),
])
def test_binary_files_of_another_dataset_are_refused(tmp_path, small_cifar_binary, files, dataset,
                                                     message):
    with pytest.raises(datasets.DataError, match=message):
        datasets.load_split(False, small_cifar_binary(tmp_path, files), dataset=dataset)


def write_cifar_python(folder, images=4, seed=0):
    """torchvision's cifar-10-batches-py layout (pickled batches), random images."""
    import pickle
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name in [*(f'data_batch_{i}' for i in range(1, 6)), 'test_batch']:
        batch = {'data': rng.integers(0, 256, (images, 3072)).astype(np.uint8),
                 'labels': rng.integers(0, 10, images).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / 'batches.meta').write_bytes(pickle.dumps({'label_names': [str(i) for i in range(10)]}))
    return batch


@pytest.mark.parametrize('name_the_folder', [False, True])
def test_torchvision_python_folder_is_read_without_downloading(tmp_path, monkeypatch, name_the_folder):
    import torchvision.datasets.cifar as cifar
    last = write_cifar_python(tmp_path / 'cifar-10-batches-py')
    with pytest.raises(datasets.DataError, match='does not hold an intact copy of torchvision.s cifar10 '
                                             'files .*Dataset not found or corrupted'):
        datasets.load_split(False, str(tmp_path))  # not the official files: their MD5s differ
    monkeypatch.setattr(cifar.CIFAR10, '_check_integrity', lambda self: True)
    monkeypatch.setattr(cifar, 'check_integrity', lambda path, md5: True)
    monkeypatch.setattr(cifar.CIFAR10, 'download', lambda self: pytest.fail('downloaded'))
    root = tmp_path / 'cifar-10-batches-py' if name_the_folder else tmp_path
    images, labels = datasets.load_split(False, str(root))
    assert torch.equal(images.flatten(1), torch.from_numpy(last['data']))
    assert labels.tolist() == last['labels']
    assert datasets.load_split(True, str(root))[0].shape == (20, 3, 32, 32)



def test_the_logs_name_the_copy_of_the_data(tmp_path, small_cifar_binary):
    small_cifar_binary(tmp_path / 'cifar-10-batches-bin')
    expected = f'the official CIFAR-10, binary version, at {tmp_path / "cifar-10-batches-bin"}'
    assert datasets.data_source(str(tmp_path / 'cifar-10-batches-bin')) == expected
    assert datasets.data_source(str(tmp_path)) == expected  # the folder the archive extracts into
    assert datasets.data_source(None) == 'the official data, downloaded by torchvision into data/'
    assert datasets.data_source(image_folder(tmp_path / 'jpg', 10, (32, 32, 3))).startswith(
        f'the ImageFolder copy at {tmp_path / "jpg"} (a re-encoded copy differs')


@pytest.mark.parametrize('damage, message', [
    (lambda f: f.write_bytes(f.read_bytes()[:40]), 'is damaged or not an image'),  # truncated
    (lambda f: f.write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(50)), 'is damaged or not an image'),
    (lambda f: f.unlink(), "Couldn't find any class folder|Found no valid file for the classes 3"),
])
def test_a_damaged_image_folder_is_one_line_naming_the_problem(tmp_path, damage, message):
    root = image_folder(tmp_path, 10, (32, 32, 3))
    damage(tmp_path / 'test' / '3' / '0.png')
    with pytest.raises(datasets.DataError, match=message):
        datasets.load_split(False, root)
