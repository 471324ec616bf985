"""GSM8K generation: answer extraction by hand, exact match on real SmolLM2 generations against
lm-eval's own gsm8k filters and metric, CIs, answer agreement, the paired comparison, prompts and
spec errors."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from kdbench.config import EvalConfig
from kdbench.errors import KdbenchError
from kdbench.metrics.answers import extract_answer, gold_answer
from kdbench.predictions.generation import GenerationPredictions
from kdbench.tasks import get_task
from kdbench.tasks.base import RunSettings
from kdbench.tasks.generation import GenerationSettings

MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SETTINGS = RunSettings(dtype="bf16", max_length=512, seed=0, eval=EvalConfig(batch_size=8, bootstrap_samples=1000))


# -------------------------------------------------------------------------------------------------
# real generations
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(data_dir):
    """SmolLM2-135M-Instruct on the first 8 GSM8K test questions (chat prompt, 96 new tokens)."""
    base = get_task("gsm8k")
    spec = base.spec.model_copy(update={"generation": GenerationSettings(max_new_tokens=96)})
    task = type(base)(spec)
    data = task.eval_data(8)
    model = task.load_model(MODEL_ID)
    preds = task.predict(model, data, "teacher", SETTINGS)
    return task, data, model, preds


def _lm_eval_exact_match(generations: list[str], solutions: list[str]) -> np.ndarray:
    """lm-eval's gsm8k scoring: strict-match ('#### N') when present, else flexible-extract (the
    last number-like match), then its exact_match with the task's regexes_to_ignore."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    strict = RegexFilter(r"#### (\-?[0-9\.\,]+)", fallback="[invalid]")
    flexible = RegexFilter(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", group_select=-1, fallback="[invalid]")
    ignore = [",", "\\$", "(?s).*#### ", "\\.$"]
    out = []
    for gen, sol in zip(generations, solutions):
        (pred,), = strict.apply([[gen]], [{}])
        if pred == "[invalid]":
            (pred,), = flexible.apply([[gen]], [{}])
        out.append(exact_match_hf_evaluate([pred], [sol], regexes_to_ignore=ignore, ignore_case=True)["exact_match"])
    return np.array(out, dtype=bool)


def test_real_generations_scored_as_lm_eval_scores_them(real):
    task, data, model, preds = real
    assert len(preds.generations) == 8 and all(g.strip() for g in preds.generations)
    assert preds.answers == [extract_answer(g) for g in preds.generations]
    assert preds.gold == [gold_answer(s) for s in data.solutions]
    # our extraction and lm-eval's filters agree on every real generation and on the gold texts
    np.testing.assert_array_equal(preds.correct, _lm_eval_exact_match(preds.generations, data.solutions))
    perfect = GenerationPredictions("gsm8k", "oracle", data.ids, data.solutions,
                                    [extract_answer(s) for s in data.solutions], preds.gold)
    assert _lm_eval_exact_match(data.solutions, data.solutions).all() and perfect.correct.all()
    mixed = GenerationPredictions("gsm8k", "mixed", data.ids, data.solutions[:4] + preds.generations[4:],
                                  [extract_answer(s) for s in data.solutions[:4] + preds.generations[4:]], preds.gold)

    for p in (preds, perfect, mixed):
        scores = task.score(p, SETTINGS)
        expected = _lm_eval_exact_match(p.generations, data.solutions).mean()
        assert scores["exact_match"]["value"] == pytest.approx(expected)
        lo, hi = scores["exact_match"]["ci"]
        assert lo <= scores["exact_match"]["value"] <= hi
        assert scores["extraction_rate"]["value"] == pytest.approx(np.mean([a is not None for a in p.answers]))
    assert task.score(mixed, SETTINGS)["exact_match"]["value"] >= 0.5
    frame = preds.to_frame()
    assert list(frame.columns[:7]) == ["task", "example_id", "role", "label", "pred", "probs", "correct"]
    assert frame["generation"].tolist() == preds.generations
    assert frame["label"].tolist() == preds.gold


def test_generation_matches_backend_and_prompt(real):
    task, data, model, preds = real
    prompt = task.prompt(model.tokenizer, data.questions[0], [])
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    assert data.questions[0] in prompt


def test_answer_agreement_and_compare(real):
    task, data, model, preds = real
    perfect = GenerationPredictions("gsm8k", "student", data.ids, data.solutions,
                                    [extract_answer(s) for s in data.solutions], preds.gold)
    same = task.score_pair(preds, preds, SETTINGS)["answer_agreement"]["value"]
    assert same == pytest.approx(np.mean([a is not None for a in preds.answers]))
    agree = task.score_pair(perfect, preds, SETTINGS)["answer_agreement"]
    expected = np.mean([a is not None and a == g for a, g in zip(preds.answers, preds.gold)])
    assert agree["value"] == pytest.approx(expected)  # agreeing with an oracle = being right
    compared = task.compare(perfect, preds, SETTINGS)
    b = int(np.sum(perfect.correct & ~preds.correct))
    c = int(np.sum(~perfect.correct & preds.correct))
    assert compared["exact_match_difference"]["value"] == pytest.approx(perfect.correct.mean() - preds.correct.mean())
    assert compared["mcnemar_p_value"]["value"] == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0)
    lo, hi = compared["exact_match_difference"]["ci"]
    assert lo <= compared["exact_match_difference"]["value"] <= hi


def test_prompt_too_long_is_an_error(real):
    task, data, model, _ = real
    short = RunSettings(dtype="bf16", max_length=100, seed=0, eval=EvalConfig(batch_size=8))
    with pytest.raises(KdbenchError, match="exceeds max_length 100"):
        task.predict(model, data, "teacher", short)
