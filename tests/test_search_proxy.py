"""search.proxy: one proxy training of a search's candidate, as a Ray worker or the inline executor runs it."""

from __future__ import annotations

from pathlib import Path

from mobilenas.search.proxy import ProxySettings, run_proxy_trial
from mobilenas.train.data import load_dataset
from mobilenas.train.proxy import ProxyConfig

from helpers import tiny_arch


def _trial(run_root: Path) -> dict:
    data = load_dataset("synthetic", seed=0, train_size=64, val_size=32, test_size=32, image_size=16)
    settings = ProxySettings(ProxyConfig(steps=2, batch_size=16, threads=1), str(run_root))
    config = {"number": 3, "architecture": tiny_arch().to_dict(), "seed": 3, "weights": "weights/trial-00003.pt"}
    return run_proxy_trial(config, data, settings)


def test_a_trial_keeps_its_weights_in_the_run_folder(tmp_path: Path) -> None:
    outcome = _trial(tmp_path)
    assert outcome["status"] == "ok" and outcome["weights"] == "weights/trial-00003.pt"
    assert (tmp_path / "weights" / "trial-00003.pt").is_file()


def test_a_trial_whose_run_folder_was_deleted_does_not_make_it_again(tmp_path: Path) -> None:
    # A search killed and its folder removed while a Ray worker still trained left a folder holding
    # only weights/trial-N.pt, which looked like a run and was not one.
    gone = tmp_path / "search-deleted"
    outcome = _trial(gone)
    assert outcome["status"] == "ok" and outcome["weights"] == ""
    assert not gone.exists()
