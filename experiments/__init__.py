"""The spec language: load TOML experiment specs, validate, resolve and hash them.

Pure Python: no database, no torch.
"""

from experiments.errors import SpecError
from experiments.schema import Spec

__all__ = ["Spec", "SpecError"]
