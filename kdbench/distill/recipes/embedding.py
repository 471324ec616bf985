"""The embedding recipe (bi-encoders, retrieval tasks): distil a sentence encoder into a smaller one.

* Teacher: ``suite.teacher.model`` as published. Bi-encoders are not fine-tuned here (there is no
  supervised retrieval training in kdbench); ``teacher.finetune`` is ignored and the run record
  says so (``finetuned: false, finetune_ignored: true``), so one suite can mix classification and
  retrieval tasks.
* Student: ``student.builder`` ``pretrained`` (its own checkpoint and tokenizer, e.g.
  paraphrase-MiniLM-L3-v2) or ``layer_selection`` of the teacher's layers.
* Objective: embedding-level KD, the registry loss ``distill.loss`` at the ``embedding`` level
  (``cosine_embedding``: 1 − cos(e_s, e_t) between the student's and the teacher's mean-pooled
  sentence embeddings), or ranking KD with ``margin_mse`` (below); ``distill.features`` terms
  (hidden states, attention maps, MiniLM relations: :mod:`.features`) are added to either. For unit vectors ‖a − b‖² = 2(1 − cos), so MSE on normalised embeddings is
  the same objective up to a constant factor; no second option is needed. ``alpha``, ``temperature``
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

import copy
import hashlib
from pathlib import Path

import numpy as np
import torch

import torch.nn.functional as F

from kdbench import devices
from kdbench.backends.batching import collate, encode
from kdbench.backends.embeddings import HFEmbedder, mean_pool, search
from kdbench.backends.hf import autocast
from kdbench.config import SuiteConfig
from kdbench.distill.losses import LOSSES
from kdbench.distill.losses.catalog import CATALOG
from kdbench.distill.recipes import BASELINE, STUDENT, TEACHER, Trained
from kdbench.distill.recipes.common import (
    check_batches,
    require,
    require_derived_student,
    require_teacher_layers,
    save_student,
    timed,
    where,
)
from kdbench.distill.recipes.features import feature_kd, train_student
from kdbench.distill.teacher_cache import cached_array
from kdbench.distill.trainer import TRAINER_REVISION, train
from kdbench.errors import KdbenchError
from kdbench.models.loading import count_parameters, load_for_head, load_tokenizer, model_revision
from kdbench.models.students import build_student
from kdbench.tasks.base import LoadedModel, RunSettings
from kdbench.tasks.retrieval import RetrievalTask


def training_texts(task: RetrievalTask, rows: int | None, seed: int) -> tuple[list[str], list[bool]]:
    """Corpus documents (task template) and queries without judgments, shuffled with ``seed``, first
    ``rows`` kept; returns the texts and whether each one is a document (for its token limit)."""
    data = task.eval_data(None)
    texts = task.documents(data) + [text for _, text in data.unjudged_queries]
    is_doc = [True] * len(data.doc_ids) + [False] * len(data.unjudged_queries)
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


def _embedding_loss(suite: SuiteConfig, task: RetrievalTask):
    name = suite.distill.loss
    level = CATALOG[name].level
    if level not in ("embedding", "ranking"):
        known = ", ".join(n for n, i in CATALOG.items() if i.level in ("embedding", "ranking"))
        raise KdbenchError(f"suite {suite.name}, task {task.name} (embedding head): distill.loss '{name}' works on "
                           f"{level}; bi-encoders are distilled with an embedding- or ranking-level loss: {known}")
    return LOSSES[name]


def _student(suite: SuiteConfig, teacher: LoadedModel) -> tuple[LoadedModel, dict]:
    spec = suite.student
    if spec.builder == "pretrained":
        model = load_for_head(spec.model, "embedding", spec.revision, teacher.model.device)
        return (LoadedModel(model, load_tokenizer(spec.model, spec.revision), spec.model),
                {"builder": "pretrained", "init_from": spec.model, "init_revision": model_revision(spec.model, spec.revision)})
    model, made = build_student(teacher.model, spec, suite.seed)
    return LoadedModel(model, teacher.tokenizer, teacher.source), made


def _embed(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Unit-length mean-pooled embeddings of a padded batch (gradients kept)."""
    return F.normalize(mean_pool(model(**batch).last_hidden_state, batch["attention_mask"]), dim=-1)


