"""Data sources: built-ins, IDX directories, ImageFolder directories and Hugging Face save_to_disk directories."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learngene_deploy import data as data_mod
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


def test_bad_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"unknown data source 'cifar-1000'.*built-in \(digits, fashion-mnist\)"):
        load_data("cifar-1000", img_size=16)
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "nope", img_size=16)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="is a file, not a directory"):
        load_data(tmp_path / "notes.txt", img_size=16)
    with pytest.raises(DataError, match=r"holds none of class sub-folders.*four IDX files.*dataset_dict.json"):
        load_data(tmp_path, img_size=16)
    _save(tmp_path / "loose.png", (1, 2, 3))
    with pytest.raises(DataError, match="holds 1 images but no class sub-folders"):
        load_data(tmp_path, img_size=16)
    monkeypatch.setattr(data_mod, "FASHION_MNIST_DIR", tmp_path / "missing")
    with pytest.raises(DataError, match=r"apt-get install dataset-fashion-mnist.*four IDX files"):
        load_data("fashion-mnist", img_size=16)
    (tmp_path / "loose.png").unlink()
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


def _save(
    path: Path, color: object, *, size: tuple[int, int] = (12, 10), mode: str = "RGB", fmt: str | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)


def _folder(root: Path, counts: dict[str, int]) -> Path:
    """An ImageFolder with ``counts[c]`` distinct small PNGs in each class folder ``c``."""
    for k, (cls, n) in enumerate(counts.items()):
        for i in range(n):
            _save(root / cls / f"{i:03d}.png", (10 * k, 7 * i, 100))
    return root


def test_imagefolder_formats_split_and_preprocessing(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", {"dog": 5})
    cat = root / "cat"
    _save(cat / "red.PNG", (255, 0, 0))
    _save(cat / "upper.JPG", (0, 200, 0), size=(40, 30))
    _save(cat / "gray.jpeg", 128, mode="L")
    _save(cat / "alpha.png", (0, 0, 255, 0), mode="RGBA")
    palette = Image.new("P", (9, 9), 1)
    palette.putpalette([0, 0, 0, 255, 255, 0])
    palette.save(cat / "pal.gif", transparency=0)
    _save(cat / "nested" / "a.bmp", (1, 1, 1))
    _save(cat / "b.webp", (2, 2, 2))
    _save(cat / "c.tif", (3, 3, 3))
    Image.fromarray(np.full((6, 6), 65535, np.uint16)).save(cat / "deep.png")
    (cat / ".DS_Store").write_bytes(b"junk")
    (cat / "notes.txt").write_text("not an image")
    _save(cat / ".hidden" / "x.png", (0, 0, 0))
    _save(root / "__MACOSX" / "cat" / "._red.png", (0, 0, 0))

    a = load_data(root, img_size=8)
    x, y = a.train.tensors
    assert a.info["classes"] == ["cat", "dog"] and a.num_classes == 2 and a.info["name"] == "imagefolder"
    assert x.shape[1:] == (3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= -1 and x.max() <= 1
    # stratified: round(9 * 0.2) = 2 of the 9 cats and round(5 * 0.2) = 1 of the 5 dogs held out
    assert a.val.tensors[1].tolist() == [0, 0, 1] and len(a.train) == 11
    b = load_data(root, img_size=8)
    assert torch.equal(x, b.train.tensors[0]) and a.info["fingerprint"] == b.info["fingerprint"]
    c = load_data(root, img_size=8, seed=1)
    assert c.info["fingerprint"] != a.info["fingerprint"] and len(c.val) == 3
    everything = torch.cat([x, a.val.tensors[0]])

    def solid(r: float, g: float, b: float) -> bool:
        return bool(((everything - torch.tensor([r, g, b]).view(1, 3, 1, 1)).abs().amax((1, 2, 3)) < 1e-6).any())

    assert solid(1, -1, -1) and solid(-1, -1, 1) and solid(1, 1, -1)  # red PNG, RGBA (alpha dropped), palette GIF
    assert solid(1, 1, 1)  # the 16-bit white PNG is white, not clipped
    gray = ((everything[:, 0] == everything[:, 1]) & (everything[:, 1] == everything[:, 2])).flatten(1).all(1)
    assert gray.sum() >= 4  # gray.jpeg, deep.png and the grey bmp and tif (webp is lossy)


def test_imagefolder_resize_is_a_centre_crop(tmp_path: Path) -> None:
    pixels = np.zeros((10, 30, 3), np.uint8)
    pixels[:, :10, 0] = pixels[:, 10:20, 1] = pixels[:, 20:, 2] = 255  # red | green | blue, a 3:1 landscape
    for cls in ("a", "b"):
        for i in range(2):
            (tmp_path / cls).mkdir(exist_ok=True)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    x = load_data(tmp_path, img_size=4).train.tensors[0]
    # only the centred square (the green third) remains; bilinear filtering blends a little red/blue at its edges
    assert (x[:, 1] > 0.5).all() and (x[:, 0] < -0.5).all() and (x[:, 2] < -0.5).all()


def test_imagefolder_applies_exif_orientation(tmp_path: Path) -> None:
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10, 0] = pixels[:, 10:, 2] = 255  # red | blue, landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": red on top, blue below
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png", exif=exif)
    x = load_data(tmp_path, img_size=4).train.tensors[0]
    assert torch.equal(x[..., :1].expand_as(x), x)  # every row is one colour
    assert (x[:, 0, 0] > 0.5).all() and (x[:, 2, -1] > 0.5).all()  # red top row, blue bottom row


def test_imagefolder_with_train_and_val_directories(tmp_path: Path) -> None:
    _folder(tmp_path / "train", {"a": 3, "b": 4})
    _folder(tmp_path / "test", {"a": 2, "b": 1})
    data = load_data(tmp_path, img_size=8)
    assert (len(data.train), len(data.val)) == (7, 3) and data.info["split"] == "train / test"
    _folder(tmp_path / "val", {"a": 1})  # val wins over test, and may lack a class
    data = load_data(tmp_path, img_size=8, train_limit=2)
    assert (len(data.train), len(data.val)) == (2, 1) and data.val.tensors[1].tolist() == [0]
    _folder(tmp_path / "val", {"zebra": 1})
    with pytest.raises(DataError, match=r"classes that training lacks \(zebra\)"):
        load_data(tmp_path, img_size=8)


def test_imagefolder_fingerprint_tracks_the_files(tmp_path: Path) -> None:
    def fingerprint(root: Path, img_size: int = 8) -> str:
        return load_data(root, img_size=img_size).info["fingerprint"]

    first = fingerprint(_folder(tmp_path / "one", {"a": 3, "b": 3}))
    assert fingerprint(_folder(tmp_path / "two", {"a": 3, "b": 3})) == first  # same data elsewhere
    assert fingerprint(tmp_path / "two", img_size=16) == first  # preprocessing is recorded apart
    _save(tmp_path / "two" / "a" / "001.png", (9, 9, 9))
    assert fingerprint(tmp_path / "two") != first  # bytes changed
    _folder(tmp_path / "three", {"a": 3, "b": 3})
    (tmp_path / "three" / "b" / "002.png").rename(tmp_path / "three" / "b" / "zz.png")
    assert fingerprint(tmp_path / "three") != first  # file list changed


def test_imagefolder_limits_and_memory_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _folder(tmp_path, {"a": 10, "b": 10})
    data = load_data(root, img_size=8, train_limit=5, val_limit=2)
    assert (len(data.train), len(data.val)) == (5, 2) and "capped_from" not in data.info
    monkeypatch.setattr(data_mod, "MAX_TENSOR_BYTES", 12 * 8 * 8 * 10)  # room for 10 images of 3 x 8 x 8
    with pytest.warns(UserWarning, match="seeded subset of 8 training and 2 validation"):
        data = load_data(root, img_size=8)
    assert (len(data.train), len(data.val)) == (8, 2) and data.info["capped_from"] == {"train": 16, "val": 4}


def test_imagefolder_errors(tmp_path: Path) -> None:
    _folder(tmp_path / "one", {"only": 2})
    with pytest.raises(DataError, match=r"1 class folder\(s\) \(only\).*at least two"):
        load_data(tmp_path / "one", img_size=8)
    root = _folder(tmp_path / "ds", {"a": 2, "b": 2})
    (root / "empty_cls").mkdir()
    (root / "empty_cls" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder .*empty_cls holds no images"):
        load_data(root, img_size=8)
    (root / "empty_cls" / "readme.txt").unlink()
    (root / "empty_cls").rmdir()
    (root / "b" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot read image .*broken.png \(not an image format Pillow can read\)"):
        load_data(root, img_size=8)
    (root / "b" / "broken.png").write_bytes((root / "b" / "000.png").read_bytes()[:40])
    with pytest.raises(DataError, match=r"cannot read image .*broken.png"):
        load_data(root, img_size=8)
    (root / "b" / "broken.png").unlink()
    with pytest.raises(DataError, match="val_fraction must lie strictly between 0 and 1"):
        load_data(root, img_size=8, val_fraction=0.0)
    single = _folder(tmp_path / "single", {"a": 1, "b": 1})
    with pytest.raises(DataError, match="single image"):
        load_data(single, img_size=8)


def test_huggingface_without_datasets_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dataset_dict.json").write_text('{"splits": ["train"]}')
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(DataError, match=r"pip install 'learngene-deploy\[hf\]'"):
        load_data(tmp_path, img_size=8)


def _pil(color: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (10, 12), color)


def test_huggingface_directories(tmp_path: Path) -> None:
    datasets = pytest.importorskip(
        "datasets", reason="Hugging Face `datasets` not installed (pip install 'learngene-deploy[hf]')"
    )
    datasets.disable_progress_bars()
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["ant", "bee", "cow"])})

    def split(n: int) -> object:
        rows = {"img": [_pil((i, 2 * i, 50)) for i in range(n)], "label": [i % 3 for i in range(n)]}
        return datasets.Dataset.from_dict(rows, features=features)

    datasets.DatasetDict(train=split(9), test=split(4)).save_to_disk(tmp_path / "dict")
    data = load_data(tmp_path / "dict", img_size=8)
    assert (len(data.train), len(data.val)) == (9, 4) and data.info["classes"] == ["ant", "bee", "cow"]
    assert data.info["name"] == "huggingface" and data.info["split"] == "train / test"
    assert data.train.tensors[0].shape == (9, 3, 8, 8) and data.val.tensors[1].tolist() == [0, 1, 2, 0]
    assert load_data(tmp_path / "dict", img_size=8).info["fingerprint"] == data.info["fingerprint"]

    # a single Dataset with string labels and two image columns: stratified split, explicit image column
    rows = {
        "photo": [_pil((i, 0, 0)) for i in range(6)],
        "thumb": [_pil((0, i, 0)) for i in range(6)],
        "label": ["b", "a"] * 3,
    }
    two = datasets.Features({"photo": datasets.Image(), "thumb": datasets.Image(), "label": datasets.Value("string")})
    datasets.Dataset.from_dict(rows, features=two).save_to_disk(tmp_path / "single")
    with pytest.raises(DataError, match=r"which column .* holds the images.*pass image_column"):
        load_data(tmp_path / "single", img_size=8)
    data = load_data(tmp_path / "single", img_size=8, image_column="thumb", val_fraction=0.34)
    assert data.info["classes"] == ["a", "b"] and (len(data.train), len(data.val)) == (4, 2)
    assert sorted(data.val.tensors[1].tolist()) == [0, 1]

    unlabelled = split(3).cast_column("label", datasets.Value("int64")).map(lambda r: {"label": -1})
    datasets.DatasetDict(train=split(6), test=unlabelled).save_to_disk(tmp_path / "unlabelled")
    with pytest.raises(DataError, match=r"split test .* 3 labels outside 0..2 \(e.g. -1"):
        load_data(tmp_path / "unlabelled", img_size=8)
