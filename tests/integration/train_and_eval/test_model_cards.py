"""Model cards in the Hub's format beside every saved student and baseline, and ``kdbench export``:
parsed offline with ``huggingface_hub.ModelCard`` (its ``ModelCardData`` validates the metadata and
turns the model-index back into ``EvalResult`` objects), compared with the run record they come
from, and an exported folder loaded with ``from_pretrained``."""
from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from kdbench.models.card import saved_models
from kdbench.report.record import read_record
from tests.helpers.cli import run_kdbench
from tests.helpers.model_cards import check_card


@pytest.mark.slow
def test_train_and_eval_writes_cards_next_to_the_saved_models(small_runs):
    run = small_runs["first"]
    record = read_record(run)
    for task, role, folder in saved_models(record):
        card = check_card((run / folder / "README.md").read_text(), record, task, role)
        assert ModelCard.load(run / folder / "README.md").data.to_dict() == card.data.to_dict()
    assert {(t, r) for t, r, _ in saved_models(record)} == {("sst2", "student"), ("sst2", "baseline")}


@pytest.mark.slow
def test_export_makes_a_folder_from_pretrained_loads_and_push_offline_is_one_line(small_runs, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = small_runs["first"]
    out = tmp_path / "exported"
    proc = run_kdbench("export", run.name, "--reports-dir", small_runs["reports"], "--to", out,
                       "--push-to-hub", "someone/minilm-l2-sst2", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"kdbench: error: --push-to-hub someone/minilm-l2-sst2: offline (HF_HUB_OFFLINE=1), the Hub is not reachable; "
        f"the folder {out} is exported; upload it later with `hf upload someone/minilm-l2-sst2 {out}`"]
    assert {"README.md", "report.json", "config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    record = json.loads((out / "report.json").read_text())
    check_card((out / "README.md").read_text(), record, "sst2", "student")
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    saved = AutoModelForSequenceClassification.from_pretrained(run / "models/sst2/student").eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["a gorgeous, witty film", "a dull mess"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert torch.equal(model(**batch).logits, saved(**batch).logits)
    again = run_kdbench("export", run, "--to", out)
    assert again.returncode == 2 and "exists and is not an empty folder" in again.stderr
    missing = run_kdbench("export", run, "--role", "teacher", "--to", tmp_path / "t")
    assert missing.returncode == 2 and "no task has a saved teacher (saved: sst2/student, sst2/baseline)" in missing.stderr
    assert not (tmp_path / "t").exists()
