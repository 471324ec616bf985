"""Your own data (``dataset.path``: a CSV / JSON Lines / Parquet file or a folder, ``data_files``
per split), pinned hub revisions, and task and suite files side by side; the mirror is set
throughout (conftest), and a local path is read locally all the same."""
from __future__ import annotations

import pandas as pd
import pytest

from tests.helpers import own_data as shared
from tests.helpers.cli import run_kdbench
from tests.helpers.own_data import make_folder, mirror_rows, write_jsonl, write_task

# fixtures shared with tests/unit/data/test_own_data.py (pytest finds them as attributes of this module)
own = shared.own


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdbench: error:"), proc.stderr
    return lines[0]


def test_cli_bad_own_data_is_one_line_exit_2_before_any_training(own, tmp_path):
    reports = tmp_path / "reports"
    (own / "empty.jsonl").write_text("")
    write_jsonl(own / "nolabel.jsonl", [{"sentence": "a fine film", "idx": 0}])
    for task, expected in (({"path": "empty.jsonl"}, "empty file"),
                           ({"path": "nolabel.jsonl"}, "split 'train': no column 'label'"),
                           ({"path": "gone.csv"}, "no such file or folder")):
        write_task(own / "my_csv.yaml", {"name": "my_csv", "dataset": {**task, "train_split": "train"}})
        proc = run_kdbench("train-and-eval", "--suite", own / "own.yaml", "--include-path", own,
                           "--reports-dir", reports, "--leaderboard-dir", tmp_path / "lb")
        assert expected in _one_line_error(proc)
        assert not reports.exists() or not any(reports.iterdir())


@pytest.mark.slow
def test_a_csv_task_and_a_jsonl_folder_task_run_end_to_end_with_the_mirror_set(tmp_path, data_dir):
    from huggingface_hub import ModelCard

    from kdbench.report.record import read_record

    own = make_folder(tmp_path / "own", data_dir)
    proc = run_kdbench("train-and-eval", "--suite", own / "own.yaml", "--include-path", own, "--reports-dir",
                       tmp_path / "reports", "--leaderboard-dir", tmp_path / "lb",
                       env={"KDBENCH_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "reports").iterdir()
    record = read_record(run)
    csv, jsonl = record["datasets"]["my_csv"], record["datasets"]["my_jsonl"]
    assert (csv["source"], csv["split"], csv["rows"]) == (str(own / "reviews.csv"), "train[160:]", 64)
    assert (jsonl["source"], jsonl["split"], jsonl["rows"]) == (str(own / "jsonl"), "validation", 64)
    assert csv["sha256"] == jsonl["sha256"]  # the same 64 SST-2 sentences, whichever file they came from
    assert csv["train"]["rows"] == jsonl["train"]["rows"] == 160
    samples = pd.read_parquet(run / "samples.parquet")
    dev_ids = [str(r["idx"]) for r in mirror_rows(data_dir, "validation", 64)]
    for task in ("my_csv", "my_jsonl"):
        assert set(record["results"][task]) == {"teacher", "student", "baseline"}
        assert sorted(samples[(samples.task == task) & (samples.role == "student")].example_id) == sorted(dev_ids)
        card = ModelCard.load(run / "models" / task / "student" / "README.md")
        assert card.data.datasets is None and card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
        assert card.data.eval_results[0].dataset_type == task and card.data.eval_results[0].dataset_split == \
            record["datasets"][task]["split"]
