"""The one table of names agrees with the registries that dispatch on it."""

from __future__ import annotations

from learngene_deploy import names
from learngene_deploy.backends import list_backends
from learngene_deploy.learngene.io import generator_class


def test_every_backend_name_has_an_implementation() -> None:
    assert tuple(names.BACKEND_CLASSES) == names.BACKENDS
    assert list_backends() == sorted(names.BACKENDS)


def test_every_method_name_has_a_generator() -> None:
    assert tuple(names.METHOD_MODULES) == names.METHODS
    assert [generator_class(m).method for m in names.METHODS] == list(names.METHODS)
