"""SmolLM2 and GSM8K reasoning prompts for the on-policy tests, and the student's sampler."""
import pytest

from kdbench.config import OnPolicyConfig
from kdbench.distill.on_policy import OnPolicy
from kdbench.distill.recipes.causal_lm import encode_pairs

PAD = EOS = 2


@pytest.fixture(scope="module")
def reasoning(tok, data_dir):
    """Four GSM8K train problems as the reasoning task trains on them: chat prompt, gold solution."""
    from kdbench.tasks.registry import get_task

    task = get_task("gsm8k")
    pairs = task.training_texts(task.train_data(4, seed=0), tok)
    return encode_pairs(tok, pairs, max_length=192)


def _sampler(prompts, fraction=1.0, max_new_tokens=12, temperature=1.0, seed=0, **cfg):
    return OnPolicy(OnPolicyConfig(fraction=fraction, max_new_tokens=max_new_tokens, temperature=temperature, **cfg),
                    prompts, pad_id=PAD, eos_ids=[EOS], max_length=192, seed=seed, dtype="fp32")
