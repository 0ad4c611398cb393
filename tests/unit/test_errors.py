"""Every exception class the project defines derives from decay.errors.DecayError, and the
docstring's tree names each of them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import decay
import decay_cli
import decay_kafka
import stream_app
import training
from decay.errors import DecayError

PACKAGES = (decay, decay_kafka, decay_cli, stream_app, training)


def project_exceptions() -> list[type[BaseException]]:
    found = []
    for package in PACKAGES:
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == info.name:
                    found.append(obj)
    return found


def test_every_exception_of_the_project_derives_from_decay_error() -> None:
    found = project_exceptions()
    assert len(found) >= 10
    assert [c.__qualname__ for c in found if not issubclass(c, DecayError)] == []


def test_the_tree_in_the_docstring_names_every_one() -> None:
    import decay.errors

    doc = decay.errors.__doc__ or ""
    missing = {c.__name__ for c in project_exceptions()} - {"DecayError"}
    assert [name for name in sorted(missing) if name not in doc] == []
