"""The training loop shared by teacher fine-tuning, KD students and label-only baselines.

Length-grouped batches with dynamic padding, AdamW with linear warm-up and decay, bf16 autocast,
seeded shuffling. The loop knows nothing about heads or targets: a recipe passes tokenised features
and a ``loss_fn(outputs, idx, batch)`` that closes over its own targets (labels, teacher logits,
teacher embeddings...) and looks them up by the batch's example indices ``idx``.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from kdbench import devices, progress, tracking
from kdbench.backends.batching import collate, length_grouped_batches
from kdbench.backends.hf import autocast
from kdbench.config import DistillConfig, TrainConfig
from kdbench.distill import checkpoint
from kdbench.distill.losses.interpolation import TAIDSchedule
from kdbench.errors import KdbenchError
from kdbench.fsio import within
from kdbench.registry import LOSSES

# Bump when the loop's numerics change, so cached fine-tuned models are not reused across versions
# (3: a fresh head is initialised from the run's seed).
TRAINER_REVISION = 3

Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
# (model outputs, example indices of the batch, the padded batch) -> scalar loss
LossFn = Callable[[Any, np.ndarray, dict[str, torch.Tensor]], torch.Tensor]
# (the model being trained, unwrapped; example indices; the padded batch on the device; the
# micro-batch's index in the run) -> the batch to train on (on-policy KD: the student's samples)
BatchFn = Callable[[torch.nn.Module, np.ndarray, dict[str, torch.Tensor], int], dict[str, torch.Tensor]]
# keys a batch may carry for the loss that are not model inputs: (B, L) 0/1, the tokens the loss scores
LOSS_ONLY_KEYS = ("loss_mask",)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without the keys only the loss reads (``LOSS_ONLY_KEYS``)."""
    return {k: v for k, v in batch.items() if k not in LOSS_ONLY_KEYS}


# Where training checkpoints go while a pipeline run is in progress (see ``checkpoint_scope``).
_SCOPE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("kdbench_checkpoint_scope", default=None)


@contextlib.contextmanager
def checkpoint_scope(folder: str | Path):
    """Every ``train`` call inside checkpoints to ``folder/<its desc, slugged>`` (e.g.
    ``checkpoints/sst2/train-student-on-sst2``) unless given its own ``checkpoint_dir``: the pipeline
    sets it per task, so recipes need not know about checkpoints, and a resumed run finds each
    training (teacher fine-tune, student, baseline) by the same name."""
    token = _SCOPE.set(Path(folder))
    try:
        yield
    finally:
        _SCOPE.reset(token)


class _StepHooks:
    """The step hooks of the training in progress: objects with ``start(total_steps)``,
    ``after_step()``, ``state_dict()`` and ``load_state_dict(state)``, which register themselves
    (``register_step_hook``) the first time the loss uses them, so any recipe's loss gets them run
    (and checkpointed) without passing them to ``train``; or given to ``train(step_hooks=...)``, which
    registers them before the first step and then calls their optional ``before_training()``."""

    def __init__(self, total: int, saved: list[dict]) -> None:
        self.total, self.saved, self.hooks = total, list(saved), []

    def register(self, hook) -> None:
        if any(h is hook for h in self.hooks):
            return
        hook.start(self.total)
        if len(self.saved) > len(self.hooks):  # resumed: the state it had at the checkpoint
            hook.load_state_dict(self.saved[len(self.hooks)])
        self.hooks.append(hook)


_HOOKS: contextvars.ContextVar[_StepHooks | None] = contextvars.ContextVar("kdbench_step_hooks", default=None)


def register_step_hook(hook) -> None:
    """Called by a loss each time it runs; a no-op outside ``train``."""
    hooks = _HOOKS.get()
    if hooks is not None:
        hooks.register(hook)


# The parts of the loss of the optimiser step in progress, for the experiment trackers
# (``report_terms``); None outside a tracked training, so an untracked one pays nothing.
_TERMS: contextvars.ContextVar[dict[str, list[float]] | None] = contextvars.ContextVar("kdbench_loss_terms", default=None)


