"""The one conformance test every backend passes: compile -> run -> match PyTorch within tolerance.

A backend's test file subclasses :class:`BackendConformance` once per precision it supports and only
fills in the class attributes. A backend whose runtime is not installed is skipped with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from learngene_deploy._fs import sha256_file
from learngene_deploy._imports import is_available
from learngene_deploy.backends import get_backend
from learngene_deploy.backends.base import Backend, Compiled
from learngene_deploy.gates import TOLERANCES, Tolerance, compare


class BackendConformance:
    """Test bodies shared by all backends; subclasses set the hooks below."""

    backend_name: ClassVar[str]  # registry name
    precision: ClassVar[str]  # "fp32" | "fp16" | "int8"
    profile: ClassVar[str | None] = None  # shipped profile whose runtime settings compile() gets
    model_suffix: ClassVar[str | None] = None  # expected suffix of model_path (default: the backend's)
    requires: ClassVar[tuple[str, ...]] = ()  # extra modules this precision needs (skipped without them)

    @property
    def tolerance(self) -> Tolerance:
        return TOLERANCES[self.precision]

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls) -> Backend:
        backend = get_backend(cls.backend_name)
        reason = backend.unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
        for module in cls.requires:
            if not is_available(module):
                pytest.skip(
                    f"{cls.backend_name} {cls.precision} needs the Python module '{module}', not installed here"
                )
        return backend

    @pytest.fixture(scope="class")
    @classmethod
    def compiled(cls, backend: Backend, tiny_onnx: Path, calibration_images: np.ndarray, tmp_path_factory) -> Compiled:
        from learngene_deploy.profile import load_profile

        out = tmp_path_factory.mktemp(f"{cls.backend_name}-{cls.precision}")
        profile = load_profile(cls.profile) if cls.profile else None
        return backend.compile(
            tiny_onnx, out, precision=cls.precision, profile=profile, calibration_data=calibration_images
        )

    def test_compile_records_what_it_wrote(self, backend: Backend, compiled: Compiled, tiny_onnx: Path) -> None:
        assert compiled.backend == backend.name
        assert compiled.precision == self.precision
        assert compiled.model_path.suffix == (self.model_suffix or backend.artifact_suffix)
        assert compiled.files[0] == compiled.model_path
        assert all(p.is_file() for p in compiled.files)
        assert compiled.bytes > 0
        assert compiled.source_sha256 == sha256_file(tiny_onnx)
        assert compiled.input_shape == (1, 3, 32, 32)
        again = Compiled.from_dict(json.loads(json.dumps(compiled.to_dict())))
        assert again == compiled

    def test_matches_pytorch(
        self, backend: Backend, compiled: Compiled, images: np.ndarray, reference_logits: np.ndarray
    ) -> None:
        runner = backend.load_runner(Compiled.from_dict(compiled.to_dict()), threads=1)
        candidate = f"{self.backend_name}-{self.precision}"
        result = compare(
            reference_logits, runner(images), reference="pytorch", candidate=candidate, tolerance=self.tolerance
        )
        assert result.passed, result.failures
        assert result.num_images == len(images)

    def test_tolerance_rejects_a_different_model(
        self, backend: Backend, compiled: Compiled, images: np.ndarray, other_logits: np.ndarray
    ) -> None:
        """The tolerance is tight enough to fail: another random ViT must not pass as this one."""
        runner = backend.load_runner(compiled, threads=1)
        result = compare(other_logits, runner(images), reference="other", candidate="c", tolerance=self.tolerance)
        assert not result.passed
