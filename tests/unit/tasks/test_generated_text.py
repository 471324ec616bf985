"""Teacher–student metrics on generated text (eval.generated_text, DistillSpec's definitions): the
backend's greedy token ids and its scoring of continuations (checked against a plain forward pass),
the own-text and teacher-text metrics (equal to the full-vocabulary formulas of
kdbench.metrics.loyalty applied by hand to each text alone), one-line errors, and `kdbench eval` on the lm suite.
Real SmolLM2-135M-Instruct teacher and an 8-of-30-layer student, fp32."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kdbench.backends.causal_lm import HFCausalLM
from kdbench.config import EvalConfig, GeneratedTextConfig, load_suite
from kdbench.errors import KdbenchError
from kdbench.metrics.loyalty import lm_token_metrics_per_token
from kdbench.models.loading import load_for_head, load_tokenizer
from kdbench.models.students import layer_selection
from kdbench.predictions.generated import GeneratedText
from kdbench.tasks import generated_text
from kdbench.tasks.base import RunSettings
from tests.helpers import SMOLLM

SETTINGS = RunSettings(dtype="fp32", max_length=256, eval=EvalConfig(bootstrap_samples=200))


@pytest.fixture(scope="module")
def models():
    lm = load_for_head(SMOLLM, "causal_lm").eval()
    return lm, layer_selection(lm, [0, 4, 8, 12, 16, 20, 24, 29]).eval()


@pytest.fixture(scope="module")
def prompts(tok, data_dir):
    from kdbench.data import DatasetSpec, load_split

    rows = load_split(DatasetSpec("openai/gsm8k", "main", "test"), rows=3).rows
    return [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in rows["question"]]


def _log_probs(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)


def test_generations_are_greedy_token_ids_and_their_text(models, tok, prompts):
    teacher, _ = models
    backend = HFCausalLM(teacher, tok, "fp32", batch_size=3, max_length=512)
    outs = backend.generations(prompts, max_new_tokens=12)
    assert [g.text for g in outs] == backend.generate(prompts, max_new_tokens=12)
    for g, prompt in zip(outs, prompts):
        assert g.prompt_ids == backend.encode(prompt)
        ids = torch.tensor([g.prompt_ids])
        with torch.no_grad():  # the same prompt alone, no padding
            alone = teacher.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                     do_sample=False, pad_token_id=2)[0, ids.shape[1]:].tolist()
        assert g.ids == (alone[: alone.index(2) + 1] if 2 in alone else alone)
        assert g.text == tok.decode(g.ids, skip_special_tokens=True)


def test_scoring_two_models_side_by_side_leaves_gradients_on(models, tok, prompts):
    # generated_text.compare zips two continuation generators and never finishes the second: a yield
    # inside its no_grad block left gradients off for the next training in the same process
    teacher, student = models
    target, draft = (HFCausalLM(m, tok, "fp32", batch_size=1, max_length=512) for m in (teacher, student))
    prompt_ids = [target.encode(p) for p in prompts[:2]]
    pairs = zip(target.continuation_log_probs(prompt_ids, [[28, 29], [1536]]),
                draft.continuation_log_probs(prompt_ids, [[28, 29], [1536]]))
    next(pairs)
    assert torch.is_grad_enabled()
    del pairs
    import gc

    gc.collect()  # the unfinished generators close here
    assert torch.is_grad_enabled()


def test_continuation_rows_are_the_models_full_next_token_distributions(models, tok, prompts):
    teacher, _ = models
    backend = HFCausalLM(teacher, tok, "fp32", batch_size=3, max_length=512)
    prompt_ids = [backend.encode(p) for p in prompts]
    continuations = [[28, 29, 30, 31], [1536, 314], []]
    got = dict(backend.continuation_log_probs(prompt_ids, continuations))
    assert set(got) == {0, 1}  # an empty continuation has nothing to score
    for i in (0, 1):
        p, c = prompt_ids[i], continuations[i]
        expected = _log_probs(teacher, p + c)[len(p) - 1: len(p) - 1 + len(c)]  # alone, no padding
        assert got[i].shape == (len(c), 49152)
        torch.testing.assert_close(got[i], expected, atol=2e-4, rtol=0)


def _texts(models, tok, prompts):
    teacher, student = models
    backends = {"teacher": HFCausalLM(teacher, tok, "fp32", batch_size=3, max_length=512),
                "student": HFCausalLM(student, tok, "fp32", batch_size=3, max_length=512)}
    texts = {}
    for role, backend in backends.items():
        outs = backend.generations(prompts, max_new_tokens=16)
        texts[role] = GeneratedText(role, ["0", "1", "2"], [g.prompt_ids for g in outs],
                                    [np.asarray(g.ids) for g in outs])
    return backends, texts


def test_metrics_on_own_and_teacher_text_are_the_exact_token_means(models, tok, prompts):
    """Each value against the full-vocabulary formulas of kdbench.metrics.loyalty applied by hand,
    every text run alone; and the teacher against itself accepts every token."""
    teacher, student = models
    backends, texts = _texts(models, tok, prompts)
    texts["student"].compared["teacher"] = generated_text.compare(backends["teacher"], backends["student"], texts["student"])
    texts["teacher"].compared["student"] = generated_text.compare(backends["teacher"], backends["student"], texts["teacher"])
    got = generated_text.pair_metrics(texts["student"], texts["teacher"], SETTINGS)
    assert set(got) == set(generated_text.metric_names())
    for suffix, text in (("own_text", texts["student"]), ("teacher_text", texts["teacher"])):
        exact = {k: [] for k in ("top1_agreement", "forward_kl", "reverse_kl", "acceptance_rate", "tvd")}
        for p, c in zip(text.prompt_ids, text.tokens):
            c = c.tolist()
            rows = slice(len(p) - 1, len(p) - 1 + len(c))
            per = lm_token_metrics_per_token(_log_probs(teacher, p + c)[rows].numpy(), _log_probs(student, p + c)[rows].numpy())
            for k in exact:
                exact[k].extend(per[k])
        assert got[f"top1_agreement_on_{suffix}"]["value"] == pytest.approx(np.mean(exact["top1_agreement"]))
        for name, key in (("acceptance_rate", "acceptance_rate"), ("tvd", "tvd"), ("kl_teacher_student", "forward_kl"),
                          ("reverse_kl", "reverse_kl")):
            assert got[f"{name}_on_{suffix}"]["value"] == pytest.approx(np.mean(exact[key]), rel=1e-3, abs=1e-5)
        alpha = got[f"acceptance_rate_on_{suffix}"]
        assert alpha["ci"][0] <= alpha["value"] <= alpha["ci"][1]
        assert got[f"expected_tokens_gamma_3_on_{suffix}"]["value"] == pytest.approx(
            (1 - alpha["value"] ** 4) / (1 - alpha["value"]))
    # a student differs from the teacher on every kind of text; the teacher against itself accepts all
    assert got["acceptance_rate_on_own_text"]["value"] < 0.9
    same = generated_text.compare(backends["teacher"], backends["teacher"], texts["teacher"])
    assert np.allclose(np.concatenate(same["acceptance_rate"]), 1.0) and np.allclose(np.concatenate(same["forward_kl"]), 0.0)


def test_models_that_tokenise_differently_are_refused_in_one_line(tok):
    other = load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
    text = GeneratedText("x", ["0"], [[1]], [np.array([5])])
    models = {"teacher": SimpleNamespace(tokenizer=tok, source=SMOLLM),
              "student": SimpleNamespace(tokenizer=other, source="all-MiniLM-L6-v2")}
    predictions = {"teacher": SimpleNamespace(generated=text), "student": SimpleNamespace(generated=text)}
    task = SimpleNamespace(name="gsm8k_text")
    with pytest.raises(KdbenchError, match="student .* and teacher .* tokenise differently") as e:
        generated_text.cross_score(task, models, predictions, ["teacher"], SETTINGS)
    assert "\n" not in str(e.value)


def test_bad_generated_text_values_are_one_line_errors():
    for value, key in (("eval.generated_text.rows=0", "rows"), ("eval.generated_text.max_new_tokens=-3", "max_new_tokens")):
        with pytest.raises(KdbenchError, match=f"eval.generated_text.{key}"):
            load_suite("lm", [value])
    assert GeneratedTextConfig().rows == 32
