"""Writing a kdbench task file for the lm-eval bridge tests."""
from __future__ import annotations

from pathlib import Path


# --------------------------------------------------------------------------------------------------
# (5) bad specs: one line naming what and where
# --------------------------------------------------------------------------------------------------
def _write_task(folder: Path, body: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "bad.yaml"
    path.write_text("name: bad_lm\nfamily: lm_eval\n" + body)
    return path
