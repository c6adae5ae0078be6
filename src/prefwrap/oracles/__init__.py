"""Oracles answer preference queries: synthetic (true reward), file-based, or a human in a window.

Any object with ``label(queries) -> answers`` is an oracle (see :class:`~prefwrap.oracles.base.Oracle`).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FileOracle": "prefwrap.oracles.file",
    "HumanOracle": "prefwrap.oracles.human",
    "Oracle": "prefwrap.oracles.base",
    "SyntheticOracle": "prefwrap.oracles.synthetic",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'prefwrap.oracles' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
