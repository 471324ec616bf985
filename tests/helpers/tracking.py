"""Reading the scalars back from TensorBoard event files."""
from __future__ import annotations


def scalars(folder):
    """{tag: [(step, value)]} from the TensorBoard event files in ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
