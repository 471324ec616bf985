"""Student builders: ``@BUILDERS.register(name)`` maps a ``student.builder`` name to a small
function (DESIGN.md, "Style") ``builder(base, spec, seed) -> (student, run-record fields)``, where
``base`` is the model the student is made from: the teacher, or the model ``student.model`` names
(loaded by the recipe with the task's head, with its own tokenizer).

``layer_selection`` keeps some of the base's layers with their exact weights, for BERT-family
encoders (``bert.encoder.layer``) and decoder-only LMs (Llama family: ``model.layers``) alike.
Which layers: an explicit list, or a named uniform rule (:func:`uniform_map`).
``config`` builds a narrower or shallower model of the base's architecture from its config with
overrides, randomly initialised (the tokenizer and vocabulary stay the base's).
``pretrained`` is ``student.model`` as it is (its own weights and tokenizer).
:func:`build_student` turns a suite's ``student`` section into a model and its run-record entry.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import PreTrainedModel

from kdbench.errors import KdbenchError
from kdbench.registry import BUILDERS

# Where architectures keep their stack of transformer layers, relative to the base model
# (BERT/RoBERTa/MPNet, DistilBERT, Llama/Mistral/Qwen/Gemma, OPT, GPT-2/GPT-Neo/Bloom).
_STACKS = ("encoder.layer", "transformer.layer", "layers", "decoder.layers", "h")

# Config entries that hold one value per layer (transformers >= 4.5x: attention type per layer;
# SmolLM3: which layers skip RoPE). They are cut down to the kept layers, in the same order.
PER_LAYER_CONFIG = ("layer_types", "no_rope_layers")

# Attributes a layer's modules keep about their own position, e.g. ``LlamaAttention.layer_idx``,
# which indexes the KV cache: layer i of the student must read and write cache slot i.
_INDEX_ATTRS = ("layer_idx", "layer_id")

RULES = ("distilbert", "tinybert")


def uniform_map(n_teacher: int, n_student: int, rule: str) -> list[int]:
    """Teacher layers (0-based) kept by a uniform rule, for a student of ``n_student`` layers:

    - ``distilbert``: every (N/M)-th layer from the bottom, layer ⌊i·N/M⌋ for i = 0..M−1
      (Sanh et al. 2019, "DistilBERT": 12 → 6 keeps [0, 2, 4, 6, 8, 10]).
    - ``tinybert``: g(m) = m·N/M for m = 1..M, 1-based (Jiao et al. 2020, "TinyBERT"), so the
      0-based layers ⌊m·N/M⌋ − 1, ending with the top layer (12 → 4 keeps [2, 5, 8, 11]).

    N = ``n_teacher``, M = ``n_student``; when M does not divide N the quotient is floored.
    """
    if rule not in RULES:
        raise KdbenchError(f"layer rule '{rule}': known rules are {', '.join(RULES)}")
    if not 0 < n_student <= n_teacher:
        raise KdbenchError(f"layer rule {rule}: a student of {n_student} layers needs 1..{n_teacher} (the teacher's)")
    if rule == "distilbert":
        return [i * n_teacher // n_student for i in range(n_student)]
    return [m * n_teacher // n_student - 1 for m in range(1, n_student + 1)]


def layer_stack(model: PreTrainedModel) -> tuple[str, nn.ModuleList]:
    """The qualified name (as in ``state_dict`` keys) and module of the model's transformer layers."""
    base = getattr(model, model.base_model_prefix, model)  # AutoModel returns the base model itself
    for path in _STACKS:
        module = base
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList):
            name = next(n for n, m in model.named_modules() if m is module)
            return name, module
    raise KdbenchError(
        f"student builder layer_selection: {type(model).__name__} has no known layer stack "
        f"(looked for {', '.join(_STACKS)})"
    )


def _student_config(teacher: PreTrainedModel, layers: list[int]):
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    for name in PER_LAYER_CONFIG:
        values = getattr(config, name, None)
        if isinstance(values, (list, tuple)):
            setattr(config, name, [values[i] for i in layers])
    return config


def _renumber(stack: nn.ModuleList) -> None:
    """Set every per-layer index attribute inside layer i to i (constructors usually do; this makes
    sure of it for architectures that take the index from elsewhere)."""
    for position, layer in enumerate(stack):
        for module in layer.modules():
            for attr in _INDEX_ATTRS:
                if isinstance(getattr(module, attr, None), int):
                    setattr(module, attr, position)


