"""Data sources (built-ins, IDX, ImageFolder, WebDataset shards, Hugging Face), the contract, presets and the loader."""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learngene_deploy.data import (
    FASHION_MNIST_DIR,
    IDX_FILES,
    PRESETS,
    DataSplits,
    Preprocessing,
    load_data,
    make_loader,
    mixup_fn,
    train_transform,
)
from learngene_deploy.data import splits as data_mod
from learngene_deploy.errors import DataError


def _tensors(data: DataSplits, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data.arrays(split, workers=0)  # type: ignore[arg-type]
    return torch.from_numpy(x), torch.from_numpy(y)


def _normalised(data: DataSplits, r: float, g: float, b: float) -> torch.Tensor:
    """Pixel values in [0, 1] as the contract's model input."""
    c = data.preprocessing
    assert c is not None
    return (torch.tensor([r, g, b]) - torch.tensor(c.mean)) / torch.tensor(c.std)


def test_digits_splits_are_deterministic_and_preprocessed() -> None:
    a = load_data("digits", img_size=16)
    b = load_data("digits", img_size=16)
    images, labels = _tensors(a)
    assert images.shape[1:] == (3, 16, 16) and images.dtype == torch.float32
    assert torch.equal(images[:, 0], images[:, 2])
    assert images.min() >= -1.0 - 1e-6 and images.max() <= 1.0 + 1e-6
    assert len(a.train) + len(a.val) == 1797 and len(a.val) == round(1797 * 0.2)
    assert a.num_classes == 10 and a.in_chans == 3
    assert torch.equal(labels, _tensors(b)[1]) and a.info["fingerprint"] == b.info["fingerprint"]
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
    assert _tensors(data)[0].shape == (40, 3, 32, 32) and len(data.val) == 20
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
    x, y = _tensors(a)
    assert a.info["classes"] == ["cat", "dog"] and a.num_classes == 2 and a.info["name"] == "imagefolder"
    assert a.class_names == ("cat", "dog") and a.info["preprocessing"] == a.preprocessing.to_dict()  # type: ignore[union-attr]
    assert x.shape[1:] == (3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    low, high = _normalised(a, 0, 0, 0).view(1, 3, 1, 1), _normalised(a, 1, 1, 1).view(1, 3, 1, 1)
    assert (x >= low - 1e-5).all() and (x <= high + 1e-5).all()
    # stratified: round(9 * 0.2) = 2 of the 9 cats and round(5 * 0.2) = 1 of the 5 dogs held out
    assert a.val.labels.tolist() == [0, 0, 1] and len(a.train) == 11
    b = load_data(root, img_size=8)
    assert torch.equal(x, _tensors(b)[0]) and a.info["fingerprint"] == b.info["fingerprint"]
    c = load_data(root, img_size=8, seed=1)
    assert c.info["fingerprint"] != a.info["fingerprint"] and len(c.val) == 3
    everything = torch.cat([x, _tensors(a, "val")[0]])

    def solid(r: float, g: float, b: float) -> bool:
        want = _normalised(a, r, g, b).view(1, 3, 1, 1)
        return bool(((everything - want).abs().amax((1, 2, 3)) < 1e-5).any())

    assert solid(1, 0, 0) and solid(0, 0, 1) and solid(1, 1, 0)  # red PNG, RGBA (alpha dropped), palette GIF
    assert solid(1, 1, 1)  # the 16-bit white PNG is white, not clipped
    c = a.preprocessing
    assert c is not None
    pixels = everything * torch.tensor(c.std).view(1, 3, 1, 1) + torch.tensor(c.mean).view(1, 3, 1, 1)
    gray = ((pixels[:, 0] - pixels[:, 1]).abs().amax((1, 2)) < 1e-5) & (
        (pixels[:, 1] - pixels[:, 2]).abs().amax((1, 2)) < 1e-5
    )
    assert gray.sum() >= 4  # gray.jpeg, deep.png and the grey bmp and tif (webp is lossy)


def test_imagefolder_resize_is_a_centre_crop(tmp_path: Path) -> None:
    pixels = np.zeros((10, 30, 3), np.uint8)
    pixels[:, :10, 0] = pixels[:, 10:20, 1] = pixels[:, 20:, 2] = 255  # red | green | blue, a 3:1 landscape
    for cls in ("a", "b"):
        for i in range(2):
            (tmp_path / cls).mkdir(exist_ok=True)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    x = _tensors(load_data(tmp_path, img_size=4))[0]
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
    x = _tensors(load_data(tmp_path, img_size=4))[0]
    assert torch.allclose(x[..., :1].expand_as(x), x, atol=1e-5)  # every row is one colour
    assert (x[:, 0, 0] > 0.5).all() and (x[:, 2, -1] > 0.5).all()  # red top row, blue bottom row


def test_imagefolder_with_train_and_val_directories(tmp_path: Path) -> None:
    _folder(tmp_path / "train", {"a": 3, "b": 4})
    _folder(tmp_path / "test", {"a": 2, "b": 1})
    data = load_data(tmp_path, img_size=8)
    assert (len(data.train), len(data.val)) == (7, 3) and data.info["split"] == "train / test"
    _folder(tmp_path / "val", {"a": 1, "b": 1})  # val wins over test
    data = load_data(tmp_path, img_size=8, train_limit=2)
    assert (len(data.train), len(data.val)) == (2, 2) and data.val.labels.tolist() == [0, 1]
    (tmp_path / "val" / "b" / "000.png").unlink()
    (tmp_path / "val" / "b").rmdir()
    with pytest.raises(DataError, match=r"no folder for training classes \(b\)"):
        load_data(tmp_path, img_size=8)
    _folder(tmp_path / "val", {"b": 1, "zebra": 1})
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


def test_imagefolder_limits_no_subsampling_and_no_eager_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _folder(tmp_path, {"a": 30, "b": 30})
    data = load_data(root, img_size=8, train_limit=5, val_limit=2)
    assert (len(data.train), len(data.val)) == (5, 2)
    monkeypatch.setattr(data_mod, "FINGERPRINT_FILES", 8)  # a "large" source: the fingerprint reads 8 files' bytes
    reads: list[str] = []
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or real_read(self))

    def no_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_data decoded an image")

    monkeypatch.setattr(Image, "open", no_decode)
    big = load_data(root, img_size=224)
    assert (len(big.train), len(big.val)) == (48, 12) and len(reads) == 8  # all 60 images, none decoded
    assert load_data(root, img_size=224).info["fingerprint"] == big.info["fingerprint"]
    (root / "b" / "029.png").rename(root / "b" / "zz.png")
    assert load_data(root, img_size=224).info["fingerprint"] != big.info["fingerprint"]


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
        _decode_all(load_data(root, img_size=8))
    (root / "b" / "broken.png").write_bytes((root / "b" / "000.png").read_bytes()[:40])
    with pytest.raises(DataError, match=r"cannot read image .*broken.png"):
        _decode_all(load_data(root, img_size=8))
    (root / "b" / "broken.png").unlink()
    with pytest.raises(DataError, match="val_fraction must lie strictly between 0 and 1"):
        load_data(root, img_size=8, val_fraction=0.0)
    single = _folder(tmp_path / "single", {"a": 1, "b": 1})
    with pytest.raises(DataError, match="single image"):
        load_data(single, img_size=8)


def _decode_all(data: DataSplits) -> None:
    for split in ("train", "val"):
        data.arrays(split, workers=0)  # type: ignore[arg-type]


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
    assert _tensors(data)[0].shape == (9, 3, 8, 8) and data.val.labels.tolist() == [0, 1, 2, 0]
    pixels = _tensors(data, "val")[0]
    assert torch.allclose(
        pixels, torch.from_numpy(data.preprocessing.preprocess([_pil((i, 2 * i, 50)) for i in range(4)]))
    )  # type: ignore[union-attr]
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
    assert sorted(data.val.labels.tolist()) == [0, 1]

    unlabelled = split(3).cast_column("label", datasets.Value("int64")).map(lambda r: {"label": -1})
    datasets.DatasetDict(train=split(6), test=unlabelled).save_to_disk(tmp_path / "unlabelled")
    with pytest.raises(DataError, match=r"split test .* 3 labels outside 0..2 \(e.g. -1"):
        load_data(tmp_path / "unlabelled", img_size=8)


def test_contract_round_trip_and_preprocess(tmp_path: Path) -> None:
    contract = Preprocessing.imagenet(224)
    assert contract.resize_size == 256 and contract.interpolation == "bicubic"
    record = json.loads(json.dumps(contract.to_dict()))
    assert Preprocessing.from_dict(record) == contract and record["crop_pct"] == pytest.approx(0.875)
    with pytest.raises(DataError, match="unknown preprocessing keys colour"):
        Preprocessing.from_dict({**record, "colour": 1})
    with pytest.raises(DataError, match="unknown interpolation 'lanczos'"):
        Preprocessing(8, 8, "lanczos")
    digits = load_data("digits", img_size=16, val_limit=5)
    assert digits.info["preprocessing"] == Preprocessing.grayscale_builtin(16).to_dict()
    assert digits.class_names == tuple("0123456789") and digits.in_chans == 3
    root = _folder(tmp_path / "ds", {"a": 3, "b": 3})
    data = load_data(root, img_size=8, val_fraction=0.5)
    x, _ = data.arrays("val", workers=0)
    paths = [data.val.path(i) for i in range(len(data.val))]  # type: ignore[attr-defined]
    assert data.preprocessing is not None
    batch = data.preprocessing.preprocess(paths)
    assert batch.dtype == np.float32 and batch.shape == (len(paths), 3, 8, 8) and np.array_equal(batch, x)
    assert np.array_equal(data.preprocessing.preprocess([Image.open(p) for p in paths]), x)


def test_presets(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", {"a": 4, "b": 4})
    data = load_data(root, img_size=16)
    assert data.preprocessing is not None
    deit = data.train.with_transform(train_transform("deit", data.preprocessing))

    def epoch_images(dataset: object, epoch: int) -> torch.Tensor:
        return torch.cat([x for x, _ in make_loader(dataset, batch_size=3, shuffle=False, epoch=epoch, workers=0)])

    first = epoch_images(deit, 0)
    assert first.shape == (len(data.train), 3, 16, 16)
    assert torch.equal(first, epoch_images(deit, 0)) and not torch.equal(first, epoch_images(deit, 1))
    none = data.train.with_transform(train_transform("none", data.preprocessing))
    assert torch.equal(epoch_images(none, 3), _tensors(data)[0])
    digits = load_data("digits", img_size=16, train_limit=20, val_limit=5)
    assert digits.preprocessing is not None
    same = digits.train.with_transform(train_transform(PRESETS["none"], digits.preprocessing))
    assert torch.equal(epoch_images(same, 0), _tensors(digits)[0])  # built-ins: exactly the eval tensors
    light = digits.train.with_transform(train_transform("light", digits.preprocessing))
    assert epoch_images(light, 0).shape == (20, 3, 16, 16)
    mix = mixup_fn("deit", 10)
    assert mix is not None and mix.label_smoothing == 0.1 and mixup_fn("light", 10) is None
    assert mixup_fn(PRESETS["deit"].replace(mixup=0.0, cutmix=0.0), 10) is None
    with pytest.raises(DataError, match=r"unknown preset knob.*mixupp"):
        PRESETS["deit"].replace(mixupp=0.5)
    with pytest.raises(DataError, match="unknown augmentation preset 'heavy'"):
        train_transform("heavy", data.preprocessing)


def test_loader_is_deterministic_across_workers_and_resume(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", {"a": 7, "b": 7})
    data = load_data(root, img_size=8, val_fraction=0.2)
    assert data.preprocessing is not None
    train = data.train.with_transform(train_transform("light", data.preprocessing))

    def batches(workers: int, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loader = make_loader(train, batch_size=2, seed=5, epoch=2, start=start, workers=workers, world_size=1)
        return list(loader)

    serial, parallel, resumed = batches(0), batches(2), batches(0, start=4)
    assert len(serial) == 6 and len(resumed) == 4
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for a, b in zip(serial[2:], resumed, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    state = torch.get_rng_state()
    list(make_loader(train, batch_size=4, workers=0))
    assert torch.equal(state, torch.get_rng_state())  # the main process's random streams are left alone
    ranks = [make_loader(train, batch_size=4, shuffle=True, rank=r, world_size=2, workers=0) for r in (0, 1)]
    labels = [torch.cat([y for _, y in loader]) for loader in ranks]
    assert len(labels[0]) == len(labels[1]) == 6


def test_bad_images_skip_or_error(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", {"a": 3, "b": 3})
    (root / "b" / "bad.png").write_bytes(b"\x89PNG not really")
    data = load_data(root, img_size=8, val_fraction=0.3, on_bad_image="skip")
    with pytest.warns(UserWarning, match="skipped unreadable image .*bad.png"):
        loader = make_loader(data.train, batch_size=10, shuffle=False, workers=1)
        images = [x for x, _ in loader]
    assert loader.skipped == 1 and loader.bad_images[0].endswith("bad.png")
    assert sum(len(x) for x in images) == len(data.train) - 1
    strict = load_data(root, img_size=8, val_fraction=0.3)
    with pytest.raises(DataError, match=r"^cannot read image .*bad.png \(not an image format") as raised:
        list(make_loader(strict.train, batch_size=10, workers=1))
    assert "Traceback" not in str(raised.value)


def test_symlink_loops_are_skipped_and_fifos_refused_without_blocking(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", {"a": 2, "b": 2})
    os.symlink(root / "a", root / "a" / "loop")  # a directory cycle: not followed
    data = load_data(root, img_size=8, val_fraction=0.5)
    assert len(data.train) + len(data.val) == 4
    _decode_all(data)
    os.mkfifo(root / "a" / "pipe.png")  # reading a FIFO would block forever: named, never opened
    with pytest.raises(DataError, match=r"pipe\.png is named like an image but is a FIFO"):
        load_data(root, img_size=8, val_fraction=0.5)


def _shard(path: Path, samples: list[tuple[str, tuple[int, int, int], str]]) -> None:
    """A WebDataset tar shard: per sample ``key.png`` and ``key.cls``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, color, cls in samples:
            for name, payload in ((f"{key}.png", _png(color)), (f"{key}.cls", cls.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_webdataset_shards(tmp_path: Path) -> None:
    pytest.importorskip("webdataset", reason="webdataset not installed (pip install 'learngene-deploy[wds]')")
    colors = [(20 * i, 100, 7 * i) for i in range(10)]
    _shard(tmp_path / "flat" / "shard-000.tar", [(f"s{i:03d}", colors[i], str(i % 2)) for i in range(6)])
    _shard(tmp_path / "flat" / "shard-001.tar", [(f"s{i:03d}", colors[i], str(i % 2)) for i in range(6, 10)])
    (tmp_path / "flat" / "classes.txt").write_text("cat\ndog\n")
    data = load_data(tmp_path / "flat", img_size=8)
    assert data.info["name"] == "webdataset" and data.class_names == ("cat", "dog")
    assert (len(data.train), len(data.val)) == (8, 2) and data.info["split"].startswith("stratified")
    x, y = data.arrays("train", workers=0)
    assert data.preprocessing is not None
    keys = [int(data.train.keys[r].decode()[1:]) for r in data.train.rows]  # type: ignore[attr-defined]
    assert np.array_equal(x, data.preprocessing.preprocess([Image.new("RGB", (12, 10), colors[k]) for k in keys]))
    assert y.tolist() == [k % 2 for k in keys]
    pattern = load_data(str(tmp_path / "flat" / "shard-{000..001}.tar"), img_size=8)
    assert pattern.info["fingerprint"] == data.info["fingerprint"]

    _shard(tmp_path / "split" / "train" / "a.tar", [(f"t{i}", colors[i], n) for i, n in enumerate(["ox", "yak"] * 2)])
    _shard(tmp_path / "split" / "val" / "a.tar", [("v0", colors[0], "yak")])
    named = load_data(tmp_path / "split", img_size=8)
    assert named.class_names == ("ox", "yak") and (len(named.train), len(named.val)) == (4, 1)
    assert named.val.labels.tolist() == [1] and named.info["split"] == "train / val"
    _shard(tmp_path / "bad" / "a.tar", [("s0", colors[0], "3")])
    (tmp_path / "bad" / "classes.json").write_text(json.dumps(["x", "y"]))
    with pytest.raises(DataError, match=r"1 train samples have a cls outside the 2 classes \(e.g. s0: '3'\)"):
        load_data(tmp_path / "bad", img_size=8)
