"""Tell someone that a run ended or a search finished: a webhook (a JSON POST) and/or a local command.

Targets come from a spec's [notify] and from the worker's own options. Telling is best effort: a failure to
notify is logged and never changes the run or the search.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import urllib.request
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from tunelab.experiments.schema import NotifySection

log = logging.getLogger(__name__)
WEBHOOK_TIMEOUT_SECONDS = 10.0
COMMAND_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Event:
    """What is told: a run's end or a search's, with the command that shows it."""

    event: str  # "run" | "search"
    id: int
    name: str
    status: str  # a run's final status, or "finished" for a search
    objective: dict[str, Any] | None = None  # {"name", "value"} where there is one
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def show(self) -> str:
        return f"tunelab show {self.id}" if self.event == "run" else f"tunelab search show {self.id}"

    @property
    def kind(self) -> str:
        """The [notify] events entry that selects it."""
        return "search" if self.event == "search" else self.status

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "show": self.show}


def targets_of(resolved_spec: dict[str, Any], extra: NotifySection | None) -> list[NotifySection]:
    """The spec's [notify] (when it has one) and the worker's own."""
    found = []
    if resolved_spec.get("notify"):
        try:
            found.append(NotifySection.model_validate(resolved_spec["notify"]))
        except ValueError:
            log.warning("ignoring an invalid [notify] table")
    if extra is not None:
        found.append(extra)
    return found


def notify(targets: Iterable[NotifySection], event: Event) -> int:
    """Tell every target that wants this kind of event; how many were told without an error."""
    told = 0
    for target in targets:
        if event.kind not in target.events:
            continue
        body = json.dumps(event.to_json(), sort_keys=True)
        if target.webhook and _post(target.webhook, body):
            told += 1
        if target.command and _run(target.command, body, event):
            told += 1
    return told


def _post(url: str, body: str) -> bool:
    request = urllib.request.Request(url, data=body.encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "tunelab"})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            response.read()
        return True
    except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors
        log.warning("notification to %s failed: %s", url, exc)
        return False


def _run(command: str, body: str, event: Event) -> bool:
    env = {**os.environ, "TUNELAB_EVENT": event.event, "TUNELAB_ID": str(event.id), "TUNELAB_STATUS": event.status}
    try:
        done = subprocess.run(shlex.split(command), input=body, text=True, env=env, capture_output=True,
                              timeout=COMMAND_TIMEOUT_SECONDS, check=False)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        log.warning("notification command %r failed: %s", command, exc)
        return False
    if done.returncode != 0:
        log.warning("notification command %r exited %s: %s", command, done.returncode, done.stderr.strip()[-500:])
        return False
    return True
