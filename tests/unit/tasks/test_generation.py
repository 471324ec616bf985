"""GSM8K generation: answer extraction by hand, exact match on real SmolLM2 generations against
lm-eval's own gsm8k filters and metric, CIs, answer agreement, the paired comparison, prompts and
spec errors."""
from __future__ import annotations

import pytest

from kdbench.errors import KdbenchError
from kdbench.metrics.answers import extract_answer, gold_answer, normalize_number, numbers
from kdbench.tasks import get_task
from kdbench.tasks.generation import PromptSpec


@pytest.mark.parametrize("text, expected", [
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72"),
    ("#### 1,200", "1200"),                                   # thousands comma
    ("She pays $1,234.50 in total.", "1234.5"),               # $, comma, trailing decimal zero
    ("The answer is $18.", "18"),                             # sentence period is not a decimal point
    ("It was -5 degrees, so the answer is -5", "-5"),         # negative
    ("The temperature fell to −7", "-7"),                    # Unicode minus
    ("So 12-3=9 apples remain", "9"),                         # subtraction is not a negative number
    ("The answer is 18.0 dollars", "18"),
    ("0.50 of the cake", "0.5"),
    ("The answer is: 180\nQuestion: what is 5?", "180"),       # 'the answer is' beats the last number
    ("#### 6\nThe answer is: 6", "6"),
    ("First 5, then #### 12 and later 99", "12"),              # the number right after ####
    ("The answer is 3 apples. Then 4 + 4 = 8", "3"),
    ("we counted 1,2,3", "3"),                                 # a list, not a thousands group
    ("no number here", None),
    ("", None),
])
def test_extract_answer_by_hand(text, expected):
    assert extract_answer(text) == expected


def test_normalize_and_gold():
    assert normalize_number("$1,000") == "1000"
    assert normalize_number("-0.0") == "0"
    assert normalize_number("007") == "7"
    assert normalize_number("3.14159") == "3.14159"
    assert normalize_number("abc") is None
    assert numbers("2 apples and 3.5 pears cost $4,000") == ["2", "3.5", "4000"]
    assert gold_answer("He has 5 <<2+3=5>> apples.\n#### 5") == "5"
    assert gold_answer("no marker 5") is None


def test_every_gsm8k_test_solution_has_a_gold_answer(data_dir):
    task = get_task("gsm8k")
    data = task.eval_data(None)
    assert len(data.gold) == 1319 and all(g is not None for g in data.gold)
    assert data.gold[:3] == ["18", "3", "70000"]


def test_fewshot_prompt_draws_fixed_shots_from_train(data_dir):
    base = get_task("gsm8k")
    spec = base.spec.model_copy(update={"prompt": PromptSpec(style="fewshot", shots=3, shot_seed=7)})
    task = type(base)(spec)
    first, again = task.eval_data(2), task.eval_data(2)
    assert len(first.shots) == 3 and first.shots == again.shots
    assert task.dataset_record(first)["shots"]["ids"] == first.shot_ids
    prompt = task.prompt(None, first.questions[0], first.shots)
    assert prompt.startswith(f"Question: {first.shots[0][0]}\nAnswer: {first.shots[0][1]}\n\n")
    assert prompt.endswith(f"Question: {first.questions[0]}\nAnswer:")
    train = task.train_data(3, seed=0)
    assert task.training_texts(train) == [(f"Question: {q}\nAnswer:", f" {a}") for q, a in zip(train.questions, train.solutions)]


def test_spec_errors(tmp_path):
    from kdbench.tasks.registry import load_spec

    good = (get_task("gsm8k").spec.model_dump(mode="json"))
    import yaml

    for change, needle in [({"metrics": ["accuracy"]}, "unknown generation metric"),
                           ({"pair_metrics": ["kl"]}, "unknown generation pair metric"),
                           ({"prompt": {"style": "chat", "user": "no placeholder"}}, "{question}")]:
        path = tmp_path / "t.yaml"
        path.write_text(yaml.safe_dump({**good, **change}))
        with pytest.raises(KdbenchError, match="prompt|metric") as err:
            load_spec(path)
        assert needle in str(err.value)
