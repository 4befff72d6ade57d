"""Built-in offline data: digits and Fashion-MNIST IDX files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from learngene_deploy.data import FASHION_MNIST_DIR, IDX_FILES, load_data
from learngene_deploy.errors import DataError


def test_digits_splits_are_deterministic_and_preprocessed() -> None:
    a = load_data("digits", img_size=16)
    b = load_data("digits", img_size=16)
    images, labels = a.train.tensors
    assert images.shape[1:] == (3, 16, 16) and images.dtype == torch.float32
    assert torch.equal(images[:, 0], images[:, 2])
    assert images.min() >= -1.0 - 1e-6 and images.max() <= 1.0 + 1e-6
    assert len(a.train) + len(a.val) == 1797 and len(a.val) == round(1797 * 0.2)
    assert a.num_classes == 10 and a.in_chans == 3
    assert torch.equal(labels, b.train.tensors[1]) and a.info["fingerprint"] == b.info["fingerprint"]
    c = load_data("digits", img_size=16, seed=1)
    assert c.info["fingerprint"] != a.info["fingerprint"]
    small = load_data("digits", img_size=8, train_limit=100, val_limit=20)
    assert (len(small.train), len(small.val)) == (100, 20)


def _write_idx(directory: Path, n: int, *, gz: bool) -> None:
    rng = np.random.default_rng(0)
    for key, stem in IDX_FILES.items():
        count = n if key.startswith("train") else n // 2
        if "images" in key:
            body = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (count, 28, 28))
            body += rng.integers(0, 256, count * 784, dtype=np.uint8).tobytes()
        else:
            body = (
                (2049).to_bytes(4, "big")
                + count.to_bytes(4, "big")
                + (np.arange(count) % 10).astype(np.uint8).tobytes()
            )
        (directory / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(body) if gz else body)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory(tmp_path: Path, gz: bool) -> None:
    _write_idx(tmp_path, 40, gz=gz)
    data = load_data(tmp_path, img_size=32)
    assert data.train.tensors[0].shape == (40, 3, 32, 32) and len(data.val) == 20
    assert data.num_classes == 10 and data.info["name"] == "idx-directory"


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown data source"):
        load_data("cifar-1000", img_size=16)
    with pytest.raises(DataError, match="holds the four IDX files"):
        load_data(tmp_path, img_size=16)
    _write_idx(tmp_path, 10, gz=False)
    path = tmp_path / IDX_FILES["train_images"]
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        load_data(tmp_path, img_size=16)


@pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
)
def test_fashion_mnist_builtin() -> None:
    data = load_data("fashion-mnist", img_size=28, train_limit=1000)
    assert len(data.train) == 1000 and len(data.val) == 10000 and data.num_classes == 10
