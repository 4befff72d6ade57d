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
    (root / "b" / "loop1").symlink_to(root / "b" / "loop1")  # two self-symlinks (ELOOP)
    (root / "b" / "loop2.png").symlink_to(root / "b" / "loop2.png")
    assert _count(root) == 6


def test_special_files_named_like_images_are_skipped_without_blocking(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", {"a": 2, "b": 2})
    os.mkfifo(root / "a" / "x.png")
    (root / "b" / "zero.png").symlink_to("/dev/zero")
    (root / "b" / "gone.png").symlink_to(root / "nowhere.png")
    assert _count(root) == 4


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
