"""Lazy attribute access for package namespaces (PEP 562).

Importing :mod:`linrfm` stays cheap: torch, dask and the estimators' modules
load only when one of their names is used.
"""
from __future__ import annotations

import importlib


def lazy_getattr(package: str, names: dict[str, str]):
    """Build a module ``__getattr__`` that imports ``names[attr]`` on first use."""

    def __getattr__(attr):
        try:
            module = names[attr]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}") from None
        return getattr(importlib.import_module(module, package), attr)

    return __getattr__
