"""Every exception the orchestrator defines derives from `OrchestratorError`, so a caller can
catch the whole layer with one except clause."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import orchestrator
from orchestrator.errors import OrchestratorError


def defined_exceptions() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for info in pkgutil.iter_modules(orchestrator.__path__, "orchestrator."):
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found.append(value)
    return found


def test_every_orchestrator_exception_has_one_root() -> None:
    exceptions = defined_exceptions()
    assert len(exceptions) > 10  # the walk found the modules
    assert [e.__qualname__ for e in exceptions if not issubclass(e, OrchestratorError)] == []
