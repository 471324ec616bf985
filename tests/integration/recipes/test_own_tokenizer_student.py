"""A classification student with its own tokenizer (a layer selection of another model than the
teacher): the teacher (MPNet) reads SST-2 through its tokenizer, the student (MiniLM, BERT
vocabulary) through its own, and the saved student loads and predicts with its own tokenizer."""
from __future__ import annotations

import pytest

from kdbench.config import load_suite
from kdbench.distill.run import train_and_eval
from kdbench.models.loading import load_tokenizer
from kdbench.report.record import validate_record
from kdbench.tasks import get_task
from kdbench.tasks.base import RunSettings

TEACHER = "sentence-transformers/all-mpnet-base-v2"
STUDENT_SOURCE = "sentence-transformers/all-MiniLM-L6-v2"
TINY = ["data.train_rows=64", "data.eval_rows=64", "max_length=32", "distill.epochs=1", "teacher.finetune.epochs=1",
        "eval.efficiency=false", "eval.bootstrap_samples=100"]


@pytest.mark.slow
def test_student_with_its_own_tokenizer_trains_saves_and_reloads(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    teacher_tok, student_tok = load_tokenizer(TEACHER), load_tokenizer(STUDENT_SOURCE)
    assert type(teacher_tok).__name__ != type(student_tok).__name__ and len(teacher_tok) != len(student_tok)
    suite = load_suite("quickstart", [f"teacher.model={TEACHER}", f"student.model={STUDENT_SOURCE}",
                                      "student.layers=[0,5]", *TINY])
    result = train_and_eval(suite, reports_dir=tmp_path / "reports", leaderboard_dir=None)
    record = validate_record(result.record)
    student = record["models"]["student"]
    assert student["init_from"] == STUDENT_SOURCE and student["layer_map"] == [0, 5]
    assert student["params"] == record["models"]["baseline"]["params"] < record["models"]["teacher"]["params"]
    assert "student|teacher" in record["pairs"]["sst2"]

    task = get_task("sst2")
    saved = task.load_model(str(result.run_dir / "models" / "sst2" / "student"))
    assert type(saved.tokenizer).__name__ == type(student_tok).__name__
    assert saved.tokenizer("a fine film")["input_ids"] == student_tok("a fine film")["input_ids"]
    assert saved.model.config.model_type == "bert" and saved.model.config.num_hidden_layers == 2
    # the saved student reproduces the run's own accuracy when scored again with its own tokenizer
    settings = RunSettings.of(suite)
    preds = task.predict(saved, task.eval_data(64), "student", settings)
    assert task.score(preds, settings)["accuracy"]["value"] == record["results"]["sst2"]["student"]["accuracy"]["value"]
