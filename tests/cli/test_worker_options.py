"""`tunelab worker` refuses intervals that would make it spin, at once, before it opens the registry."""

from __future__ import annotations

import time

import pytest

from tests.helpers import invoke


@pytest.mark.parametrize(("option", "value"), [("--heartbeat", "0"), ("--heartbeat", "-1"), ("--poll", "0"),
                                               ("--stale-after", "0")])
def test_an_interval_that_is_not_positive_is_refused_at_once(tmp_path, option, value):
    started = time.perf_counter()
    result = invoke(tmp_path / "home", "worker", "--until-empty", option, value)
    assert time.perf_counter() - started < 5
    assert result.exit_code == 2
    refusal = f"Error: Invalid value for '{option}': {float(value)} is not in the range x>0."
    assert result.output.splitlines()[-1] == refusal
    assert not (tmp_path / "home").exists()
