"""The embedding recipe (bi-encoders, retrieval tasks): distil a sentence encoder into a smaller one.

* Teacher: ``suite.teacher.model`` as published. Bi-encoders are not fine-tuned here (there is no
  supervised retrieval training in kdbench): ``teacher.finetune`` must be null (a mixed suite sets
  it per task).
* Student: any builder: ``pretrained`` (its own checkpoint and tokenizer, e.g.
  paraphrase-MiniLM-L3-v2), ``layer_selection`` of the teacher's layers, a ``config`` student.
* Objective: embedding-level KD, the registry loss ``distill.loss`` at the ``embedding`` level
  (``cosine_embedding``: 1 − cos(e_s, e_t) between the student's and the teacher's mean-pooled
  sentence embeddings), or ranking KD with ``margin_mse`` (below); ``distill.features`` terms
  (hidden states, attention maps, MiniLM relations: :mod:`.features`) are added to either. For unit
  vectors ‖a − b‖² = 2(1 − cos), so MSE on normalised embeddings is the same objective up to a
  constant factor; no second option is needed. ``alpha``, ``temperature``
  and ``t2_scaling`` do not apply (there are no labels and no logits).
* Training texts: the corpus documents and the queries that have no judgments, with no relevance
  labels at all (unsupervised), shuffled with the suite seed, the first ``data.train_rows`` kept.
  This is *transductive on the corpus text*, as in domain-adaptation KD: the student sees the
  documents it will later retrieve (never the evaluated queries, never a judgment).
* Teacher embeddings of the training texts are computed once and cached with safetensors, keyed by
  the teacher revision, the training texts' hash, the token limits and the dtype.
* Embedding widths must match: retrieval compares vectors in the student's own space, so a
  projection learnt only for training would not carry over to evaluation; different widths are an
  error naming both.
* Margin-MSE (``distill.loss: margin_mse``, Hofstätter et al. 2020): training queries are the
  queries without judgments; the teacher searches the corpus (its first ``data.train_rows``
  shuffled documents) exactly and its ranking gives each query a positive and
  ``loss_args.negatives`` hard negatives. The mirror has test judgments only, so the positive is
  the teacher's own top-1 document (a pseudo-label, as in distillation practice) and the negatives
  the next ranks; the run record says so. The student matches the teacher's cosine margins
  s(q, d⁺) − s(q, d⁻), queries and documents both encoded by the student being trained.
* Baseline: the student before distillation (``method: pretrained_no_kd``); label-only training
  does not exist for retrieval here.
"""
from __future__ import annotations

import hashlib
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from kdbench import devices
from kdbench.backends.batching import collate, encode
from kdbench.backends.embeddings import HFEmbedder, mean_pool, search
from kdbench.backends.hf import autocast
from kdbench.config import SuiteConfig
from kdbench.distill.recipes.base import Recipe, where
from kdbench.distill.teacher_cache import cached_array
from kdbench.distill.trainer import LossFn
from kdbench.errors import KdbenchError
from kdbench.registry import LOSSES, RECIPES
from kdbench.roles import TEACHER
from kdbench.tasks.base import LoadedModel, RunSettings, Task, TrainableTask
from kdbench.timing import timed


class CorpusTask(TrainableTask, Protocol):
    """What the embedding recipe reads of a task beyond :class:`TrainableTask`: its two token
    limits (documents, queries)."""

    def doc_max_length(self, settings: RunSettings) -> int: ...
    def query_max_length(self, settings: RunSettings) -> int: ...


def training_texts(task: CorpusTask, rows: int | None, seed: int) -> tuple[list[str], list[bool]]:
    """Corpus documents (task template) and queries without judgments, shuffled with ``seed``, first
    ``rows`` kept; returns the texts and whether each one is a document (for its token limit)."""
    documents, queries = task.inputs(task.train_data(rows, seed))
    texts = documents + queries
    is_doc = [True] * len(documents) + [False] * len(queries)
    order = np.random.default_rng(seed).permutation(len(texts))[: rows or len(texts)]
    return [texts[i] for i in order], [is_doc[i] for i in order]


def _features(tokenizer, texts: list[str], is_doc: list[bool], doc_len: int, query_len: int) -> list[dict]:
    out: list[dict | None] = [None] * len(texts)
    for flag, limit in ((True, doc_len), (False, query_len)):
        idx = [i for i, d in enumerate(is_doc) if d == flag]
        if not idx:  # a small slice may hold no query (or no document)
            continue
        for i, f in zip(idx, encode(tokenizer, [texts[i] for i in idx], None, limit)):
            out[i] = f
    return out