def layer_selection(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A shallower copy of ``teacher`` keeping the teacher layers listed in ``layers``, in order.

    Everything outside the layer stack (embeddings, pooler, final norm, classification or LM head)
    is copied as it is; student layer i gets the exact weights of teacher layer ``layers[i]``
    (DistilBERT / "PKD" style initialisation). Tied input/output embeddings stay tied. The map is
    recorded in ``config.kdbench_layer_map``.
    """
    layers = [int(i) for i in layers]
    prefix, teacher_layers = layer_stack(teacher)
    check_layer_map(layers, len(teacher_layers))
    student = type(teacher)(_student_config(teacher, layers))
    prefix += "."
    mapped = {}
    for key, value in teacher.state_dict().items():
        if key.startswith(prefix):
            index, rest = key[len(prefix):].split(".", 1)
            if int(index) not in layers:
                continue
            key = f"{prefix}{layers.index(int(index))}.{rest}"
        mapped[key] = value.detach().clone()
    missing, unexpected = student.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KdbenchError(f"layer_selection: weights did not map (missing {missing[:3]}, unexpected {unexpected[:3]})")
    _renumber(layer_stack(student)[1])
    _check_ties(teacher, student)
    if getattr(teacher, "generation_config", None) is not None and student.can_generate():
        student.generation_config = copy.deepcopy(teacher.generation_config)  # eos/pad ids as the teacher
    student.config.kdbench_layer_map = list(layers)
    return student.to(teacher.device)


def check_layer_map(layers: list[int], n_teacher: int, source: str = "the teacher") -> None:
    """Every index of a layer map names one of the ``n_teacher`` layers of ``source``."""
    bad = [i for i in layers if not 0 <= i < n_teacher]
    if bad:
        raise KdbenchError(f"student.layers {bad}: {source} has layers 0..{n_teacher - 1}")


def _check_ties(teacher: PreTrainedModel, student: PreTrainedModel) -> None:
    """Input and output embeddings are one tensor in the student iff they are in the teacher."""
    def tied(model):
        out, inp = model.get_output_embeddings(), model.get_input_embeddings()
        return out is not None and inp is not None and out.weight is inp.weight

    if tied(teacher) != tied(student):
        raise KdbenchError(f"layer_selection: {type(teacher).__name__} embedding tying was not kept")


def student_layers(student_cfg, n_teacher: int) -> list[int]:
    """The layer map a suite's ``student`` section asks for: its explicit ``layers``, or a rule
    (``layer_rule`` with ``num_layers``, when the config offers them) resolved by :func:`uniform_map`."""
    if student_cfg.layers:
        return list(student_cfg.layers)
    rule, count = getattr(student_cfg, "layer_rule", None), getattr(student_cfg, "num_layers", None)
    if rule and count:
        return uniform_map(n_teacher, count, rule)
    raise KdbenchError("student: layer_selection needs student.layers (or layer_rule with num_layers)")


def student_config(teacher_config, overrides: dict):
    """The config of a ``config`` student: the teacher's with ``overrides`` (e.g. ``num_hidden_layers:
    2, hidden_size: 256, intermediate_size: 1024, num_attention_heads: 4``), checked to make a model.
    Per-layer config lists are cut to the new depth by TinyBERT's uniform rule; Llama-family
    ``head_dim`` follows hidden_size / num_attention_heads unless set."""
    config = copy.deepcopy(teacher_config)
    unknown = [k for k in overrides if not hasattr(config, k)]
    if unknown:
        raise KdbenchError(f"student.config: {type(config).__name__} has no setting {unknown[0]!r}")
    n_teacher = config.num_hidden_layers
    for key, value in overrides.items():
        try:
            setattr(config, key, value)
        except Exception as e:  # transformers 5 configs check their fields' types
            raise KdbenchError(f"student.config: {key} {value!r}: {str(e).strip().splitlines()[-1].strip()}") from None
    n = config.num_hidden_layers
    if not isinstance(n, int) or not 0 < n <= n_teacher:
        raise KdbenchError(f"student.config: num_hidden_layers {n} must be in 1..{n_teacher} (the teacher's)")
    keep = uniform_map(n_teacher, n, "tinybert")
    for name in PER_LAYER_CONFIG:
        values = getattr(config, name, None)
        if isinstance(values, (list, tuple)) and name not in overrides:
            setattr(config, name, [values[i] for i in keep])
    heads = config.num_attention_heads
    if not all(isinstance(getattr(config, k, None), int) and getattr(config, k) > 0
               for k in ("hidden_size", "num_attention_heads")):
        raise KdbenchError(f"student.config: hidden_size {config.hidden_size} and num_attention_heads {heads} must be "
                           "positive integers")
    if config.hidden_size % heads:
        raise KdbenchError(f"student.config: hidden_size {config.hidden_size} is not divisible by num_attention_heads {heads}")
    if getattr(config, "head_dim", None) is not None and "head_dim" not in overrides:
        config.head_dim = config.hidden_size // heads
    kv = getattr(config, "num_key_value_heads", None)
    if kv is not None and "num_key_value_heads" not in overrides and heads % kv:
        config.num_key_value_heads = heads  # the teacher's grouping does not divide: plain multi-head attention
    if kv is not None and heads % config.num_key_value_heads:
        raise KdbenchError(f"student.config: num_attention_heads {heads} is not a multiple of num_key_value_heads "
                           f"{config.num_key_value_heads}")
    config.kdbench_config_overrides = dict(overrides)
    return config


def from_config(teacher: PreTrainedModel, overrides: dict) -> PreTrainedModel:
    """A randomly initialised model of the teacher's class whose config is :func:`student_config`."""
    student = type(teacher)(student_config(teacher.config, overrides))
    if getattr(teacher, "generation_config", None) is not None and student.can_generate():
        student.generation_config = copy.deepcopy(teacher.generation_config)
    return student.to(teacher.device)