def report_terms(**terms: torch.Tensor) -> None:
    """A loss's parts (``kd``, ``label``, a feature loss by name), each a scalar tensor of one
    micro-batch: the trackers get their mean per optimiser step as ``train/<name>_loss``."""
    acc = _TERMS.get()
    if acc is not None:
        for name, value in terms.items():
            acc.setdefault(name, []).append(float(value.detach()))


@dataclass
class TrainStats:
    steps: int
    seconds: float
    final_loss: float
    effective_batch_size: int = 0
    resumed_from_step: int | None = None  # the checkpoint training continued from
    step_hooks: list[dict] = field(default_factory=list)  # each step hook's state at the end (TAID's t history)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The label loss of classifier heads: cross-entropy on gold class ids."""
    return F.cross_entropy(logits.float(), labels)


def score_mse(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The label loss of a one-output regression head: squared error to the gold scores."""
    return F.mse_loss(outputs.float().squeeze(-1), labels.float())


def label_objective(label_loss: Callable = cross_entropy) -> Objective:
    """The label loss only (fine-tuning, and the no-KD baseline)."""
    return lambda logits, labels, _teacher: label_loss(logits, labels)


class TAIDDriver:
    """Drives the ``t`` of the ``taid`` loss through training (Shing et al. 2025): the objective reads
    :attr:`t` each step and reports its TAID term; after every optimiser step the loop calls
    :meth:`after_step`, which feeds the step's mean TAID term to :class:`TAIDSchedule` (t from
    ``t_start`` up to 1, faster while that term falls). ``history`` holds t after each step."""

    def __init__(self, t_start: float) -> None:
        self.t_start = t_start
        self.schedule: TAIDSchedule | None = None
        self.history: list[float] = []
        self._terms: list[float] = []

    def start(self, total_steps: int) -> None:
        self.schedule, self.history, self._terms = TAIDSchedule(total_steps=total_steps, t_start=self.t_start), [], []

    @property
    def t(self) -> float:
        return self.t_start if self.schedule is None else self.schedule.t

    def record(self, term: torch.Tensor) -> None:
        self._terms.append(float(term.detach()))

    def after_step(self) -> None:
        if self._terms:
            self.history.append(self.schedule.update(sum(self._terms) / len(self._terms)))
        self._terms = []

    def state_dict(self) -> dict:
        return {"schedule": self.schedule.state_dict(), "history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.schedule.load_state_dict(state["schedule"])
        self.history = list(state["history"])


def kd_term(cfg: DistillConfig) -> Callable[..., torch.Tensor]:
    """The logit-level loss ``cfg.loss`` from the registry with ``cfg.loss_args``, as
    ``term(student, teacher, temperature=cfg.temperature, t2_scaling=cfg.t2_scaling)``. For ``taid``,
    ``loss_args.t`` is where t starts, and the term's :class:`TAIDDriver` (a step
    hook of the training that calls it) moves it to 1 over training (``TrainStats.step_hooks``
    hold its states at the end)."""
    if cfg.loss is None:  # a recipe resolves distill.loss: null to its head's default loss
        raise ValueError("kd_term: name the loss (distill.loss); null is the head's default, which its recipe resolves")
    kd, args = LOSSES.get(cfg.loss), dict(cfg.loss_args)
    driver = TAIDDriver(args.pop("t", 0.4)) if cfg.loss == "taid" else None

    def term(student: torch.Tensor, teacher: torch.Tensor, temperature: float = cfg.temperature,
             t2_scaling: bool = cfg.t2_scaling) -> torch.Tensor:
        if driver is not None:
            register_step_hook(driver)
            args["t"] = driver.t
        soft = kd(student, teacher, temperature=temperature, t2_scaling=t2_scaling, **args)
        if driver is not None:
            driver.record(soft)
        return soft

    return term


def kd_objective(cfg: DistillConfig, label_loss: Callable = cross_entropy) -> Objective:
    """alpha · KD(student, teacher) + (1 − alpha) · label loss (cross-entropy by default), KD the
    ``kd_term`` of ``cfg``."""
    kd = kd_term(cfg)

    def objective(logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None) -> torch.Tensor:
        soft, hard = kd(logits, teacher), label_loss(logits, labels)
        report_terms(kd=soft, label=hard)
        return cfg.alpha * soft + (1.0 - cfg.alpha) * hard

    return objective


def sequence_loss(objective: Objective, labels: np.ndarray, teacher_logits: np.ndarray | None = None) -> LossFn:
    """A ``LossFn`` for sequence-level heads: ``objective(logits, labels[idx], teacher_logits[idx])``."""
    labels_t = torch.as_tensor(labels)
    teacher_t = None if teacher_logits is None else torch.as_tensor(teacher_logits, dtype=torch.float32)

    def loss_fn(outputs, idx: np.ndarray, batch) -> torch.Tensor:
        teacher = None if teacher_t is None else teacher_t[idx].to(outputs.logits.device)
        return objective(outputs.logits, labels_t[idx].to(outputs.logits.device), teacher)

    return loss_fn


def effective_batch_size(cfg: TrainConfig, world_size: int | None = None) -> int:
    """Examples per optimiser step: per-process batch × accumulation steps × processes."""
    if world_size is None:
        from accelerate import PartialState

        world_size = PartialState().num_processes
    return cfg.batch_size * cfg.grad_accum_steps * world_size


def _fingerprint(cfg: TrainConfig, features: Sequence[dict], seed: int, dtype: str, world: int, device) -> str:
    """What a checkpoint must match to be resumed: same config, data, seed, precision, processes,
    device kind (CPU fingerprints as before)."""
    fields = [cfg.model_dump(mode="json", exclude={"checkpoint_every"}), seed, dtype, world]
    if devices.cache_fields(device):  # a GPU checkpoint does not resume on the CPU, nor the reverse
        fields.append(devices.cache_fields(device))
    h = hashlib.sha256(json.dumps(fields).encode())
    for f in features:
        h.update(np.asarray(f["input_ids"], dtype=np.int64).tobytes())
    return h.hexdigest()


def _shard(idx: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This process's part of a global batch (a batch smaller than the world is reused cyclically,
    so every process runs the same number of steps)."""
    part = idx[rank::world]
    return part if len(part) else idx[[rank % len(idx)]]


