"""Names that become file names and run-record keys: task, suite, role, run id, baseline.

One rule for all of them, read from the run record's schema (``report/schema.json``,
``$defs/name``), so a name accepted where it enters (a suite or task YAML, a CLI flag, a library
call) is one the record accepts and one that stays a single file name under the folder the user
named: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit (so never ``..``
or a hidden file), at most 64 characters (a run id, which holds a suite name, 128).
"""
from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path

from kdbench.errors import KdbenchError

SCHEMA_PATH = Path(__file__).resolve().parent / "report" / "schema.json"


@cache
def _rule() -> tuple[re.Pattern, int, int]:
    schema = json.loads(SCHEMA_PATH.read_text())
    defs = schema["$defs"]
    return re.compile(defs["name_chars"]["pattern"]), defs["name"]["maxLength"], schema["properties"]["run_id"]["maxLength"]


def problem(value, kind: str = "name") -> str | None:
    """Why ``value`` is not a valid ``kind`` (``"run id"`` allows the longer length), or None."""
    pattern, max_name, max_run_id = _rule()
    limit = max_run_id if kind == "run id" else max_name
    shown = repr(value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "...")
    if not isinstance(value, str):
        return f"{kind} {shown} is not a string"
    if len(value) > limit:
        return f"{kind} {shown} is {len(value)} characters long (at most {limit})"
    if not pattern.fullmatch(value):
        return (f"{kind} {shown} is not a valid name: use letters, digits, '.', '_' and '-', "
                "starting with a letter or digit")
    return None


def check(value, kind: str = "name", where: str = "") -> str:
    """``value`` if it is a valid ``kind``, else a one-line :class:`KdbenchError` (``where`` first)."""
    why = problem(value, kind)
    if why:
        raise KdbenchError(f"{where}{why}")
    return value


def validator(kind: str):
    """A pydantic ``field_validator`` body: ValueError (so the YAML key and line are named)."""

    def check_field(value):
        why = problem(value, kind)
        if why:
            raise ValueError(why)
        return value

    return check_field


def slug(text: str, max_length: int | None = None) -> str:
    """A valid name made from any text (a model id, a path): unsafe runs become ``_``; a changed or
    shortened text gets a short hash of the original, so different texts stay different names."""
    limit = max_length or _rule()[1]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "x"
    if safe == text and len(safe) <= limit:
        return safe
    return f"{safe[:limit - 7]}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"
