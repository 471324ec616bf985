import json

import pytest

from kdbench.data import DatasetSpec, load_split
from kdbench.errors import KdbenchError


def test_mirror_split_has_hub_columns_and_all_rows(data_dir):
    split = load_split(DatasetSpec("nyu-mll/glue", "sst2", "validation"))
    assert split.rows.column_names == ["sentence", "label", "idx"]
    assert len(split.rows) == 872
    first = json.loads((data_dir / "nyu-mll/glue/sst2/validation.jsonl").read_text().splitlines()[0])
    assert split.rows[0] == first
    assert split.source.endswith("nyu-mll/glue/sst2/validation.jsonl")


def test_shuffled_slice_is_seeded_and_hashed_by_content(data_dir):
    a = load_split(DatasetSpec("nyu-mll/glue", "sst2", "train"), rows=300, shuffle_seed=1)
    b = load_split(DatasetSpec("nyu-mll/glue", "sst2", "train"), rows=300, shuffle_seed=1)
    c = load_split(DatasetSpec("nyu-mll/glue", "sst2", "train"), rows=300, shuffle_seed=2)
    assert len(a.rows) == 300
    assert a.rows["idx"] == b.rows["idx"] and a.rows["idx"] != c.rows["idx"]
    assert a.sha256() == b.sha256() != c.sha256()
    assert len(a.sha256()) == 64


def test_missing_split_names_the_split_and_what_exists(data_dir):
    with pytest.raises(KdbenchError, match=r"no split 'test'.*found: train, validation"):
        load_split(DatasetSpec("nyu-mll/glue", "sst2", "test"))


def test_missing_dataset_folder_names_it(data_dir):
    with pytest.raises(KdbenchError, match=r"nyu-mll/glue \(config mnli\): no folder"):
        load_split(DatasetSpec("nyu-mll/glue", "mnli", "validation_matched"))


def test_mirror_parquet_is_read_too(tmp_path, monkeypatch):
    import pandas as pd

    folder = tmp_path / "org/set/default"
    folder.mkdir(parents=True)
    pd.DataFrame({"text": ["a", "b"], "label": [0, 1]}).to_parquet(folder / "train.parquet")
    monkeypatch.setenv("KDBENCH_DATA_DIR", str(tmp_path))
    split = load_split(DatasetSpec("org/set", None, "train"))
    assert split.rows["text"] == ["a", "b"]
