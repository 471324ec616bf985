"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a folder ``step-N/`` holding the model weights (``model.safetensors``), the
optimiser's state tensors (``optimizer.safetensors``), each process's torch RNG state
(``rng-RANK.safetensors``) and ``state.json`` (optimiser hyper-parameters, LR schedule, step
counters, data-order position, numpy Generator state, loss hooks). It is written in a hidden
folder and renamed into place; ``latest.json`` (written atomically) then names it, so a kill at
any moment leaves the previous checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from kdbench.errors import KdbenchError
from kdbench.fsio import write_atomic

LATEST = "latest.json"


def _optimizer_split(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimiser state as (tensors keyed ``PARAM.NAME``, JSON-able rest)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in [*tensors.items(), *rest["scalars"].items()]:
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def staging(folder: Path, step: int) -> Path:
    """The hidden folder a checkpoint is assembled in (every process writes its RNG state here)."""
    tmp = Path(folder) / f".step-{step}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def save_rng(tmp: Path, rank: int) -> None:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(tmp / f"rng-{rank}.safetensors"))


def save(folder: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> Path:
    """Complete the checkpoint of optimiser step ``step`` (main process, after every process's
    :func:`save_rng`), publish it as the latest and drop the older ones."""
    folder = Path(folder)
    tmp = staging(folder, step)
    save_model(model, str(tmp / "model.safetensors"))  # handles tied weights (shared tensors)
    opt_tensors, opt_rest = _optimizer_split(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**state, "step": step, "optimizer": opt_rest}))
    final = folder / f"step-{step}"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    write_atomic(folder / LATEST, json.dumps({"step": step, "folder": final.name}))
    for old in folder.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest(folder: Path) -> Path | None:
    """The newest complete checkpoint under ``folder``, or None."""
    pointer = Path(folder) / LATEST
    if not pointer.is_file():
        return None
    path = Path(folder) / json.loads(pointer.read_text())["folder"]
    if not (path / "state.json").is_file():
        raise KdbenchError(f"checkpoint {path}: named by {pointer} but incomplete")
    return path


def read_state(path: Path) -> dict:
    return json.loads((Path(path) / "state.json").read_text())


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, rank: int) -> dict:
    """Restore weights, optimiser state and this process's RNG from checkpoint folder ``path``;
    returns ``state.json``."""
    path = Path(path)
    state = read_state(path)
    load_model(model, str(path / "model.safetensors"), device=str(next(model.parameters()).device))
    if optimizer is not None:
        optimizer.load_state_dict(_optimizer_join(load_file(str(path / "optimizer.safetensors")), state["optimizer"]))
    rng_file = path / f"rng-{rank}.safetensors"
    if not rng_file.is_file():
        raise KdbenchError(f"checkpoint {path}: no RNG state for process {rank} (resumed with more processes?)")
    rng = load_file(str(rng_file))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return state