def _margin_setup(task: RetrievalTask, suite: SuiteConfig, teacher: LoadedModel, student: LoadedModel,
                  revision: str | None, doc_len: int, query_len: int, durations: dict):
    """Margin-MSE over hard negatives mined with the teacher: (query features, loss_fn, record)."""
    from kdbench.distill.losses import margin_mse

    negatives = int(suite.distill.loss_args.get("negatives", 4))
    data = task.eval_data(None)
    if not data.unjudged_queries:
        raise KdbenchError(f"task {task.name}: margin_mse trains on the queries without judgments, and there are none")
    docs = task.documents(data)
    order = np.random.default_rng(suite.seed).permutation(len(docs))[: suite.data.train_rows or len(docs)]
    docs = [docs[i] for i in order]
    if len(docs) < negatives + 1:
        raise KdbenchError(f"task {task.name}: margin_mse with {negatives} negatives needs at least {negatives + 1} "
                           f"documents, data.train_rows leaves {len(docs)}")
    queries = [text for _, text in data.unjudged_queries]
    with timed(durations, "teacher_mining_s"):
        embedder = HFEmbedder(teacher.model, teacher.tokenizer, suite.dtype, batch_size=suite.eval.batch_size)
        doc_emb, _ = cached_array(
            "teacher_embeddings",
            {"teacher": suite.teacher.model, "revision": revision, "texts_sha256": _sha(docs), "doc_max_length": doc_len,
             "query_max_length": query_len, "dtype": suite.dtype, "pooling": "mean+l2",
             **devices.cache_fields(teacher.model.device)},
            lambda: embedder.embed_features(encode(teacher.tokenizer, docs, None, doc_len), desc="teacher documents"),
            rows=len(docs))
        query_emb = embedder.embed_features(encode(teacher.tokenizer, queries, None, query_len))
        ranked, scores = search(query_emb, doc_emb, negatives + 1)
    pos, neg = torch.as_tensor(ranked[:, 0]), torch.as_tensor(ranked[:, 1:])
    t_pos, t_neg = torch.as_tensor(scores[:, 0]), torch.as_tensor(scores[:, 1:])
    doc_features = encode(student.tokenizer, docs, None, doc_len)
    model = student.model

    def loss_fn(outputs, idx: np.ndarray, batch) -> torch.Tensor:
        q = F.normalize(mean_pool(outputs.last_hidden_state, batch["attention_mask"]), dim=-1)
        wanted = torch.cat([pos[idx, None], neg[idx]], dim=1)  # (B, 1 + k) document indices
        unique, where = torch.unique(wanted, return_inverse=True)
        d_batch = {k: v.to(q.device) for k, v in collate(student.tokenizer, [doc_features[i] for i in unique]).items()}
        with autocast(suite.dtype, q.device):
            d = _embed(model, d_batch).float()
        s = (q.unsqueeze(1) * d[where]).sum(-1)  # (B, 1 + k) student cosines
        return margin_mse(s[:, 0], s[:, 1:], t_pos[idx].to(q.device), t_neg[idx].to(q.device))

    features = encode(student.tokenizer, queries, None, query_len)
    record = {"id": data.id, "split": "queries without judgments + corpus", "rows": len(queries),
              "sha256": _sha(queries + docs), "queries": len(queries), "documents": len(docs),
              "negatives_per_query": negatives, "mined_by": "teacher exact search (cosine)",
              "positives": "teacher top-1 (pseudo-label: the mirror has test judgments only)",
              "negatives": f"teacher ranks 2..{negatives + 1}", "labels": False, "transductive": True}
    return features, loss_fn, record


def _cosine_setup(task: RetrievalTask, suite: SuiteConfig, teacher: LoadedModel, student: LoadedModel,
                  revision: str | None, kd_loss, doc_len: int, query_len: int, durations: dict):
    """Embedding KD on the corpus and unjudged queries: (features, loss_fn, record, cache reused)."""
    texts, is_doc = training_texts(task, suite.data.train_rows, suite.seed)
    texts_sha = _sha(texts)
    with timed(durations, "teacher_embeddings_s"):
        teacher_features = _features(teacher.tokenizer, texts, is_doc, doc_len, query_len)
        embedder = HFEmbedder(teacher.model, teacher.tokenizer, suite.dtype, batch_size=suite.eval.batch_size)
        targets, reused = cached_array(
            "teacher_embeddings",
            {"teacher": suite.teacher.model, "revision": revision, "texts_sha256": texts_sha, "doc_max_length": doc_len,
             "query_max_length": query_len, "dtype": suite.dtype, "pooling": "mean+l2",
             **devices.cache_fields(teacher.model.device)},
            lambda: embedder.embed_features(teacher_features, desc=f"teacher embeddings {task.name}"),
            rows=len(texts),
        )
    target_t = torch.as_tensor(targets, dtype=torch.float32)

    def loss_fn(outputs, idx: np.ndarray, batch) -> torch.Tensor:
        emb = mean_pool(outputs.last_hidden_state, batch["attention_mask"])
        return kd_loss(emb, target_t[idx].to(emb.device))

    features = _features(student.tokenizer, texts, is_doc, doc_len, query_len)
    data = task.eval_data(None)
    record = {"id": data.id, "split": "corpus + queries without judgments", "rows": len(texts),
              "sha256": texts_sha, "documents": sum(is_doc), "queries": len(texts) - sum(is_doc),
              "labels": False, "transductive": True}
    return features, loss_fn, record, reused


