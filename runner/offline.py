"""Whether hub access is off: the one reading of the Hugging Face offline switches.

huggingface_hub downloads nothing under HF_HUB_OFFLINE; datasets also honours HF_DATASETS_OFFLINE. Both take
1/true/yes/on, as those libraries read them.
"""

from __future__ import annotations

from collections.abc import Mapping

MODELS_OFFLINE = ("HF_HUB_OFFLINE",)
DATASETS_OFFLINE = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}


def hub_offline(environ: Mapping[str, str], *, datasets: bool = False) -> bool:
    """Whether models (or, with `datasets`, datasets) may not be downloaded from the hub."""
    names = DATASETS_OFFLINE if datasets else MODELS_OFFLINE
    return any(environ.get(name, "").strip().lower() in _TRUE for name in names)
