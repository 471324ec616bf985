"""Model cards in the Hub's format beside every saved student and baseline, and ``kdbench export``:
parsed offline with ``huggingface_hub.ModelCard`` (its ``ModelCardData`` validates the metadata and
turns the model-index back into ``EvalResult`` objects), compared with the run record they come
from, and an exported folder loaded with ``from_pretrained``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers.cli import run_kdbench
from huggingface_hub import EvalResult, ModelCard
from huggingface_hub.repocard_data import eval_results_to_model_index

from kdbench.models.card import model_card, saved_models
from kdbench.report.record import read_record
from tests.helpers import ROOT

TEACHER = "sentence-transformers/all-MiniLM-L6-v2"


def check_card(text: str, record: dict, task: str, role: str) -> ModelCard:
    """The card parses and validates, and its metadata says what the record says."""
    card = ModelCard(text)  # raises on invalid YAML or an unreadable model-index
    data = card.data
    assert data.library_name == "transformers" and data.tags == ["knowledge-distillation", "kdbench"]
    assert data.base_model == TEACHER
    results = data.eval_results
    assert all(isinstance(r, EvalResult) for r in results)
    assert {r.metric_type: r.metric_value for r in results} == {m: v["value"] for m, v in record["results"][task][role].items()}
    accuracy = next(r for r in results if r.metric_type == "accuracy")
    lo, hi = record["results"][task][role]["accuracy"]["ci"]
    assert accuracy.metric_name == f"accuracy (95% CI [{lo:.4f}, {hi:.4f}])"
    assert accuracy.dataset_split == record["datasets"][task]["split"] and accuracy.task_name == task
    # the model-index round-trips through huggingface_hub's own writer
    assert eval_results_to_model_index(data.model_name, results) == data.to_dict()["model-index"]
    return card


def test_a_card_from_the_shipped_quickstart_record_validates():
    record = read_record(ROOT / "baselines/quickstart.json")
    assert saved_models(record) == [("sst2", "student", "models/sst2/student"), ("sst2", "baseline", "models/sst2/baseline")]
    card = check_card(str(model_card(record, "sst2", "student")), record, "sst2", "student")
    assert card.data.datasets == ["nyu-mll/glue"] and card.data.pipeline_tag == "text-classification"
    text = card.text
    assert "layer map [0, 5]" in text and "forward_kl at temperature T = 4 (T² scaling), α = 0.9" in text
    assert "## What KD bought" in text and "mcnemar_p_value" in text and "## Loyalty to the teacher" in text
    eff = record["efficiency"]
    assert f"{eff['student']['latency_ms_b1']:.2f} ms (teacher {eff['teacher']['latency_ms_b1']:.2f} ms" in text
    baseline = check_card(str(model_card(record, "sst2", "baseline")), record, "sst2", "baseline")
    assert "labels only" in baseline.text and "## What KD bought" in baseline.text


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


def test_push_uploads_the_folder_with_huggingface_hub(tmp_path, monkeypatch):
    """Online, the export goes up through HfApi.create_repo and upload_folder (recorded, not sent)."""
    import huggingface_hub

    from kdbench.models import export

    calls = []
    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder",
                        lambda self, **kw: calls.append(("upload", kw)) or type("C", (), {"repo_url": "https://hf.co/me/m"})())
    assert export.push_to_hub(tmp_path, "me/m", private=True) == "https://hf.co/me/m"
    assert calls == [("create", "me/m", {"repo_type": "model", "private": True, "exist_ok": True}),
                     ("upload", {"repo_id": "me/m", "folder_path": str(tmp_path), "repo_type": "model",
                                 "commit_message": "kdbench export"})]
    with pytest.raises(Exception, match=r"--push-to-hub 'not a repo//id': not a repo id"):
        export.push_to_hub(tmp_path, "not a repo//id")
