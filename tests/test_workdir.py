"""The resumable work directory of `lgdeploy build`: lock, leftovers, resume or discard by input fingerprint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from learngene_deploy.artifact import PARTIAL_MARK
from learngene_deploy.errors import ArtifactError
from learngene_deploy.pipeline.workdir import INPUTS, BuildWork, work_dir_for

INPUTS_A = {"learngene_sha256": "ab" * 32, "size": {"depth": 3}, "finetune": {"steps": 10, "seed": 0}}


def _checkpoint(work: BuildWork, step: int, total: int = 10) -> None:
    work.finetune_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"step": step, "total_steps": total}, work.checkpoint)


def test_work_dir_is_hidden_beside_the_output(tmp_path: Path) -> None:
    assert work_dir_for(tmp_path / "artifacts" / "cpu-host") == tmp_path / "artifacts" / ".cpu-host.work"


def test_fresh_then_resume_then_discard(tmp_path: Path) -> None:
    work = BuildWork(tmp_path / "out")
    assert work.acquire() == []
    assert work.reconcile(INPUTS_A) == (0, None)
    assert json.loads((work.path / INPUTS).read_text())["finetune"] == {"steps": 10, "seed": 0}
    _checkpoint(work, 4)
    work.release(success=False)
    assert work.checkpoint.is_file(), "a failed build keeps a checkpoint worth resuming"

    half = work.finetune_dir / ".checkpoint.pt.tmp999"  # what a kill during a checkpoint write leaves
    half.write_bytes(b"half")
    again = BuildWork(tmp_path / "out")
    again.acquire()
    step, note = again.reconcile(INPUTS_A)
    assert step == 4 and note == f"resuming the fine-tune from step 4 of 10 (checkpoint in {again.path})"
    assert not half.exists() and again.checkpoint.is_file()
    again.release(success=False)

    other = BuildWork(tmp_path / "out")
    other.acquire()
    step, note = other.reconcile({**INPUTS_A, "finetune": {"steps": 10, "seed": 1}})
    assert (
        step == 0
        and note == f"discarding {other.path}: it holds work of other inputs (finetune changed); starting afresh"
    )
    assert not other.checkpoint.exists()
    other.release(success=True)
    assert list(tmp_path.iterdir()) == [], "a finished build removes its work directory"


def test_unreadable_checkpoint_is_discarded(tmp_path: Path) -> None:
    work = BuildWork(tmp_path / "out")
    work.acquire()
    work.reconcile(INPUTS_A)
    work.finetune_dir.mkdir()
    work.checkpoint.write_bytes(b"not a checkpoint")
    step, note = work.reconcile(INPUTS_A)
    assert step == 0 and note is not None and note.startswith(f"discarding the unreadable checkpoint in {work.path}")
    assert not work.checkpoint.exists()
    work.release(success=False)
    assert list(tmp_path.iterdir()) == [], "nothing worth resuming: the directory goes"


def test_second_build_of_the_same_output_is_refused(tmp_path: Path) -> None:
    first = BuildWork(tmp_path / "out")
    first.acquire()
    with pytest.raises(ArtifactError) as info:
        BuildWork(tmp_path / "out").acquire()
    assert str(info.value) == (
        f"another lgdeploy build (pid {os.getpid()}) is writing {tmp_path / 'out'} right now; wait for it to finish "
        "or choose another --out."
    )
    first.release(success=True)
    second = BuildWork(tmp_path / "out")
    second.acquire()  # free again once the first one is done
    second.release(success=True)


def test_leftovers_of_unfinished_builds_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / f".out{PARTIAL_MARK}abc"
    stale.mkdir()
    (stale / "manifest.json").write_text("{}")
    keep = tmp_path / f".other{PARTIAL_MARK}abc"
    keep.mkdir()
    work = BuildWork(tmp_path / "out")
    assert work.acquire() == [stale]
    assert not stale.exists() and keep.is_dir()
    work.release(success=True)
