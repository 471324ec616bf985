"""Your own data (``dataset.path``: a CSV / JSON Lines / Parquet file or a folder, ``data_files``
per split), pinned hub revisions, and task and suite files side by side; the mirror is set
throughout (conftest), and a local path is read locally all the same."""
from __future__ import annotations

import pandas as pd
import pytest

from kdbench.data import DatasetSpec, load_split
from kdbench.errors import KdbenchError
from kdbench.report import compare
from kdbench.tasks import get_task, list_tasks
from tests.helpers import own_data as shared
from tests.helpers.own_data import mirror_rows, write_jsonl, write_task

# fixtures shared with tests/integration/train_and_eval/test_own_data.py (pytest finds them as attributes of this module)
own = shared.own


def test_a_csv_file_is_one_split_read_locally_with_the_mirror_set(own, data_dir):
    split = load_split(DatasetSpec(None, None, "train", path=str(own / "reviews.csv")))
    assert len(split.rows) == 160 + 64 and split.source == str(own / "reviews.csv")
    assert split.rows[0] == mirror_rows(data_dir, "train", 1)[0]  # the CSV round-trips the mirror's row
    part = load_split(DatasetSpec(None, None, "train[160:]", path=str(own / "reviews.csv")))
    assert part.rows["idx"] == [r["idx"] for r in mirror_rows(data_dir, "validation", 64)]
    assert part.reference()["id"] == str(own / "reviews.csv") and part.reference()["split"] == "train[160:]"


def test_a_jsonl_folder_and_data_files_per_split(own, data_dir):
    dev = load_split(DatasetSpec(None, None, "validation", path=str(own / "jsonl")))
    assert dev.rows["idx"] == [r["idx"] for r in mirror_rows(data_dir, "validation", 64)]
    named = DatasetSpec(None, None, "dev", path=str(own / "jsonl"), data_files={"dev": "validation.jsonl"})
    assert load_split(named).sha256() == dev.sha256()  # the same rows, hashed by content
    pd.DataFrame(mirror_rows(data_dir, "validation", 10)).to_parquet(own / "dev.parquet")
    assert len(load_split(DatasetSpec(None, None, "train", path=str(own / "dev.parquet"))).rows) == 10


def test_task_files_resolve_paths_beside_them_and_a_suite_there_is_not_a_task(own):
    names = {s.name for s in list_tasks([own])}  # own.yaml (a suite) sits in the folder too
    assert {"my_csv", "my_jsonl"} <= names and "own" not in names
    task = get_task("my_csv", [own])
    assert task.spec.dataset.path == str(own / "reviews.csv")
    train = task.train_data(None, seed=0)
    assert len(train.rows) == 160 and task.dataset_record(task.eval_data(None))["rows"] == 64


@pytest.mark.parametrize("dataset, message", [
    ({"path": "nowhere.csv"}, "key 'dataset.path'.*no such file or folder: .*nowhere.csv"),
    ({"id": "a/b", "path": "reviews.csv"}, "dataset.id .* or dataset.path .*, not both"),
    ({}, "give dataset.id"),
    ({"path": "reviews.csv", "revision": "main"}, "a local dataset.path has none"),
    ({"path": "reviews.csv", "data_files": {"train": "x.csv"}}, "dataset.path must be a folder"),
])
def test_bad_dataset_keys_name_the_key(own, dataset, message):
    write_task(own / "bad.yaml", {"name": "bad", "dataset": dataset})
    with pytest.raises(KdbenchError, match=message):
        get_task("bad", [own])


def test_errors_name_the_file_the_split_and_the_column(own):
    (own / "header_only.csv").write_text("sentence,label,idx\n")
    (own / "empty.csv").write_text("")
    write_jsonl(own / "nolabel.jsonl", [{"sentence": "a fine film", "idx": 0}])
    cases = {
        "empty.csv": f"dataset {own / 'empty.csv'}: empty file",
        "header_only.csv": f"dataset {own / 'header_only.csv'}, split 'train': no rows",
        "nolabel.jsonl": f"task t: dataset {own / 'nolabel.jsonl'}, split 'train': no column 'label' "
                         "(columns: sentence, idx)",
    }
    for file, message in cases.items():
        write_task(own / "t.yaml", {"name": "t", "dataset": {"path": file, "train_split": "train"}})
        with pytest.raises(KdbenchError) as e:
            get_task("t", [own]).train_data(None, seed=0)
        assert str(e.value) == message
    write_task(own / "t.yaml", {"name": "t", "dataset": {"path": "reviews.csv"}})
    with pytest.raises(KdbenchError, match=r"reviews.csv, split 'validation': no such split \(found: train; one file"):
        get_task("t", [own]).eval_data(None)


def test_the_mirror_serves_only_the_hub_ids_it_holds(data_dir):
    held = load_split(DatasetSpec("nyu-mll/glue", "sst2", "validation"))
    assert held.source.startswith(str(data_dir))
    with pytest.raises(KdbenchError, match=r"dataset someone/elsewhere/default/train@v1 \(not in KDBENCH_DATA_DIR=.*\): "
                                           r"cannot load .*Hub"):
        load_split(DatasetSpec("someone/elsewhere", None, "train", revision="v1"))  # went to the (offline) hub


def test_a_pinned_revision_is_recorded_and_part_of_comparability(own, data_dir):
    write_task(own / "pinned.yaml", {"name": "pinned", "dataset": {"id": "nyu-mll/glue", "config": "sst2",
                                                                   "revision": "bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c"}})
    task = get_task("pinned", [own])
    entry = task.dataset_record(task.eval_data(8))
    assert entry["revision"] == "bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c" and entry["id"] == "nyu-mll/glue"

    def record(spec):
        return {"config": {"task_specs": {"pinned": spec}}, "datasets": {"pinned": entry}}

    pinned = task.spec.model_dump(mode="json")
    unpinned = {**pinned, "dataset": {**pinned["dataset"], "revision": None}}
    assert "task configuration differs at task.dataset.revision" in compare.reason(record(pinned), record(unpinned), "pinned")
    moved = {**pinned, "dataset": {**pinned["dataset"], "id": None, "path": "/elsewhere/reviews.csv"}}
    same_place = {**moved, "dataset": {**moved["dataset"], "path": "/here/reviews.csv"}}
    assert compare.reason(record(moved), record(same_place), "pinned") is None  # content decides, not the folder
