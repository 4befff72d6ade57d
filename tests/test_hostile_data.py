"""Hostile data directories (issue 21): discovery never blocks, loops or counts an image twice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from learngene_deploy.data import load_data
from learngene_deploy.data.contract import MAX_IMAGE_BYTES, load_image
from learngene_deploy.errors import DataError


def _folder(root: Path, counts: dict[str, int]) -> Path:
    for k, (cls, n) in enumerate(counts.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (6, 5), (40 * k, 9 * i, 100)).save(root / cls / f"{i:03d}.png")
    return root


def _count(root: Path) -> int:
    data = load_data(root, img_size=8, val_fraction=0.5)
    return len(data.train) + len(data.val)


def test_a_class_folder_linked_to_the_root_is_refused_at_once(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", {"a": 2, "b": 2})
    (root / "c").symlink_to("/", target_is_directory=True)
    with pytest.raises(DataError, match=r"class folder .*c is a symbolic link to a directory"):
        load_data(root, img_size=8)


def test_directory_links_inside_a_class_are_not_followed(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", {"a": 3, "b": 3})
    (root / "a" / "everything").symlink_to("/", target_is_directory=True)
    (root / "a" / "self").symlink_to(root / "a", target_is_directory=True)
    (root / "a" / "up").symlink_to(root, target_is_directory=True)
    (root / "b" / "loop1").symlink_to(root / "b" / "loop1")  # a self-symlink (ELOOP) not named like an image
    assert _count(root) == 6


@pytest.mark.parametrize(
    ("name", "make", "fragment"),
    [
        ("x.png", lambda p: os.mkfifo(p), "is a FIFO"),
        ("zero.png", lambda p: p.symlink_to("/dev/zero"), "is a character device"),
        ("gone.png", lambda p: p.symlink_to(p.parent / "nowhere.png"), "symbolic link that leads to no file"),
        ("loop.png", lambda p: p.symlink_to(p), "symbolic link that leads to no file"),
    ],
)
def test_special_files_named_like_images_are_reported_by_name_without_blocking(
    tmp_path: Path, name: str, make, fragment: str
) -> None:  # type: ignore[no-untyped-def]
    root = _folder(tmp_path / "ds", {"a": 2, "b": 2})
    make(root / "b" / name)
    with pytest.raises(DataError) as caught:
        load_data(root, img_size=8)
    message = str(caught.value)
    assert str(root / "b" / name) in message and fragment in message and "\n" not in message


def test_the_same_image_under_two_names_is_refused_not_counted_twice(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", {"a": 2, "b": 2})
    (root / "b" / "copy.png").symlink_to(root / "a" / "000.png")
    with pytest.raises(DataError, match="are the same file"):
        load_data(root, img_size=8)
    (root / "b" / "copy.png").unlink()
    os.link(root / "a" / "001.png", root / "b" / "hard.png")
    with pytest.raises(DataError, match="are the same file"):
        load_data(root, img_size=8)


def test_an_oversized_image_file_is_refused_by_name(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", {"a": 2, "b": 2})
    with open(root / "a" / "huge.png", "wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(DataError, match=r"huge\.png is \d+ bytes, more than an image file may be"):
        load_data(root, img_size=8)


def test_load_image_never_reads_a_fifo_or_a_device(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.png")
    with pytest.raises(DataError, match="not a regular file"):
        load_image(tmp_path / "x.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    with pytest.raises(DataError, match="not a regular file"):
        load_image(tmp_path / "zero.png")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("classes.json", "[" * 50_000 + "]" * 50_000, "nested too deeply"),
        ("classes.json", '{"cat": "zero"}', "neither a list of names nor a name -> index map"),
        ("classes.txt", b"\xff\xfe", "write it as UTF-8 text"),
    ],
)
def test_class_lists_of_shards_are_checked(tmp_path: Path, name: str, content: object, fragment: str) -> None:
    from learngene_deploy.data.sources import _read_classes

    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else str(content).encode())
    with pytest.raises(DataError, match=fragment):
        _read_classes(tmp_path)
    path.unlink()
    (tmp_path / "classes.json").write_text('{"cat": "1", "dog": 0}')
    assert _read_classes(tmp_path) == ["dog", "cat"]


def test_a_gzip_idx_file_that_inflates_past_the_cap_is_refused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A small .gz that inflates to more than MAX_IDX_BYTES (a decompression bomb) stops at the cap, by name."""
    import gzip

    from learngene_deploy.data import splits

    monkeypatch.setattr(splits, "MAX_IDX_BYTES", 10_000)
    header = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (100, 28, 28))
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress(header + bytes(100 * 784)))  # 78 kB inflated, a few hundred bytes on disk
    assert bomb.stat().st_size < 10_000
    with pytest.raises(DataError) as caught:
        splits._read_idx(bomb, 2051)
    assert str(bomb) in str(caught.value) and "inflates to more than 10000 bytes" in str(caught.value)


@pytest.mark.parametrize("member", ["image", "cls"])
def test_an_oversized_tar_member_is_refused_by_name(tmp_path: Path, monkeypatch, member: str) -> None:  # type: ignore[no-untyped-def]
    """A shard member larger than an image (or a class entry) may be is refused before it is read."""
    import io
    import tarfile

    pytest.importorskip("webdataset", reason="webdataset not installed (pip install 'learngene-deploy[wds]')")
    from learngene_deploy.data import sources

    monkeypatch.setattr(sources, "MAX_IMAGE_BYTES", 2_000)
    png = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(png, format="PNG")
    shard = tmp_path / "ds" / "shard-000.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tar:
        for i in range(4):
            big = i == 1
            image = png.getvalue() + (bytes(5_000) if big and member == "image" else b"")
            cls = str(i % 2).encode() + (b" " * 5_000 if big and member == "cls" else b"")
            for name, payload in ((f"s{i}.png", image), (f"s{i}.cls", cls)):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataError) as caught:
        load_data(tmp_path / "ds", img_size=8)
    message = str(caught.value)
    assert f"s1.{'png' if member == 'image' else 'cls'} in shard {shard}" in message and "bytes, more than" in message


def test_hugging_face_rows_that_name_a_fifo_a_device_or_nothing_are_one_sentence(tmp_path: Path) -> None:
    """An undecoded Image column may hold a path instead of bytes (an Arrow table written by other tools; save_to_disk
    embeds the bytes): the path is read only if it is a small regular file, else one sentence names it."""
    from learngene_deploy.data.sources import HFImages

    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    images = HFImages.__new__(HFImages)  # the row reader alone: a table of one record per case
    images.column, images.split, images.root = "img", "train", tmp_path
    for bad, fragment in (
        (str(tmp_path / "pipe.png"), "not a regular file"),
        (str(tmp_path / "zero.png"), "not a regular file"),
        (str(tmp_path / "missing.png"), "No such file"),
        (str(tmp_path), "Is a directory"),
    ):
        images.table = [{"img": {"bytes": None, "path": bad}}]
        with pytest.raises(DataError) as caught:
            images._bytes(0)
        message = str(caught.value)
        assert bad in message and fragment in message and "remove it from the dataset" in message
