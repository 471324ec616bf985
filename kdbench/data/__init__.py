"""Dataset loading: hub id + config + split, or the local mirror under ``KDBENCH_DATA_DIR``."""
from kdbench.data.loading import DatasetSpec, LoadedSplit, load_split

__all__ = ["DatasetSpec", "LoadedSplit", "load_split"]
