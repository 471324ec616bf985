"""Entity-level NER metrics (CoNLL / seqeval semantics) with bootstrap CIs over sentences.

Entities are chunks of IOB2 tags read the way ``conlleval`` and seqeval's default mode read them
(Tjong Kim Sang & De Meulder 2003; seqeval ``get_entities``): a chunk starts at a ``B-x`` tag, or at
an ``I-x`` tag that follows ``O`` or a tag of another type (an "illegal" ``I-`` opens an entity
rather than being dropped); it ends before the next ``O``, ``B-`` or change of type. A predicted
entity is correct only when its type, first and last word all match a gold entity.

Micro scores over the whole evaluation set, from summed counts:

    precision = TP / #predicted,   recall = TP / #gold,   F1 = 2·P·R / (P + R)

(0 where a denominator is 0, as seqeval's ``zero_division="warn"``); per-type F1 uses one type's
counts. Token accuracy is the share of words whose tag is right.

Every figure is a ratio of sums over sentences, so each sentence is reduced once to a row of
counts (TP, predicted, gold per entity type; right, unseen and total words: :class:`NerTable`) and
the bootstrap resamples those rows (:class:`kdbench.metrics.stats.Resampled`: Efron draws of
sentences, vectorised and seeded) and recomputes the ratios from the resampled sums — one chunking
pass, not one per resample. Teacher–student metrics use the same scheme (:class:`NerPairTable`).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from kdbench.errors import KdbenchError
from kdbench.metrics import loyalty
from kdbench.metrics.spec import Kind, Table, register_kind, statistic
from kdbench.metrics.stats import Resampled

Entity = tuple[str, int, int]  # (type, first word, last word)


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-creative-work"`` -> ("B", "creative-work"); ``"O"`` -> ("O", "")."""
    if tag == "O":
        return "O", ""
    return tag[0], tag[2:]


def entities(tags: Sequence[str]) -> list[Entity]:
    """The entities of one sentence of IOB2 tags, conlleval semantics (see the module docstring)."""
    out: list[Entity] = []
    start, current = -1, None  # the open chunk's first word and type
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix == "O" or prefix == "B" or kind != current:
            if current is not None:
                out.append((current, start, i - 1))
            current = None
        if prefix != "O" and current is None:
            start, current = i, kind
    if current is not None:
        out.append((current, start, len(tags) - 1))
    return out


def entity_type_key(kind: str) -> str:
    """Metric-name form of an entity type: lower snake_case (``creative-work`` -> ``creative_work``)."""
    return re.sub(r"[^0-9a-z]+", "_", kind.lower()).strip("_")


def entity_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], types: Sequence[str]) -> np.ndarray:
    """Per-sentence, per-type counts, shape (sentences, types, 3): [TP, #predicted, #gold]."""
    index = {t: k for k, t in enumerate(types)}
    out = np.zeros((len(gold), len(types), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
        ge, pe = set(entities(g)), set(entities(p))
        for kind, *_ in pe & ge:
            out[i, index[kind], 0] += 1
        for kind, *_ in pe:
            out[i, index[kind], 1] += 1
        for kind, *_ in ge:
            out[i, index[kind], 2] += 1
    return out


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den == 0, 0.0, num / np.where(den == 0, 1.0, den))


def prf(tp: np.ndarray, pred: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 from counts, element-wise, in seqeval's arithmetic order (so the values
    are bit-identical to ``seqeval.metrics``)."""
    p = _divide(np.asarray(tp, dtype=np.float64), np.asarray(pred, dtype=np.float64))
    r = _divide(np.asarray(tp, dtype=np.float64), np.asarray(gold, dtype=np.float64))
    denom = p + r
    f = 2.0 * p * r / np.where(denom == 0, 1.0, denom)
    return p, r, f


def entity_columns(counts: np.ndarray) -> np.ndarray:
    """(sentences, types, 3) counts -> (sentences, 3·types) columns: all TP, then #pred, then #gold."""
    return np.concatenate([counts[:, :, 0], counts[:, :, 1], counts[:, :, 2]], axis=1)


def entity_types(label_names: Sequence[str]) -> list[str]:
    """The entity types of a tag set, sorted (``B-person``, ``I-person`` -> ``person``)."""
    return sorted({tag[2:] for tag in label_names if tag != "O"})


def _words(tags: Sequence[Sequence[str]]) -> np.ndarray:
    return np.array([len(t) for t in tags], dtype=np.float64)


def _outside(gold: Sequence[Sequence[str]]) -> np.ndarray:
    return np.array([sum(t == "O" for t in row) for row in gold], dtype=np.float64)


def _agreement(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]) -> np.ndarray:
    """Words per sentence with the same tag in ``a`` and ``b``."""
    return np.array([sum(x == y for x, y in zip(ra, rb, strict=True)) for ra, rb in zip(a, b, strict=True)],
                    dtype=np.float64)


