"""GSM8K generation: answer extraction by hand, exact match on real SmolLM2 generations against
lm-eval's own gsm8k filters and metric, CIs, answer agreement, the paired comparison, prompts and
spec errors."""
from __future__ import annotations

import numpy as np
import pytest

from kdbench.metrics.answers import extract_answer, gold_answer
from kdbench.predictions.generation import GenerationPredictions
from tests.helpers.generation import SETTINGS
from tests.helpers import generation as shared

# fixtures shared with tests/unit/tasks/test_generation.py (pytest finds them as attributes of this module)
real = shared.real


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
