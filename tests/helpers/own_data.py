"""Your own data for the tests: real SST-2 rows from the mirror written as a CSV file and as a
folder of JSON Lines files, with task YAMLs naming them and a suite beside them."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

TASK = {"family": "glue", "columns": {"text": "sentence", "label": "label", "id": "idx"},
        "label_names": ["negative", "positive"], "metrics": ["accuracy", "ece"], "main_score": "accuracy",
        "pair_metrics": ["label_loyalty", "probability_loyalty"]}


def mirror_rows(data_dir: Path, split: str, n: int) -> list[dict]:
    with open(data_dir / "nyu-mll/glue/sst2" / f"{split}.jsonl") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_folder(root: Path, data_dir: Path, train_rows: int = 160, eval_rows: int = 64) -> Path:
    """``root/`` with ``reviews.csv`` (train rows then evaluation rows: one file, split by slices),
    ``jsonl/{train,validation}.jsonl``, task files ``my_csv.yaml`` and ``my_jsonl.yaml``, and the
    suite ``own.yaml`` (both tasks, a tiny budget) in the same folder."""
    root.mkdir(parents=True, exist_ok=True)
    train, dev = mirror_rows(data_dir, "train", train_rows), mirror_rows(data_dir, "validation", eval_rows)
    write_csv(root / "reviews.csv", train + dev)
    (root / "jsonl").mkdir(exist_ok=True)
    write_jsonl(root / "jsonl/train.jsonl", train)
    write_jsonl(root / "jsonl/validation.jsonl", dev)
    write_task(root / "my_csv.yaml", {"name": "my_csv", "dataset": {
        "path": "reviews.csv", "train_split": f"train[:{train_rows}]", "eval_split": f"train[{train_rows}:]"}})
    write_task(root / "my_jsonl.yaml", {"name": "my_jsonl", "dataset": {"path": "jsonl"}})
    (root / "own.yaml").write_text(yaml.safe_dump({
        "name": "own", "tasks": ["my_csv", "my_jsonl"], "max_length": 32,
        "data": {"train_rows": None, "eval_rows": None},
        "teacher": {"model": "sentence-transformers/all-MiniLM-L6-v2", "finetune": {"epochs": 1, "lr": 1e-4}},
        "student": {"layers": [0, 5]},
        "distill": {"epochs": 1, "temperature": 4.0, "alpha": 0.9, "lr": 2e-4, "batch_size": 16},
        "eval": {"bootstrap_samples": 200, "efficiency": False},
    }))
    return root


def write_task(path: Path, fields: dict) -> Path:
    path.write_text(yaml.safe_dump({**TASK, **fields}))
    return path


@pytest.fixture
def own(tmp_path, data_dir):
    return make_folder(tmp_path / "own", data_dir)
