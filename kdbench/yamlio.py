"""Reading YAML into validated pydantic objects, with one-line errors naming file, line and key."""
from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from kdbench.errors import KdbenchError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Config objects reject unknown keys, so a typo is an error and not a silent default, and
    infinite or NaN numbers, which no setting means (an infinite temperature or rate trains to NaN)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def read_text(path: Path) -> str:
    """A config file's text; unreadable or non-UTF-8 files are one-line errors."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise KdbenchError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    except OSError as e:
        raise KdbenchError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None


def read_yaml(path: Path) -> dict[str, Any]:
    text = read_text(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise KdbenchError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise KdbenchError(f"{path}: expected a mapping at the top level")
    return raw


def _key_line(path: Path, loc: tuple) -> int | None:
    """Line of the first key of ``loc`` found in the file, for error messages."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def key_error(path: Path, loc: tuple, message: str) -> KdbenchError:
    """``FILE:LINE: key 'a.b': message`` for the key at ``loc`` in a YAML file."""
    key = ".".join(str(x) for x in loc) or "(top level)"
    line = _key_line(path, loc)
    where = f"{path}:{line}" if line else str(path)
    return KdbenchError(f"{where}: key '{key}': {message}")


def beside_file(value: str, context: dict | None) -> Path:
    """A path from a YAML file, resolved against that file's folder (``validate`` passes the file as
    validation context), else against the working directory."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        source = (context or {}).get("path")
        path = (Path(source).resolve().parent if source else Path.cwd()) / path
    return path.resolve()


def validate(model: type[M], raw: dict[str, Any], path: Path) -> M:
    try:
        return model.model_validate(raw, context={"path": path})  # e.g. to resolve paths relative to the file
    except ValidationError as e:
        err = e.errors()[0]
        raise key_error(path, err["loc"], err["msg"]) from None