class Builder:
    """A ``student.builder``: ``build(base, spec, seed)`` makes the student from its base model and
    says how (run-record fields); ``config(base_config, spec, source)`` is the student's config as
    ``build`` will make it, every index and override checked, for the pre-flight (no weights)."""

    @staticmethod
    def build(base: PreTrainedModel, spec, seed: int) -> tuple[PreTrainedModel, dict]:
        raise NotImplementedError

    @staticmethod
    def config(base_config, spec, source: str):
        return base_config


@BUILDERS.register("layer_selection", derives="weights")
class LayerSelection(Builder):
    """``student.layers`` (or ``layer_rule`` with ``num_layers``) of the base model, exact weights."""

    @staticmethod
    def build(base: PreTrainedModel, spec, seed: int) -> tuple[PreTrainedModel, dict]:
        layers = student_layers(spec, len(layer_stack(base)[1]))
        made = {"builder": "layer_selection", "layer_map": layers}
        if not spec.layers:
            made["layer_rule"] = spec.layer_rule
        return layer_selection(base, layers), made

    @staticmethod
    def config(base_config, spec, source: str):
        layers = student_layers(spec, base_config.num_hidden_layers)
        check_layer_map(layers, base_config.num_hidden_layers, source)
        config = copy.deepcopy(base_config)
        config.num_hidden_layers = len(layers)
        config.kdbench_layer_map = list(layers)
        return config


@BUILDERS.register("config", derives="architecture")
class RandomFromConfig(Builder):
    """The base's architecture with ``student.config`` overrides, randomly initialised from ``seed``."""

    @staticmethod
    def build(base: PreTrainedModel, spec, seed: int) -> tuple[PreTrainedModel, dict]:
        torch.manual_seed(seed)
        return from_config(base, spec.config), {"builder": "config", "config_overrides": dict(spec.config),
                                                "init": "random"}

    @staticmethod
    def config(base_config, spec, source: str):
        return student_config(base_config, spec.config)


@BUILDERS.register("pretrained", own_weights=True)
class Pretrained(Builder):
    """``student.model`` as it is: the recipe loaded it as ``base`` (a fresh task head drawn from ``seed``)."""

    @staticmethod
    def build(base: PreTrainedModel, spec, seed: int) -> tuple[PreTrainedModel, dict]:
        from kdbench.models.loading import model_revision

        return base, {"builder": "pretrained", "init_from": spec.model,
                      "init_revision": model_revision(spec.model, spec.revision)}


def own_weights(spec) -> bool:
    """Whether the suite's student is ``student.model``'s own weights (not derived from a base)."""
    return bool(BUILDERS.meta(spec.builder).get("own_weights"))


def build_student(base: PreTrainedModel, spec, seed: int, *, own_model: bool = False) -> tuple[PreTrainedModel, dict]:
    """The student a suite's ``student`` section asks for, made by its builder from ``base`` (the
    teacher, or with ``own_model`` the model ``student.model`` names), and its run-record entry:
    builder, layer map or config overrides, where it came from and the parameter counts. Random
    initialisation is drawn from ``seed``, so every role starts from the same weights."""
    from kdbench.models.loading import count_parameters

    student, made = BUILDERS.get(spec.builder, "student.builder").build(base, spec, seed)
    if own_weights(spec):
        return student, made
    source = spec.model if own_model else "teacher"
    made.update(init_from=source if spec.builder == "layer_selection" else f"{source}_config",
                student_params=count_parameters(student),
                **{"source_params" if own_model else "teacher_params": count_parameters(base)})
    return student, made


def default_layer_map(student: PreTrainedModel, n_teacher: int) -> list[int]:
    """Teacher layer matched to each student layer: the student's own layer selection when it has
    one (``config.kdbench_layer_map``), else TinyBERT's uniform rule."""
    layers = getattr(student.config, "kdbench_layer_map", None)
    if layers:
        return list(layers)
    return uniform_map(n_teacher, len(layer_stack(student)[1]), "tinybert")
