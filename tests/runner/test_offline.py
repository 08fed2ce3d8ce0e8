"""The Hugging Face offline switches are read in one place (runner/offline.py), as the hub libraries read them."""

from __future__ import annotations

from tunelab.runner.offline import hub_offline


def test_hub_access_is_off_for_models_by_the_hub_switch_and_for_datasets_by_either():
    assert hub_offline({"HF_HUB_OFFLINE": "1"}) and hub_offline({"HF_HUB_OFFLINE": " Yes "}, datasets=True)
    assert not hub_offline({"HF_DATASETS_OFFLINE": "1"})
    assert hub_offline({"HF_DATASETS_OFFLINE": "on"}, datasets=True)
    assert not hub_offline({"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": ""}, datasets=True)
