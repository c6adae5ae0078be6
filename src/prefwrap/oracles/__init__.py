"""Oracles answer preference queries: synthetic (true reward), file-based, or a human in a window.

Any object with ``label(queries) -> answers`` is an oracle (see :class:`~prefwrap.oracles.base.Oracle`).
"""

from __future__ import annotations

import importlib
from typing import Any

from prefwrap import _EXPORTS as _PACKAGE_EXPORTS

_EXPORTS = {name: module for name, module in _PACKAGE_EXPORTS.items() if module.startswith(__name__ + ".")}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'prefwrap.oracles' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