def train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    features: Sequence[dict],
    cfg: TrainConfig,
    loss_fn: LossFn,
    *,
    seed: int = 0,
    dtype: str = "bf16",
    desc: str = "train",
    collate_fn: Callable[[list[dict]], dict[str, torch.Tensor]] | None = None,
    forward_kwargs: dict | None = None,
    checkpoint_dir: str | Path | None = None,
    device: torch.device | None = None,
    batch_fn: BatchFn | None = None,
    step_hooks: Sequence[object] = (),
) -> TrainStats:
    """Train ``model`` in place for ``cfg.epochs`` over ``features`` (one dict of token lists per
    example, padded per batch by ``collate_fn``, the tokenizer's ``pad`` by default).
    ``forward_kwargs`` go to every forward call (e.g. ``output_hidden_states=True`` for losses on
    intermediate layers).

    One optimiser step takes ``cfg.grad_accum_steps`` micro-batches of ``cfg.batch_size`` per
    process (processes from ``accelerate launch``: each takes its shard of a global batch). With
    ``checkpoint_dir``, a checkpoint is written every ``cfg.checkpoint_every`` optimiser steps and at
    the end, and training continues from the latest one found there: an interrupted run resumed
    this way ends on the same weights as an uninterrupted one (CPU). Step hooks the loss registers
    (``register_step_hook``, e.g. TAID's t) and ``step_hooks`` (e.g. a training curve) are told after every
    optimiser step and checkpointed.

    ``batch_fn`` rewrites each micro-batch before the forward pass (on-policy KD samples the
    student's continuations there); it must depend only on its arguments and its own seed, so a
    resumed run replays it. A batch may carry ``loss_mask`` for the loss (not passed to the model).

    ``device`` (default: where ``model`` is) is where accelerate places the model and the batches;
    processes launched by ``accelerate launch`` / ``torchrun`` each take their own GPU (NCCL) or
    share the CPU (gloo) and train data-parallel (DDP)."""
    if checkpoint_dir is None and _SCOPE.get() is not None:
        checkpoint_dir = within(_SCOPE.get(), tracking.slug(desc))
    accelerator = devices.accelerator(model.device if device is None else device)
    deterministic, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if devices.deterministic_training(accelerator.device):
        # resume must replay the same numerics; an op without a deterministic CPU kernel warns
        # rather than stopping a recipe
        torch.use_deterministic_algorithms(True, warn_only=True)
    hooks = _StepHooks(0, [])
    token = _HOOKS.set(hooks)
    # experiment trackers (kdbench.tracking), when the run names some: one tracker run per training
    curves = tracking.open_curves(desc, {"training": desc, "seed": seed, "dtype": dtype,
                                         "processes": accelerator.num_processes, **cfg.model_dump(mode="json")}
                                  ) if accelerator.is_main_process else None
    terms = _TERMS.set({} if curves is not None else None)
    try:
        return _train(model, tokenizer, features, cfg, loss_fn, accelerator, hooks, curves, seed=seed, dtype=dtype,
                      desc=desc, collate_fn=collate_fn, forward_kwargs=forward_kwargs or {},
                      checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir), batch_fn=batch_fn,
                      explicit_hooks=[h for h in step_hooks if h is not None])
    finally:
        _TERMS.reset(terms)
        if curves is not None:
            curves.finish()
        _HOOKS.reset(token)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _train(model, tokenizer, features, cfg, loss_fn, accelerator, hooks: _StepHooks, curves, *, seed, dtype, desc, collate_fn,
           forward_kwargs, checkpoint_dir, batch_fn, explicit_hooks) -> TrainStats:
    rank, world, accum = accelerator.process_index, accelerator.num_processes, cfg.grad_accum_steps
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lengths = [len(f["input_ids"]) for f in features]
    global_batch = cfg.batch_size * world
    micro_total = max(1, math.ceil(cfg.epochs * math.ceil(len(features) / global_batch)))
    total = math.ceil(micro_total / accum)  # optimiser steps
    if accelerator.distributed_type.name == "FSDP":
        raise KdbenchError("an accelerate config with FSDP: kdbench's trainer checkpoints and saves whole models, "
                           "which FSDP shards; launch with DDP instead (accelerate launch --multi_gpu)")
    # accelerate places (and wraps: DDP) the model first; the optimiser then holds the
    # parameters where they will be trained
    ddp_model = accelerator.prepare(model)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {"params": [p for n, p in ddp_model.named_parameters() if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in ddp_model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    # fused AdamW: ~9x faster steps than the foreach default on CPU, where the 11.7M-parameter
    # embedding matrix of a small BERT otherwise dominates the step time
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    schedule = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    hooks.total = total
    pad = collate_fn or (lambda feats: collate(tokenizer, feats))
    fingerprint = _fingerprint(cfg, features, seed, dtype, world, accelerator.device) if checkpoint_dir else None

    epoch_rng, pos, step, loss_value, resumed = rng.bit_generator.state, 0, 0, float("nan"), None
    found = checkpoint.latest(checkpoint_dir) if checkpoint_dir else None
    if found is not None:
        if checkpoint.read_state(found)["fingerprint"] != fingerprint:
            raise KdbenchError(f"checkpoint {found}: made with another config, data, seed or process count; "
                               "delete the folder to start over")
        state = checkpoint.load(found, model, optimizer, rank)
        schedule.load_state_dict(state["schedule"])
        hooks.saved = state["hooks"]
        epoch_rng, pos, step, loss_value, resumed = state["epoch_rng"], state["pos"], state["step"], state["loss"], state["step"]
        rng.bit_generator.state = epoch_rng

    optimizer = accelerator.prepare(optimizer)
    for hook in explicit_hooks:  # registered first, so a resumed run hands them back their saved states
        hooks.register(hook)
    for hook in explicit_hooks:
        if hasattr(hook, "before_training"):
            hook.before_training()
    model.train()
    start, micro, window_loss = time.perf_counter(), step * accum, 0.0
    with progress.bar(total=total, initial=step, desc=desc, unit="step", disable=not accelerator.is_main_process) as bar:
        while step < total:
            batches = length_grouped_batches(lengths, global_batch, rng)
            for p in range(pos, len(batches)):
                idx = _shard(batches[p], rank, world)
                window = min(accum, micro_total - step * accum)  # micro-batches in this optimiser step
                batch = devices.to_device(pad([features[i] for i in idx]), accelerator.device)
                if batch_fn is not None:
                    batch = batch_fn(accelerator.unwrap_model(ddp_model), idx, batch, micro)
                last = micro + 1 == step * accum + window
                # gradients are all-reduced on the window's last micro-batch only
                with contextlib.nullcontext() if last else accelerator.no_sync(ddp_model):
                    with autocast(dtype, accelerator.device):
                        outputs = ddp_model(**model_inputs(batch), **forward_kwargs)
                    loss = loss_fn(outputs, idx, batch)
                    accelerator.backward(loss / window)
                micro += 1
                window_loss += loss.item() / window
                if not last:
                    continue
                lr = schedule.get_last_lr()[0]  # the rate this step uses (for the trackers)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                loss_value, window_loss = window_loss, 0.0
                if not math.isfinite(loss_value):  # the weights are NaN from here on: nothing worth scoring
                    raise KdbenchError(f"{desc}: the loss is {loss_value} at step {step}: training diverged "
                                       f"(lr {cfg.lr:g}; a lower one?)")
                for hook in hooks.hooks:
                    hook.after_step()
                if curves is not None:
                    curves.log(_step_curves(loss_value, lr, hooks), step=step)
                bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)  # update() decides when to redraw
                bar.update()
                if checkpoint_dir and (step == total or step % cfg.checkpoint_every == 0):
                    state = {"fingerprint": fingerprint, "epoch_rng": epoch_rng, "pos": p + 1, "loss": loss_value,
                             "schedule": schedule.state_dict(), "hooks": [h.state_dict() for h in hooks.hooks]}
                    _checkpoint(accelerator, checkpoint_dir, step, model, optimizer, state)
                if step >= total:
                    break
            epoch_rng, pos = rng.bit_generator.state, 0
    model.eval()
    return TrainStats(steps=total, seconds=time.perf_counter() - start, final_loss=loss_value,
                      effective_batch_size=effective_batch_size(cfg, world), resumed_from_step=resumed,
                      step_hooks=[h.state_dict() for h in hooks.hooks])


def _step_curves(loss: float, lr: float, hooks: _StepHooks) -> dict[str, float]:
    """What the trackers get after an optimiser step: the loss, the mean of each of its reported
    terms over the step's micro-batches (on the main process), the learning rate the step used and
    TAID's t after it."""
    terms = _TERMS.get()
    values = {"train/loss": loss, "train/lr": lr}
    values.update({f"train/{name}_loss": sum(v) / len(v) for name, v in terms.items() if v})
    terms.clear()
    for h in hooks.hooks:
        if isinstance(h, TAIDDriver):
            values["train/taid_t"] = h.t
    return values


def _checkpoint(accelerator, folder: Path, step: int, model, optimizer, state: dict) -> None:
    """Every process saves its RNG state; the main process writes the rest and publishes it."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        checkpoint.staging(folder, step)
    accelerator.wait_for_everyone()
    checkpoint.save_rng(checkpoint.staging(folder, step), accelerator.process_index)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        checkpoint.save(folder, step, model, getattr(optimizer, "optimizer", optimizer), state)
    accelerator.wait_for_everyone()
