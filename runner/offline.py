"""Whether hub access is off (the one reading of the Hugging Face offline switches), and whether the hub can be
reached at all.

huggingface_hub downloads nothing under HF_HUB_OFFLINE; datasets also honours HF_DATASETS_OFFLINE. Both take
1/true/yes/on, as those libraries read them.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

MODELS_OFFLINE = ("HF_HUB_OFFLINE",)
DATASETS_OFFLINE = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}


def hub_offline(environ: Mapping[str, str], *, datasets: bool = False) -> bool:
    """Whether models (or, with `datasets`, datasets) may not be downloaded from the hub."""
    names = DATASETS_OFFLINE if datasets else MODELS_OFFLINE
    return any(environ.get(name, "").strip().lower() in _TRUE for name in names)


# ---------------------------------------------------------------- whether the hub can be reached

HUB_ENDPOINT = "https://huggingface.co"
# Long enough for a hub across an ocean, short enough that no one waits for a hub that is not there.
PROBE_TIMEOUT_S = 3.0
_PROBE_TTL_S = 30.0  # a worker that lives for days asks again: the network may be back
_probes: dict[tuple[str, int], tuple[float, str | None]] = {}


def hub_unreachable(environ: Mapping[str, str] = os.environ, *, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the hub (HF_ENDPOINT, or its proxy) cannot be reached, in a few words; None when it answers.

    One TCP connection, no retries: huggingface_hub itself retries an unreachable hub for about a minute per
    file before it gives up, which is what this spares a run and `tunelab doctor`.
    """
    endpoint = urlsplit(environ.get("HF_ENDPOINT") or HUB_ENDPOINT)
    scheme = endpoint.scheme or "https"
    proxy = _proxy_for(scheme, environ)
    target = urlsplit(proxy) if proxy else endpoint
    host = target.hostname or ""
    port = target.port or (443 if (target.scheme or scheme) == "https" else 80)
    now = time.monotonic()
    known = _probes.get((host, port))
    if known is not None and now - known[0] < _PROBE_TTL_S:
        return known[1]
    via = f" (the proxy for {endpoint.hostname})" if proxy else ""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            reason = None
    except socket.gaierror as exc:
        reason = f"cannot resolve {host}{via}: {exc.strerror}"
    except TimeoutError:
        reason = f"no answer from {host}:{port}{via} in {timeout:g} s"
    except OSError as exc:
        reason = f"cannot connect to {host}:{port}{via}: {exc.strerror or exc}"
    _probes[(host, port)] = (now, reason)
    return reason


def unreachable_hub_remedy(what: str) -> str:
    """What to do when `what` (a model or dataset) must come from a hub that cannot be reached."""
    return (f"{what} must come from the hub; with no network, set HF_HUB_OFFLINE=1 and put it in the hub cache "
            "beforehand, or name a local path instead")


def _proxy_for(scheme: str, environ: Mapping[str, str]) -> str | None:
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        if environ.get(name):
            return environ[name]
    return None
