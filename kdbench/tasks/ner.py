"""Named-entity recognition (token classification): WNUT-17, CoNLL-2003 and any IOB2-tagged set.

Data: a ``tokens`` column (the words of a sentence) and a ``tags`` column, either tag strings
(``"B-person"``, WNUT-17 in the mirror) or class ids into ``label_names`` (CoNLL-2003 on the hub).
``label_names`` is also the order of the model head's classes.

Predictions are per word: the tag distribution at the word's first sub-token. A word the model
never sees (cut by ``max_length``, or tokenised to nothing) is predicted ``O``, so a gold entity
there is a miss rather than silently dropped; ``unseen_word_rate`` reports how many there were.
Unseen words count as predicted ``O`` in every metric, the pair metrics included (two models with
the same tokenizer and limit agree on them).

Metrics (entity level, CoNLL / seqeval semantics, defined in ``kdbench.metrics.ner``): ``f1``,
``precision``, ``recall`` (micro over entities), ``f1_<type>`` per entity type, ``token_accuracy``,
``unseen_word_rate``. Pair metrics: ``label_loyalty`` (word-level argmax agreement with the
teacher), ``probability_loyalty`` (mean over words of 1 − √JSD₂), ``entity_f1_vs_teacher`` (the
student's entity F1 with the teacher's predicted tags as reference). Every CI is a bootstrap over
sentences.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from pydantic import Field
from scipy.special import softmax
from transformers import AutoTokenizer

from kdbench.backends.token_classifier import HFTokenClassifier
from kdbench.data import LoadedSplit
from kdbench.errors import KdbenchError, ModelHeadError
from kdbench.metrics import ner as ner_metrics
from kdbench.metrics.ner import entity_types
from kdbench.models.loading import load_for_head, load_tokenizer
from kdbench.predictions.tokens import TokenPredictions
from kdbench.registry import FAMILIES
from kdbench.tasks.base import LoadedModel, RunSettings, Task, TaskSpecBase, unknown_metric
from kdbench.yamlio import StrictModel

_TAG = re.compile(r"^[BI]-\S+$")


class NerColumns(StrictModel):
    tokens: str = "tokens"
    tags: str = Field("ner_tags", description="IOB2 tag strings, or class ids into label_names")
    id: str | None = Field(None, description="stable example id column; row number when absent")


class NerSpec(TaskSpecBase):
    columns: NerColumns = Field(default_factory=NerColumns)
    label_names: list[str] = Field(..., min_length=2, description="IOB2 tags; their order is the model head's class ids")


@dataclass
class NerData:
    """Sentences of one split: words, gold class ids per word, example ids."""

    split: LoadedSplit
    tokens: list[list[str]]
    labels: list[np.ndarray]
    ids: list[str]


def word_tokenizer(model_id: str, revision: str | None = None):
    """The model's tokenizer, ready for pre-split words: byte-level BPE tokenizers (RoBERTa, GPT-2)
    refuse ``is_split_into_words`` unless each word gets its leading space (``add_prefix_space``)."""
    tokenizer = load_tokenizer(model_id, revision)
    try:
        tokenizer([["a", "b"]], is_split_into_words=True)
    except ValueError:
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision, add_prefix_space=True)
    return tokenizer


@FAMILIES.register("ner", head="token_classification", kind="ner")
class NerTask(Task):
    Spec = NerSpec

    def __init__(self, spec: NerSpec):
        super().__init__(spec)
        self.label_names = list(spec.label_names)
        self.label_ids = {t: i for i, t in enumerate(self.label_names)}
        self.outside = self.label_ids["O"]
        self.types = entity_types(self.label_names)

    @classmethod
    def check_spec(cls, spec: NerSpec) -> tuple[tuple, str] | None:
        names = spec.label_names
        if len(set(names)) != len(names):
            return ("label_names",), "repeats a tag"
        if "O" not in names:
            return ("label_names",), "needs the outside tag 'O'"
        bad = [t for t in names if t != "O" and not _TAG.match(t)]
        if bad:
            return ("label_names",), f"{bad[0]!r} is not an IOB2 tag (O, B-<type>, I-<type>)"
        missing_b = [t for t in names if t.startswith("I-") and "B-" + t[2:] not in names]
        if missing_b:
            return ("label_names",), f"{missing_b[0]!r} has no matching B- tag"
        return unknown_metric(spec)

    # data ---------------------------------------------------------------------------------------
    def load_data(self, split: str, rows: int | None = None, shuffle_seed: int | None = None) -> NerData:
        cols = self.spec.columns
        loaded = self.load(split, rows, shuffle_seed, [cols.tokens, cols.tags, cols.id])
        tokens = [list(map(str, t)) for t in loaded.rows[cols.tokens]]
        raw_tags = loaded.rows[cols.tags]
        ids = [str(x) for x in (loaded.rows[cols.id] if cols.id else range(len(tokens)))]
        labels = [self._tag_ids(tags, len(words), split, ex) for words, tags, ex in zip(tokens, raw_tags, ids)]
        return NerData(loaded, tokens, labels, ids)

    def _tag_ids(self, tags: list, n_words: int, split: str, example: str) -> np.ndarray:
        where = f"task {self.name}: split {split}, example {example}"
        if len(tags) != n_words:
            raise KdbenchError(f"{where}: {len(tags)} tags for {n_words} words")
        out = np.empty(n_words, dtype=np.int64)
        for j, tag in enumerate(tags):
            if isinstance(tag, str):
                if tag not in self.label_ids:
                    raise KdbenchError(f"{where}: unknown tag {tag!r} (label_names: {', '.join(self.label_names)})")
                out[j] = self.label_ids[tag]
            elif isinstance(tag, (int, np.integer)) and not isinstance(tag, bool):
                if not 0 <= tag < len(self.label_names):
                    raise KdbenchError(f"{where}: tag id {tag} outside 0..{len(self.label_names) - 1} of label_names")
                out[j] = tag
            else:
                raise KdbenchError(f"{where}: tag {tag!r} is neither a tag string nor a class id")
        return out

    def train_data(self, rows: int | None, seed: int) -> NerData:
        if self.spec.dataset.train_split is None:
            raise KdbenchError(f"task {self.name}: no training split is defined (dataset.train_split)")
        return self.load_data(self.spec.dataset.train_split, rows, shuffle_seed=seed)

    def inputs(self, data: NerData) -> list[list[str]]:
        """The sentences' words (the models read them pre-split)."""
        return data.tokens

    def labels(self, data: NerData) -> list[np.ndarray]:
        """Gold class ids into ``label_names``, per word."""
        return data.labels

    def eval_data(self, rows: int | None) -> NerData:
        return self.load_data(self.spec.dataset.eval_split, rows)

    def dataset_record(self, data: NerData) -> dict:
        gold = [[self.label_names[j] for j in row] for row in data.labels]
        return {**data.split.reference(), "rows": len(data.tokens),
                "words": int(sum(len(t) for t in data.tokens)),
                "entities": int(sum(len(ner_metrics.entities(g)) for g in gold))}

    # models and predictions ----------------------------------------------------------------------
    def load_model(self, model_id: str, revision: str | None = None, device=None) -> LoadedModel:
        model = load_for_head(model_id, self.head, revision, device)
        self.class_order(model.config)  # fail now on a head that does not fit the tag set
        return LoadedModel(model.eval(), word_tokenizer(model_id, revision), model_id)

    def head_config(self) -> dict:
        """``from_pretrained`` overrides giving a plain encoder this task's fresh head."""
        return {"num_labels": len(self.label_names), "id2label": dict(enumerate(self.label_names)),
                "label2id": dict(self.label_ids)}

    def class_order(self, config) -> np.ndarray:
        """Which model output column holds each of ``label_names``. A head whose ``id2label`` names
        the same tags in another order (a hub NER model) is reordered; generic ``LABEL_i`` names
        are taken in ``label_names`` order."""
        k = len(self.label_names)
        if config.num_labels != k:
            raise ModelHeadError(f"task {self.name}: model has {config.num_labels} output classes, "
                                 f"label_names has {k}")
        names = [str(config.id2label[i]) for i in range(k)]
        if names == self.label_names or all(n == f"LABEL_{i}" for i, n in enumerate(names)):
            return np.arange(k)
        if sorted(names) != sorted(self.label_names):
            raise ModelHeadError(f"task {self.name}: model labels {names} are not label_names {self.label_names}")
        return np.array([names.index(t) for t in self.label_names])

    def backend(self, model: LoadedModel, settings: RunSettings) -> HFTokenClassifier:
        return HFTokenClassifier(model.model, model.tokenizer, settings.dtype, self.max_length(settings),
                                 settings.eval.batch_size)

    def predict(self, model: LoadedModel, data: NerData, role: str, settings: RunSettings) -> TokenPredictions:
        backend = self.backend(model, settings)
        encoding = backend.encode(data.tokens)
        logits = backend.word_logits(encoding, desc=f"eval {self.name} [{role}]")
        order = self.class_order(model.model.config)
        probs, seen = [], []
        for i, z in enumerate(logits):
            mask = encoding.seen(i)
            probs.append(self.word_probs(z[:, order], mask))
            seen.append(mask)
        return TokenPredictions(self.name, role, data.ids, self.label_names, probs, seen, data.labels)

    def word_probs(self, logits: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """Softmax over tags for seen words; one-hot ``O`` for unseen ones (they predict ``O``)."""
        probs = softmax(logits.astype(np.float64), axis=1)
        probs[~seen] = 0.0
        probs[~seen, self.outside] = 1.0
        return probs

    def efficiency_inputs(self, data: NerData) -> tuple[list[str], list[str] | None]:
        return [" ".join(words) for words in data.tokens], None