def _sha(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\n")
    return h.hexdigest()


def _embed(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Unit-length mean-pooled embeddings of a padded batch (gradients kept)."""
    return F.normalize(mean_pool(model(**batch).last_hidden_state, batch["attention_mask"]), dim=-1)


def _ranking(suite: SuiteConfig, task: Task) -> bool:
    from kdbench.distill.recipes.base import resolved_loss

    return LOSSES.meta(resolved_loss(suite, task))["level"] == "ranking"


def check_widths(suite: SuiteConfig, task: Task, teacher_width: int, student_width: int) -> None:
    """Retrieval compares vectors in the student's own space: a projection learnt for training
    only would not carry over to evaluation, so the widths must match."""
    if teacher_width != student_width:
        raise KdbenchError(f"{where(suite, task)}: the student's embeddings have {student_width} dimensions and the "
                           f"teacher's {teacher_width}; embedding KD needs the same width (choose a student of width "
                           f"{teacher_width})")


@RECIPES.register("embedding", loss_levels=["embedding", "ranking"], default_loss="cosine_embedding", features=True)
class EmbeddingRecipe(Recipe):
    """Embedding-level or ranking KD of a bi-encoder; the baseline is the student before KD."""

    trains_baseline = False
    task: CorpusTask

    @classmethod
    def check_models(cls, task: Task, suite: SuiteConfig, teacher_config, student_config) -> None:
        check_widths(suite, task, teacher_config.hidden_size, student_config.hidden_size)

    @classmethod
    def training_rows(cls, task: Task, suite: SuiteConfig) -> int:
        if _ranking(suite, task):  # margin_mse trains on the queries without judgments
            return len(task.inputs(task.train_data(None, suite.seed))[1])
        return len(training_texts(task, suite.data.train_rows, suite.seed)[0])

    def setup(self) -> None:
        task, suite = self.task, self.suite
        settings = RunSettings.of(suite)
        self.doc_len, self.query_len = task.doc_max_length(settings), task.query_max_length(settings)
        self.teacher, info = self.teacher_as_is()
        self.add_teacher(TEACHER, self.teacher, info, self.teacher.source)
        self.revision = info["revision"]
        self.embedder = HFEmbedder(self.teacher.model, self.teacher.tokenizer, suite.dtype,
                                   batch_size=suite.eval.batch_size)
        if _ranking(suite, task):
            self._mine()
            info["train_embeddings_reused"] = None
        else:
            info["train_embeddings_reused"] = self._teacher_embeddings()

    def _cache_key(self, texts: list[str]) -> dict:
        return {"teacher": self.suite.teacher.model, "revision": self.revision, "texts_sha256": _sha(texts),
                **({"layers": self.suite.teacher.layers} if self.suite.teacher.layers else {}),  # old keys unchanged
                "doc_max_length": self.doc_len, "query_max_length": self.query_len, "dtype": self.suite.dtype,
                "pooling": "mean+l2", **devices.cache_fields(self.teacher.model.device)}

    def _teacher_embeddings(self) -> bool:
        """Embedding KD on the corpus and unjudged queries: the teacher's embeddings of the training texts."""
        task, suite = self.task, self.suite
        self.texts, self.is_doc = training_texts(task, suite.data.train_rows, suite.seed)
        with timed(self.durations, "teacher_embeddings_s"):
            teacher_features = _features(self.teacher.tokenizer, self.texts, self.is_doc, self.doc_len, self.query_len)
            targets, reused = cached_array(
                "teacher_embeddings", self._cache_key(self.texts),
                lambda: self.embedder.embed_features(teacher_features, desc=f"teacher embeddings {task.name}"),
                rows=len(self.texts))
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        n_docs = sum(self.is_doc)
        self.train_dataset = {"id": task.train_data(None, suite.seed).id, "split": "corpus + queries without judgments",
                              "rows": len(self.texts), "sha256": _sha(self.texts), "documents": n_docs,
                              "queries": len(self.texts) - n_docs, "labels": False, "transductive": True}
        return reused

    def _mine(self) -> None:
        """Margin-MSE over hard negatives mined with the teacher: its ranking of the first
        ``data.train_rows`` shuffled documents for every query without judgments."""
        task, suite = self.task, self.suite
        negatives = int(self.distill.loss_args.get("negatives", 4))
        data = task.train_data(None, suite.seed)
        docs, self.queries = task.inputs(data)
        if not self.queries:
            raise KdbenchError(f"task {task.name}: margin_mse trains on the queries without judgments, and there are none")
        order = np.random.default_rng(suite.seed).permutation(len(docs))[: suite.data.train_rows or len(docs)]
        self.docs = [docs[i] for i in order]
        if len(self.docs) < negatives + 1:
            raise KdbenchError(f"task {task.name}: margin_mse with {negatives} negatives needs at least {negatives + 1} "
                               f"documents, data.train_rows leaves {len(self.docs)}")
        with timed(self.durations, "teacher_mining_s"):
            doc_emb, _ = cached_array(
                "teacher_embeddings", self._cache_key(self.docs),
                lambda: self.embedder.embed_features(encode(self.teacher.tokenizer, self.docs, None, self.doc_len),
                                                     desc="teacher documents"),
                rows=len(self.docs))
            query_emb = self.embedder.embed_features(encode(self.teacher.tokenizer, self.queries, None, self.query_len))
            ranked, scores = search(query_emb, doc_emb, negatives + 1)
        self.pos, self.neg = torch.as_tensor(ranked[:, 0]), torch.as_tensor(ranked[:, 1:])
        self.t_pos, self.t_neg = torch.as_tensor(scores[:, 0]), torch.as_tensor(scores[:, 1:])
        self.train_dataset = {
            "id": data.id, "split": "queries without judgments + corpus", "rows": len(self.queries),
            "sha256": _sha(self.queries + self.docs), "queries": len(self.queries), "documents": len(self.docs),
            "negatives_per_query": negatives, "mined_by": "teacher exact search (cosine)",
            "positives": "teacher top-1 (pseudo-label: the mirror has test judgments only)",
            "negatives": f"teacher ranks 2..{negatives + 1}", "labels": False, "transductive": True}

    def check_student(self, student: LoadedModel) -> None:
        check_widths(self.suite, self.task, self.teacher.model.config.hidden_size, student.model.config.hidden_size)

    def loss_step(self, role: str, student: LoadedModel) -> LossFn:
        if _ranking(self.suite, self.task):
            return self._margin_loss(student)
        kd_loss, targets = LOSSES.get(self.distill.loss), self.targets

        def loss_fn(outputs, idx: np.ndarray, batch) -> torch.Tensor:
            emb = mean_pool(outputs.last_hidden_state, batch["attention_mask"])
            return kd_loss(emb, targets[idx].to(emb.device))

        return loss_fn

    def _margin_loss(self, student: LoadedModel) -> LossFn:
        """The student's cosine margins s(q, d⁺) − s(q, d⁻) against the teacher's, queries and
        documents both encoded by the student being trained."""
        margin_mse, dtype = LOSSES.get(self.distill.loss), self.suite.dtype
        pos, neg, t_pos, t_neg = self.pos, self.neg, self.t_pos, self.t_neg
        doc_features = encode(student.tokenizer, self.docs, None, self.doc_len)
        model, tokenizer = student.model, student.tokenizer

        def loss_fn(outputs, idx: np.ndarray, batch) -> torch.Tensor:
            q = F.normalize(mean_pool(outputs.last_hidden_state, batch["attention_mask"]), dim=-1)
            wanted = torch.cat([pos[idx, None], neg[idx]], dim=1)  # (B, 1 + k) document indices
            unique, inverse = torch.unique(wanted, return_inverse=True)
            d_batch = {k: v.to(q.device) for k, v in collate(tokenizer, [doc_features[i] for i in unique]).items()}
            with autocast(dtype, q.device):
                d = _embed(model, d_batch).float()
            s = (q.unsqueeze(1) * d[inverse]).sum(-1)  # (B, 1 + k) student cosines
            return margin_mse(s[:, 0], s[:, 1:], t_pos[idx].to(q.device), t_neg[idx].to(q.device))

        return loss_fn

    def features(self, role: str, student: LoadedModel) -> list[dict]:
        if _ranking(self.suite, self.task):
            return encode(student.tokenizer, self.queries, None, self.query_len)
        return _features(student.tokenizer, self.texts, self.is_doc, self.doc_len, self.query_len)

    def method(self, role: str) -> dict:
        return {"method": "kd", "loss": self.distill.loss, "loss_args": self.distill.loss_args}
