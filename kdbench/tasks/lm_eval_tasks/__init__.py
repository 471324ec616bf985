"""lm-eval task YAMLs shipped with kdbench, and the dataset loader they share.

The YAMLs here are ordinary lm-evaluation-harness tasks (``lm_eval --include_path`` this folder, or a
kdbench ``lm_eval`` task's ``include_path``). Instead of ``dataset_path`` they name
``custom_dataset: !function kdbench.tasks.lm_eval_tasks.mirror_dataset`` with the hub id, config and
splits in ``dataset_kwargs``, so the same file reads the local mirror when ``KDBENCH_DATA_DIR`` is set
(resolved when the task is built, not when the YAML is written) and the hub otherwise — the way every
kdbench dataset is loaded (:func:`kdbench.data.load_split`).
"""
from __future__ import annotations

from pathlib import Path

import datasets

TASKS_DIR = Path(__file__).resolve().parent


def mirror_dataset(hub_id: str, hub_config: str | None = None, splits: list[str] = ("validation",),
                   **_metadata) -> datasets.DatasetDict:
    """The ``splits`` of ``hub_id``/``hub_config`` as lm-eval's ``custom_dataset`` wants them: a
    ``DatasetDict`` keyed by split name. lm-eval also passes the task's metadata (``version``, model
    arguments...) as keyword arguments; they do not choose the data and are ignored."""
    from kdbench.data import DatasetSpec, load_split

    return datasets.DatasetDict(
        {split: load_split(DatasetSpec(hub_id, hub_config, split)).rows for split in splits}
    )
