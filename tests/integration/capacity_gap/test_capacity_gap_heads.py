"""kdbench capacity-gap beyond classifiers, as real tiny sweeps (slow, each under a minute): token
classification (WNUT-17 NER: entity F1, paired bootstrap over sentences) over a truncated teacher
family, and a causal LM (GSM8K text: perplexity, lower is better, paired bootstrap over documents)
with its teacher as it is and over a truncated teacher family (SmolLM2's first 2 and 4 layers). Retrieval works the same way but encodes the whole 5k-document corpus
per point (minutes), so it is not run here."""
from __future__ import annotations

import json

import pytest

from tests.helpers import SMOLLM
from tests.helpers.capacity_gap import MINILM
from tests.helpers.cli import run_kdbench

SMALL = ["--set", "distill.epochs=1", "--set", "eval.efficiency=false", "--set", "eval.bootstrap_samples=200",
         "--seeds", "0,1", "--jobs", "2"]


def _sweep(tmp_path, *args) -> dict:
    out = run_kdbench("capacity-gap", *args, *SMALL, "--reports-dir", tmp_path / "reports",
                      "--leaderboard-dir", tmp_path / "lb", env={"KDBENCH_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "reports").glob("capacity-gap-*")
    for name in ("report.html", "report.json", "capacity_gap.json"):
        assert (sweep_dir / name).stat().st_size > 0
    return json.loads((sweep_dir / "capacity_gap.json").read_text())


def _consistent(c: dict, test: str) -> None:
    """Every point has a seed-pooled CI around its mean; every verdict follows from its tests."""
    for p in c["points"]:
        assert p["n_seeds"] == 2 and p["ci"][0] <= p["value"] <= p["ci"][1]
    for s in c["students"]:
        b = s["baseline_test"]
        assert b["test"] == test and s["baseline"] is not None
        better = b["delta"] > 0 if c["higher_is_better"] else b["delta"] < 0
        assert s["no_teacher_helps"] is (not (b["p_value"] < 0.05 and better))
        assert s["best_teacher"] == (None if s["no_teacher_helps"] else s["top_teacher"])


@pytest.mark.slow
def test_ner_sweep(tmp_path):
    curve = _sweep(tmp_path, "--suite", "ner", "--teacher-layers", f"{MINILM}:1,2", "--student", "config:num_hidden_layers=1",
                   "--set", "data.train_rows=64", "--set", "data.eval_rows=64", "--set", "teacher.finetune.epochs=1",
                   "--set", "max_length=32")
    c = curve["tasks"]["wnut_17"]
    assert c["metric"] == "f1" and c["higher_is_better"] and len(c["points"]) == 2
    _consistent(c, "paired bootstrap over sentences")
    assert c["students"][0]["comparisons"][0]["test"] == "paired bootstrap over sentences"


@pytest.mark.slow
def test_causal_lm_sweep(tmp_path):
    curve = _sweep(tmp_path, "--suite", "lm", "--teachers", "HuggingFaceTB/SmolLM2-135M-Instruct",
                   "--student", "config:num_hidden_layers=1", "--set", "data.train_rows=16", "--set", "data.eval_rows=8",
                   "--set", "max_length=64")
    c = curve["tasks"]["gsm8k_text"]
    assert c["metric"] == "perplexity" and c["higher_is_better"] is False
    (s,) = c["students"]
    assert s["best_tier"] == [s["top_teacher"]] and s["comparisons"] == []  # one teacher: nothing to compare
    _consistent(c, "paired bootstrap over documents")
    # one student, and its one teacher is the largest: the fit says it cannot show a law
    assert not c["fit"]["enough_data"] and "a law needs at least 3" in c["fit"]["limits"][0]
    if not s["no_teacher_helps"]:
        assert "the true optimum may lie beyond the range" in c["fit"]["limits"][1]


@pytest.mark.slow
def test_causal_lm_sweep_over_a_truncated_teacher_family(tmp_path):
    """The LM teacher family is SmolLM2 cut to its first K layers, used as it is (no fine-tuning):
    each truncation is written once into the model cache and shared by both seeds."""
    curve = _sweep(tmp_path, "--suite", "lm", "--teacher-layers", f"{SMOLLM}:2,4", "--student", "config:num_hidden_layers=1",
                   "--set", "data.train_rows=16", "--set", "data.eval_rows=8", "--set", "max_length=64")
    c = curve["tasks"]["gsm8k_text"]
    by_teacher = {p["teacher"]: p for p in c["points"]}
    two, four = by_teacher[f"{SMOLLM}@L2"], by_teacher[f"{SMOLLM}@L4"]
    assert two["teacher_params"] < four["teacher_params"] < 135_000_000
    assert two["teacher_value"] != four["teacher_value"]  # two different teachers, each scored as it was distilled from
    sweep_dir = next((tmp_path / "reports").glob("capacity-gap-*"))
    for point in (two, four):
        assert point["teacher_finetuned_once"]  # one truncated model for both seeds
        infos = [json.loads((sweep_dir / r["path"] / "report.json").read_text())["models_by_task"]["gsm8k_text"]["teacher"]
                 for r in point["runs"]]
        assert {i["layers"] for i in infos} == {int(point["teacher"][-1])} and not any(i["finetuned"] for i in infos)
        assert sorted(i["reused_from_cache"] for i in infos) == [False, True]
        config = json.loads((tmp_path / "cache" / "finetuned" / infos[0]["cache_key"] / "config.json").read_text())
        assert config["num_hidden_layers"] == int(point["teacher"][-1])
    _consistent(c, "paired bootstrap over documents")
