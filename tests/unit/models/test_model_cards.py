"""Model cards in the Hub's format beside every saved student and baseline, and ``kdbench export``:
parsed offline with ``huggingface_hub.ModelCard`` (its ``ModelCardData`` validates the metadata and
turns the model-index back into ``EvalResult`` objects), compared with the run record they come
from, and an exported folder loaded with ``from_pretrained``."""
from __future__ import annotations

import pytest

from kdbench.models.card import model_card, saved_models
from kdbench.report.record import read_record
from tests.helpers import ROOT
from tests.helpers.model_cards import check_card


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