def tags_from_samples(rows, column: str, where: str) -> list[list[str]]:
    """Space-joined tag sequences of ``samples.parquet`` rows back as lists."""
    if rows[column].isna().any():
        raise KdbenchError(f"{where}: a sentence without {column!r} tags in the samples")
    return [str(t).split(" ") if str(t) else [] for t in rows[column]]


def _sample_column(rows, column: str, where: str) -> np.ndarray:
    if column not in rows.columns or rows[column].isna().any():
        raise KdbenchError(f"{where}: the samples have no {column!r} column (written by kdbench since the metric "
                           "registry; re-run to gate this metric)")
    return np.asarray(rows[column], dtype=np.float64)


class CountsContext(Resampled):
    """Resampled column sums of per-sentence counts (all statistics of one context share them)."""

    def __init__(self, columns: np.ndarray, types: list[str], *, n_samples, seed, order_key=None, draws=None):
        self.columns = np.asarray(columns, dtype=np.float64)
        self.types = types
        self.totals = self.columns.sum(axis=0)
        super().__init__(len(self.columns), n_samples=n_samples, seed=seed,
                         order_key=None if draws is not None else order_key, draws=draws)

    @cached_property
    def resampled(self) -> np.ndarray:
        return self.column_sums("counts", self.columns)


@dataclass
class NerTable(Table):
    """Per sentence: entity counts per type (TP, #predicted, #gold) of the predicted tags against the
    gold ones, words tagged right, unseen words, words."""

    kind = "ner"
    counts: np.ndarray  # (sentences, types, 3)
    right: np.ndarray
    unseen: np.ndarray
    words: np.ndarray
    types: list[str]
    outside: np.ndarray | None = None  # words whose gold tag is O, per sentence

    @property
    def n(self) -> int:
        return len(self.words)

    @classmethod
    def of(cls, preds, task_spec: dict) -> NerTable:
        if preds.labels is None:
            raise KdbenchError(f"task {preds.task}: {preds.role} predictions have no gold tags to score")
        types = entity_types(preds.label_names)
        gold, pred = preds.gold_tags, preds.pred_tags
        unseen = np.array([np.sum(~s) for s in preds.seen], dtype=np.float64)
        return cls(entity_counts(gold, pred, types), _agreement(gold, pred), unseen, _words(gold), types, _outside(gold))

    @classmethod
    def from_samples(cls, rows, task_spec: dict, where: str) -> NerTable:
        types = entity_types(task_spec["label_names"])
        gold, pred = tags_from_samples(rows, "label", where), tags_from_samples(rows, "pred", where)
        unseen = _sample_column(rows, "unseen", where) if "unseen" in rows.columns else None
        return cls(entity_counts(gold, pred, types), _agreement(gold, pred), unseen, _words(gold), types, _outside(gold))

    def has(self, metric: str) -> bool:
        return self.unseen is not None or metric != "unseen_word_rate"

    def trivial(self) -> NerTable:
        """Every word tagged ``O``: no entity predicted (the words it gets right are the O words)."""
        counts = self.counts.copy()
        counts[:, :, :2] = 0  # no true positive, nothing predicted; the gold entities stay
        return NerTable(counts, self.outside, np.zeros(self.n), self.words, self.types)

    def columns(self) -> dict[str, np.ndarray]:
        return {"unseen": self.unseen.astype(np.int64)}

    def context(self, *, n_samples, seed, options, draws=None) -> CountsContext:
        unseen = self.unseen if self.unseen is not None else np.full(self.n, np.nan)
        columns = np.column_stack([entity_columns(self.counts), self.right, unseen, self.words])
        return CountsContext(columns, self.types, n_samples=n_samples, seed=seed, order_key=self.counts.sum(axis=1)[:, 2],
                             draws=draws)


