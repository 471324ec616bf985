"""Several seeds in one run: the recipe once per seed, mean ± std over seeds in the record."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kdbench.report.record import validate_record
from tests.helpers.cli import TINY, run_kdbench


@pytest.mark.slow
def test_two_seeds_give_seed_results_with_mean_std_and_t_interval(tmp_path, data_dir):
    proc = run_kdbench("train-and-eval", "--suite", "quickstart", "--seeds", "0,1", *TINY,
                       "--reports-dir", tmp_path / "reports", "--leaderboard-dir", tmp_path / "lb",
                       env={"KDBENCH_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = next((tmp_path / "reports").iterdir())
    record = validate_record(json.loads((run_dir / "report.json").read_text()))
    assert record["seeds"] == [0, 1]
    assert (run_dir / "seed-1" / "models" / "sst2" / "student" / "config.json").is_file()
    for role in ("teacher", "student", "baseline"):
        agg = record["seed_results"]["sst2"]["results"][role]["accuracy"]
        first, second = agg["per_seed"]
        assert first == record["results"]["sst2"][role]["accuracy"]["value"]
        assert agg["value"] == pytest.approx((first + second) / 2)
        assert agg["std"] == pytest.approx(np.std([first, second], ddof=1))
        assert agg["n_seeds"] == 2
        if agg["std"] > 0:
            assert agg["ci"][0] < agg["value"] < agg["ci"][1]
    loyalty = record["seed_results"]["sst2"]["pairs"]["student|teacher"]["probability_loyalty"]
    assert loyalty["per_seed"][0] == record["pairs"]["sst2"]["student|teacher"]["probability_loyalty"]["value"]
    # the seeds really differ: the students are trained from different data orders
    assert record["seed_results"]["sst2"]["results"]["student"]["nll"]["std"] > 0
