"""What a model head is, read from its registration on its inference backend (``@HEADS.register``
in :mod:`kdbench.backends`): the transformers auto class that loads it, the Hub pipeline tag of its
model cards, and what loading and timing need to know. A new head is its backend (with this
registration), its recipe (``@RECIPES.register``) and its family (``@FAMILIES.register(head=...)``)."""
from __future__ import annotations

from dataclasses import dataclass

from kdbench.registry import HEADS


@dataclass(frozen=True)
class Head:
    name: str
    auto_class: str  # transformers' auto class, e.g. AutoModelForTokenClassification
    pipeline_tag: str  # the Hub's pipeline tag (model cards)
    fine_tuned: bool = False  # its models are fine-tuned per task (a plain checkpoint lacks the head)
    fresh_pooler: bool = False  # a fresh head includes the base model's pooler (sequence heads)
    unread: tuple[str, ...] = ()  # weight prefixes its forward never reads (missing ones are fine)
    generates: bool = False  # its models generate text (efficiency times decoding on a GPU)


def head(name: str, where: str = "") -> Head:
    """The registered head ``name`` (without importing its backend)."""
    meta = dict(HEADS.meta(name, where))
    meta["unread"] = tuple(meta.get("unread", ()))
    return Head(name, **meta)


def auto_class(name: str):
    """The transformers auto class of head ``name``."""
    import transformers

    return getattr(transformers, head(name).auto_class)