@dataclass
class NerPairTable(Table):
    """Per sentence: entity counts of the student's tags against the teacher's, words with the
    teacher's tag, the sum of 1 − √JSD₂ over its words (``probability_loyalty_sum``), words."""

    kind = "ner_pair"
    counts: np.ndarray
    agree: np.ndarray
    prob_loyal: np.ndarray | None
    words: np.ndarray
    types: list[str]

    @property
    def n(self) -> int:
        return len(self.words)

    @classmethod
    def of(cls, student, teacher, task_spec: dict) -> NerPairTable:
        sentence = np.repeat(np.arange(len(student.probs)), student.word_counts)
        t_probs, s_probs = np.concatenate(teacher.probs), np.concatenate(student.probs)
        n = len(student.probs)

        def per_sentence(values: np.ndarray) -> np.ndarray:
            return np.bincount(sentence, weights=values, minlength=n)

        types = entity_types(student.label_names)
        return cls(entity_counts(teacher.pred_tags, student.pred_tags, types),
                   per_sentence(loyalty.label_loyalty_per_example(t_probs, s_probs)),
                   per_sentence(loyalty.probability_loyalty_per_example(t_probs, s_probs)),
                   student.word_counts.astype(np.float64), types)

    @classmethod
    def from_samples(cls, student_rows, teacher_rows, pair_rows, task_spec: dict, where: str) -> NerPairTable:
        types = entity_types(task_spec["label_names"])
        t, s = tags_from_samples(teacher_rows, "pred", where), tags_from_samples(student_rows, "pred", where)
        loyal = None
        if pair_rows is not None and "probability_loyalty_sum" in pair_rows.columns:
            loyal = _sample_column(pair_rows, "probability_loyalty_sum", where)
        return cls(entity_counts(t, s, types), _agreement(t, s), loyal, _words(s), types)

    def has(self, metric: str) -> bool:
        return self.prob_loyal is not None or metric != "probability_loyalty"

    def columns(self) -> dict[str, np.ndarray]:
        return {"probability_loyalty_sum": self.prob_loyal}

    def context(self, *, n_samples, seed, options, draws=None) -> CountsContext:
        loyal = self.prob_loyal if self.prob_loyal is not None else np.full(self.n, np.nan)
        columns = np.column_stack([entity_columns(self.counts), self.agree, loyal, self.words])
        return CountsContext(columns, self.types, n_samples=n_samples, seed=seed, draws=draws)


register_kind(Kind("ner", "sentence", "gold and predicted IOB2 tags per word", table=NerTable, pair="ner_pair",
                   compare="f1", columns=("precision", "recall", "token_accuracy")))
register_kind(Kind("ner_pair", "sentence", "teacher and student tags and tag distributions per word",
                   table=NerPairTable, columns=("label_loyalty", "entity_f1_vs_teacher")))


# --------------------------------------------------------------------------------------------------
# metrics: ratios of column sums over sentences
# --------------------------------------------------------------------------------------------------
def _micro(which: int):
    """Micro precision (0), recall (1) or F1 (2) of summed counts s (..., 3·types + 3)."""
    def stat(s: np.ndarray, t: int) -> np.ndarray:
        return prf(s[..., :t].sum(-1), s[..., t:2 * t].sum(-1), s[..., 2 * t:3 * t].sum(-1))[which]
    return stat


def _type_f1(s: np.ndarray, t: int, k: int) -> np.ndarray:
    return prf(s[..., k], s[..., t + k], s[..., 2 * t + k])[2]


