"""The teacher the model-card tests name and the checks every card must pass."""
from __future__ import annotations

from huggingface_hub import EvalResult, ModelCard
from huggingface_hub.repocard_data import eval_results_to_model_index

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
