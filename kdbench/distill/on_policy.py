"""On-policy and mixed KD for causal LMs (Agarwal et al. 2024, "On-Policy Distillation of Language
Models: Learning from Self-Generated Mistakes" (GKD); TRL's ``GKDTrainer``).

Off-policy KD scores the student on fixed texts (gold solutions, or the teacher's answers), which
are not what the student produces at inference: its own mistakes are never corrected (exposure
bias). On-policy KD trains on the student's own samples instead: for a share λ of the micro-batches
the student samples a continuation y ~ q_θ(· | x) of each training prompt x (no gradient through
the sampling), the teacher scores the same tokens online, and the token loss of the zoo is taken on
the sampled tokens:

    L_on(θ) = E_{x, y ~ q_θ(·|x)} [ mean_t D(p_teacher(· | x, y_<t), q_θ(· | x, y_<t); T) ]

λ = 0 is off-policy KD (this module is then not used), λ = 1 fully on-policy, in between GKD's
mixture. An on-policy batch has no gold tokens, so its loss is α · D alone: the KD term keeps the
weight it has on an off-policy batch (α · D + (1 − α) · CE).

Which micro-batches are on-policy is fixed in advance: micro-batch m (counted over the whole run)
is on-policy when ⌊(m + 1)λ⌋ > ⌊mλ⌋, so exactly ⌊Mλ⌋ of M micro-batches are, spread evenly (GKD
and TRL flip a coin per batch instead). Sampling uses a generator seeded from (seed, process, m),
inside ``torch.random.fork_rng``: it never moves the training RNG, and a run resumed from a
checkpoint samples the same tokens as an uninterrupted one.

A prompt is what comes before the first scored token of a training example (a reasoning task's
chat prompt); a plain text (language modelling, nothing before its first token but the start token)
is prompted with its first ``prompt_tokens`` tokens.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from transformers import GenerationConfig

from kdbench.backends.hf import autocast
from kdbench.config import OnPolicyConfig
from kdbench.distill.trainer import register_step_hook
from kdbench.errors import KdbenchError


def prompts_of(features: Sequence[dict], loss_masks: Sequence[Sequence[int]], prompt_tokens: int) -> list[list[int]]:
    """Each training example's prompt token ids: the tokens before its first scored one; for a plain
    text (only the start token before it) the start token and the text's first ``prompt_tokens``."""
    out = []
    for feature, mask in zip(features, loss_masks):
        ids = list(feature["input_ids"])
        first = next((i for i, m in enumerate(mask) if m), len(ids))
        out.append(ids[: 1 + prompt_tokens] if first <= 1 else ids[:first])
    return out


def is_on_policy(micro: int, fraction: float) -> bool:
    """Micro-batch ``micro`` is on-policy: ⌊(m + 1)λ⌋ > ⌊mλ⌋ (exactly ⌊Mλ⌋ of the first M are)."""
    return math.floor((micro + 1) * fraction) > math.floor(micro * fraction)


def sampling_seed(seed: int, rank: int, micro: int) -> int:
    """The seed of one micro-batch's sampling, a function of the run's seed, process and micro-batch only."""
    return int(np.random.SeedSequence([seed, rank, micro]).generate_state(1)[0])


class OnPolicy:
    """The trainer's ``batch_fn`` for on-policy KD: on the micro-batches :func:`is_on_policy` picks,
    the student samples a continuation of each example's prompt and the batch becomes prompt +
    sample, right-padded, with ``loss_mask`` marking the sampled tokens (up to and including the
    first end-of-sequence token); the other micro-batches pass through unchanged. It is also a step
    hook of the training, so its counts survive a resume."""

    def __init__(self, cfg: OnPolicyConfig, prompts: Sequence[list[int]], *, pad_id: int, eos_ids: Sequence[int],
                 max_length: int, seed: int, dtype: str, rank: int = 0):
        if cfg.max_new_tokens >= max_length:
            raise KdbenchError(f"distill.on_policy.max_new_tokens {cfg.max_new_tokens} leaves no room for the prompt "
                               f"in max_length {max_length}")
        self.cfg, self.prompts, self.pad_id, self.eos_ids = cfg, [list(p) for p in prompts], pad_id, list(eos_ids)
        self.room, self.seed, self.dtype, self.rank = max_length - cfg.max_new_tokens, seed, dtype, rank
        self.batches = self.tokens = 0
        sample = cfg.temperature > 0
        self.generation = GenerationConfig(
            max_new_tokens=cfg.max_new_tokens, do_sample=sample, num_beams=1, eos_token_id=self.eos_ids,
            pad_token_id=pad_id, **({"temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": 0} if sample else {}))

    # step hook: the counts for the record ----------------------------------------------------------
    def start(self, total_steps: int) -> None:
        self.batches = self.tokens = 0

    def after_step(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {"batches": self.batches, "tokens": self.tokens}

    def load_state_dict(self, state: dict) -> None:
        self.batches, self.tokens = int(state["batches"]), int(state["tokens"])

    def record(self) -> dict:
        """The run record's ``on_policy`` entry: the settings and what was sampled."""
        return {**self.cfg.model_dump(), "on_policy_batches": self.batches, "sampled_tokens": self.tokens,
                "schedule": "micro-batch m is on-policy when floor((m+1)λ) > floor(mλ)"}

    # the batch function ---------------------------------------------------------------------------
    def __call__(self, model: torch.nn.Module, idx: np.ndarray, batch: dict[str, torch.Tensor], micro: int) -> dict:
        register_step_hook(self)
        if not is_on_policy(micro, self.cfg.fraction):
            return batch
        prompts = [self.prompts[i][-self.room:] for i in idx]
        samples = self.sample(model, prompts, sampling_seed(self.seed, self.rank, micro))
        self.batches += 1
        self.tokens += sum(len(s) for s in samples)
        return _right_padded(prompts, samples, self.pad_id, model.device)

    def sample(self, model: torch.nn.Module, prompts: list[list[int]], seed: int) -> list[list[int]]:
        """One continuation per prompt (left-padded batch, ``model.generate``), cut after the first
        end-of-sequence token; the training RNG is left as it was."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, width - len(p):] = torch.as_tensor(p)
            mask[row, width - len(p):] = 1
        device = model.device
        cuda = [device.index or 0] if device.type == "cuda" else []
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=cuda), torch.no_grad(), autocast(self.dtype, device):
                torch.manual_seed(seed)
                out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     generation_config=self.generation)
        finally:
            model.train(was_training)
        new = out[:, width:].cpu().tolist()
        return [_until_eos(row, self.eos_ids) for row in new]


def _until_eos(tokens: list[int], eos_ids: Sequence[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return tokens[: i + 1]
    return tokens


def _right_padded(prompts: list[list[int]], samples: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    rows = [p + s for p, s in zip(prompts, samples)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    loss_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (p, s) in enumerate(zip(prompts, samples)):
        ids[row, : len(p) + len(s)] = torch.as_tensor(p + s)
        attention[row, : len(p) + len(s)] = 1
        loss_mask[row, len(p): len(p) + len(s)] = 1
    return {"input_ids": ids.to(device), "attention_mask": attention.to(device), "loss_mask": loss_mask.to(device)}