def _extra(offset: int, den: int = 2):
    """Ratio of the ``offset``-th to the ``den``-th column after the 3·types entity columns."""
    return lambda s, t: _divide(s[..., 3 * t + offset], s[..., 3 * t + den])


def _sum_statistic(stat):
    """(point, replicates) of a statistic of summed columns: on the totals, on each resample."""
    return (lambda ctx, **f: float(stat(ctx.totals, len(ctx.types), **f)),
            lambda ctx, **f: stat(ctx.resampled, len(ctx.types), **f))


def _register(name: str, kind: str, stat, **spec) -> None:
    point, replicates = _sum_statistic(stat)
    point.__doc__ = spec.pop("doc")
    statistic(name, kind, replicates=replicates, **spec)(point)


SENTENCE = "(TP, #predicted, #gold) entities per type in the sentence"
_register("f1", "ner", _micro(2), higher_is_better=True, percent=True, per_unit=SENTENCE,
          reference="Tjong Kim Sang & De Meulder 2003; seqeval", doc=(
              "Entity-level micro F1 = 2·P·R / (P + R) over the whole set (P = TP / #predicted, R = TP / #gold, 0 "
              "where a denominator is 0); an entity counts when its type, first and last word match (conlleval "
              "chunking)."))
_register("precision", "ner", _micro(0), higher_is_better=True, percent=True, per_unit=SENTENCE,
          reference="seqeval", doc="Entity-level micro precision TP / #predicted entities.")
_register("recall", "ner", _micro(1), higher_is_better=True, percent=True, per_unit=SENTENCE,
          reference="seqeval", doc="Entity-level micro recall TP / #gold entities.")


def _type_index(ctx, type: str) -> int:
    return next(k for k, kind in enumerate(ctx.types) if entity_type_key(kind) == type)


def _check_type(fields: dict, task_spec: dict) -> str | None:
    known = [entity_type_key(t) for t in entity_types(task_spec.get("label_names", []))]
    if fields["type"] not in known:
        return f"no entity type {fields['type']!r} in label_names (types: {', '.join(known)})"
    return None


@statistic("f1_{type}", "ner", higher_is_better=True, percent=True, per_unit=SENTENCE, reference="seqeval",
           check=_check_type,
           replicates=lambda ctx, type: _type_f1(ctx.resampled, len(ctx.types), _type_index(ctx, type)))
def f1_per_type(ctx, type):
    """Entity F1 of one type (the type's name in lower snake case, ``creative-work`` → ``f1_creative_work``), from
    that type's counts only."""
    return float(_type_f1(ctx.totals, len(ctx.types), _type_index(ctx, type)))
_register("token_accuracy", "ner", _extra(0), higher_is_better=True, percent=True,
          per_unit="(words tagged right, words) in the sentence", reference="seqeval accuracy_score",
          doc="Words whose tag is right / all words.")
_register("unseen_word_rate", "ner", _extra(1), higher_is_better=False, percent=True,
          per_unit="(words the model never saw, words) in the sentence",
          doc="Words the model never saw (cut by max_length, or tokenised to nothing; predicted O) / all words.")

_register("label_loyalty", "ner_pair", _extra(0), higher_is_better=True, percent=True,
          per_unit="(words with the teacher's tag, words) in the sentence", reference="Xu et al. 2021",
          doc="Words whose predicted tag is the teacher's / all words (word-level argmax agreement).")
_register("probability_loyalty", "ner_pair", _extra(1), higher_is_better=True,
          per_unit="(Σ over its words of 1 − √JSD₂(p_t, p_s), words) in the sentence", reference="Xu et al. 2021",
          doc="Mean over words of 1 − √JSD₂(p_t, p_s) of the two tag distributions.")
_register("entity_f1_vs_teacher", "ner_pair", _micro(2), higher_is_better=True, percent=True,
          per_unit="(TP, #predicted, #gold) entities per type, the teacher's predicted tags as gold",
          doc="The student's entity micro F1 with the teacher's predicted tags as the reference.")
