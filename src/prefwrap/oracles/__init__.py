"""Oracles answer preference queries: synthetic (true reward), file-based, or a human in a window."""

from prefwrap.oracles.base import Oracle
from prefwrap.oracles.synthetic import SyntheticOracle

__all__ = ["Oracle", "SyntheticOracle"]