def check(task: RetrievalTask, suite: SuiteConfig) -> None:
    """What the suite alone must say for this recipe (run first, and by the pre-flight for every task)."""
    require(suite, "teacher", "student")
    _embedding_loss(suite, task)
    require_teacher_layers(suite, task, finetunes=False)
    require_derived_student(suite, task, pretrained=True)
    if suite.distill.features and suite.student.builder == "pretrained":
        raise KdbenchError(f"suite {suite.name}, task {task.name}: distill.features compare the teacher's and the "
                           "student's tokens, so the student must share the teacher's tokenizer (not builder pretrained)")


def check_data(task: RetrievalTask, suite: SuiteConfig) -> None:
    """The training batches fit in the training texts (margin_mse: the queries without judgments)."""
    if CATALOG[suite.distill.loss].level == "ranking":
        rows = len(task.eval_data(None).unjudged_queries)
    else:
        rows = len(training_texts(task, suite.data.train_rows, suite.seed)[0])
    check_batches(suite, task, rows, {"distill": suite.distill})


def check_widths(suite: SuiteConfig, task: RetrievalTask, teacher_width: int, student_width: int) -> None:
    """Retrieval compares vectors in the student's own space: a projection learnt for training
    only would not carry over to evaluation, so the widths must match."""
    if teacher_width != student_width:
        raise KdbenchError(f"{where(suite, task)}: the student's embeddings have {student_width} dimensions and the "
                           f"teacher's {teacher_width}; embedding KD needs the same width (choose a student of width "
                           f"{teacher_width})")


def run(task: RetrievalTask, suite: SuiteConfig, run_dir: Path) -> Trained:
    check(task, suite)
    kd_loss = _embedding_loss(suite, task)
    settings = RunSettings.of(suite)
    doc_len, query_len = task.doc_max_length(settings), task.query_max_length(settings)
    durations: dict[str, float] = {}

    t_spec = suite.teacher
    teacher = LoadedModel(load_for_head(t_spec.model, "embedding", t_spec.revision, devices.resolve(suite.device)).eval(),
                          load_tokenizer(t_spec.model, t_spec.revision), t_spec.model)
    revision = model_revision(t_spec.model, t_spec.revision)
    student, student_info = _student(suite, teacher)
    check_widths(suite, task, teacher.model.config.hidden_size, student.model.config.hidden_size)
    baseline = copy.deepcopy(student.model) if suite.baseline else None  # the student before KD

    if CATALOG[suite.distill.loss].level == "ranking":
        features, loss_fn, train_dataset = _margin_setup(task, suite, teacher, student, revision, doc_len, query_len,
                                                         durations)
        reused = None
    else:
        features, loss_fn, train_dataset, reused = _cosine_setup(task, suite, teacher, student, revision, kd_loss,
                                                                 doc_len, query_len, durations)
    fkd = feature_kd(suite, teacher.model, where(suite, task))
    with timed(durations, "student_train_s"):
        run_train = lambda model, fn: train(model, student.tokenizer, features, suite.distill, fn,  # noqa: E731
                                            seed=suite.seed, dtype=suite.dtype, desc=f"distil student on {task.name}")
        stats, extra = train_student(fkd, student.model, loss_fn, run_train)
    student_model, student_id = save_student(student.model, student.tokenizer, run_dir, task, STUDENT)

    models = {TEACHER: teacher, STUDENT: student_model}
    dirs = {TEACHER: t_spec.model, STUDENT: student_model.source}
    info = {
        TEACHER: {"id": t_spec.model, "revision": revision, "params": count_parameters(teacher.model),
                  "finetuned": False, "finetune_ignored": t_spec.finetune is not None,
                  "train_embeddings_reused": reused},
        STUDENT: {"id": student_id, "revision": None, "params": count_parameters(student.model), **student_info,
                  "method": "kd", "loss": suite.distill.loss, "loss_args": suite.distill.loss_args, **extra,
                  "steps": stats.steps, "final_loss": stats.final_loss, "trainer_revision": TRAINER_REVISION},
    }
    if baseline is not None:
        if suite.student.builder == "pretrained":  # unchanged: the published checkpoint
            models[BASELINE], record_id = LoadedModel(baseline.eval(), student.tokenizer, student.source), student.source
        else:
            models[BASELINE], record_id = save_student(baseline, student.tokenizer, run_dir, task, BASELINE)
        dirs[BASELINE] = models[BASELINE].source
        info[BASELINE] = {"id": record_id, "revision": student_info.get("init_revision"),
                          "params": count_parameters(baseline), **student_info, "method": "pretrained_no_kd"}

    return Trained(models=models, info=info, dirs=dirs, train_dataset=train_dataset, durations=durations)
