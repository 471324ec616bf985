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
counts (TP, predicted, gold per entity type; right and total words) and the bootstrap resamples
those rows (:mod:`kdbench.metrics.stats`' scheme: Efron draws of sentences, vectorised and seeded)
and recomputes the ratios from the resampled sums — one chunking pass, not one per resample.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from kdbench.metrics.stats import Units, percentile_ci, resample_counts, resampled_sums, unit_budget

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


Statistic = Callable[[np.ndarray], np.ndarray]  # summed columns (..., M) -> values (...)


def ratio_metrics(
    columns: np.ndarray, statistics: dict[str, Statistic], *, n_samples: int = 1000, confidence: float = 0.95,
    seed: int = 0, order_key: np.ndarray | None = None, return_samples: bool = False,
) -> dict[str, dict] | tuple[dict[str, dict], dict[str, np.ndarray]]:
    """``{name: {"value", "ci"}}`` for statistics that are functions of column sums over sentences.

    ``columns`` is (sentences, M); the point value is ``statistic(columns.sum(0))``; the CI is the
    percentile interval of ``statistic`` over bootstrap resamples of the sentences, all statistics
    sharing the same resamples. ``order_key`` only matters for very large sets, where sentences are
    grouped into atoms of similar keys (see :mod:`kdbench.metrics.stats`). ``return_samples`` also
    returns each statistic's resampled values (for paired tests)."""
    columns = np.asarray(columns, dtype=np.float64)
    n = columns.shape[0]
    totals = columns.sum(axis=0)
    if n == 0:
        raise ValueError("no sentences to score")
    rng = np.random.default_rng(seed)
    key = np.arange(n, dtype=np.float64) if order_key is None else np.asarray(order_key, dtype=np.float64)
    units = Units.build(key, max_units=unit_budget(n, n_samples))
    mean, var = units.moments(columns)
    sums = resampled_sums(resample_counts(units, n_samples, rng), mean, var, rng)
    out, samples = {}, {}
    for name, statistic in statistics.items():
        samples[name] = np.asarray(statistic(sums), dtype=np.float64)
        out[name] = {"value": float(statistic(totals)), "ci": list(percentile_ci(samples[name], confidence))}
    return (out, samples) if return_samples else out


def entity_statistics(types: Sequence[str], offset: int = 0, prefix: str = "") -> dict[str, Statistic]:
    """Micro P/R/F1 and per-type F1 (``f1_<type>``) over count columns laid out as
    ``entity_columns`` makes them, starting at column ``offset``; names get ``prefix``."""
    t = len(types)
    tp = slice(offset, offset + t)
    pred = slice(offset + t, offset + 2 * t)
    gold = slice(offset + 2 * t, offset + 3 * t)

    def micro(which: int) -> Statistic:
        return lambda s: prf(s[..., tp].sum(-1), s[..., pred].sum(-1), s[..., gold].sum(-1))[which]

    stats = {f"{prefix}precision": micro(0), f"{prefix}recall": micro(1), f"{prefix}f1": micro(2)}
    for k, kind in enumerate(types):
        stats[f"{prefix}f1_{entity_type_key(kind)}"] = (
            lambda s, k=k: prf(s[..., offset + k], s[..., offset + t + k], s[..., offset + 2 * t + k])[2])
    return stats


def entity_columns(counts: np.ndarray) -> np.ndarray:
    """(sentences, types, 3) counts -> (sentences, 3·types) columns: all TP, then #pred, then #gold."""
    return np.concatenate([counts[:, :, 0], counts[:, :, 1], counts[:, :, 2]], axis=1)
