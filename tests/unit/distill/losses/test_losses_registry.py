"""The loss registry (read torch-free from the decorators), config validation and kd_objective wiring."""
import inspect
import re
import subprocess
import sys
import types

import pytest
import torch

import kdbench.distill.losses as losses
from kdbench.config import DistillConfig, load_suite
from kdbench.distill.losses import LOSSES
from kdbench.distill.trainer import kd_objective
from kdbench.errors import KdbenchError
from kdbench.registry import LOSS_LEVELS

LOGIT_PARAMS = ["student_logits", "teacher_logits", "temperature", "t2_scaling"]


def logit_losses() -> list[str]:
    return LOSSES.names(level="logits")


def test_registry_metadata_and_objects_agree():
    assert all(meta["level"] in LOSS_LEVELS and meta["description"] for _, meta in LOSSES.metas())
    assert set(logit_losses()) == {"forward_kl", "reverse_kl", "generalized_jsd", "tvd", "skew_kl", "skew_reverse_kl",
                                   "taid", "logit_mse"}
    for name in LOSSES.names():  # every name is a function or term defined in the package, never a submodule
        assert not isinstance(getattr(losses, name), types.ModuleType), name
        assert LOSSES[name].__module__.startswith("kdbench.distill.losses.")
        assert getattr(losses, LOSSES[name].__name__) is LOSSES[name]


@pytest.mark.parametrize("name", logit_losses())
def test_logit_losses_share_one_signature_and_catalog_args_match(name):
    sig = inspect.signature(LOSSES.get(name))
    params = list(sig.parameters.values())
    assert [p.name for p in params[:4]] == LOGIT_PARAMS
    assert params[2].default == 1.0 and params[3].default is True
    extras = {p.name: p.default for p in params[4:] if p.name != "mask"}
    assert all(p.kind is p.KEYWORD_ONLY for p in params[4:])
    assert extras == {arg: spec["default"] for arg, spec in LOSSES.meta(name).get("args", {}).items()}


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_documents_its_formula_and_a_reference(name):
    fn = LOSSES.get(name)
    doc = fn.__doc__ + (sys.modules[fn.__module__].__doc__ or "")
    assert re.search(r"(^|\s)(L|JSD\(β\)|VR)\s+= ", fn.__doc__), "formula"
    assert re.search(r"et al\. (19|20)\d\d", doc), "reference"


def test_config_and_catalog_do_not_import_torch():
    code = ("import sys, kdbench.config, kdbench.distill.losses\n"
            "kdbench.config.load_suite('quickstart', ['distill.loss=taid', 'distill.loss_args.t=0.5'])\n"
            "print(sorted(kdbench.distill.losses.LOSSES.names()) and 'torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_config_accepts_any_logit_loss_with_its_args():
    cfg = load_suite("quickstart", ["distill.loss=generalized_jsd", "distill.loss_args={beta: 0.25}"])
    assert cfg.distill.loss == "generalized_jsd" and cfg.distill.loss_args == {"beta": 0.25}
    cfg = load_suite("quickstart", ["distill.loss=skew_kl", "distill.loss_args.lam=0.2"])
    assert cfg.distill.loss_args == {"lam": 0.2}
    default = load_suite("quickstart").distill
    assert default.loss == "forward_kl" and default.loss_args == {}
    assert DistillConfig().loss is None  # the head's own default loss (forward_kl; logit_mse for regression)


@pytest.mark.parametrize("overrides, pattern", [
    (["distill.loss=fkl"], r"key 'distill.loss'.*unknown loss 'fkl' \(known: forward_kl, generalized_jsd"),
    (["distill.loss=forward_k"], r"key 'distill.loss'.*unknown loss 'forward_k'; did you mean 'forward_kl'\?"),
    (["distill.loss=generalized_jsd", "distill.loss_args={betta: 0.5}"],
     r"key 'distill.loss_args'.*unknown argument 'betta' for loss 'generalized_jsd' \(its arguments: beta\)"),
    (["distill.loss=generalized_jsd", "distill.loss_args={beta: 1.5}"], r"'beta' must be in \[0, 1\], got 1.5"),
    (["distill.loss=taid", "distill.loss_args={t: high}"], r"'t' must be a number, got 'high'"),
    (["distill.loss_args={beta: 0.5}"], r"unknown argument 'beta' for loss 'forward_kl' \(its arguments: none\)"),
])
def test_bad_loss_or_args_is_one_line_naming_the_key(overrides, pattern):
    with pytest.raises(KdbenchError, match=pattern) as e:
        load_suite("quickstart", overrides)
    assert "\n" not in str(e.value)


def test_a_feature_level_loss_is_refused_for_a_logit_head():
    from kdbench.distill.recipes import recipe
    from kdbench.tasks import get_task

    task = get_task("sst2")
    with pytest.raises(KdbenchError, match=r"task sst2 \(classification head\): distill.loss: loss 'hidden_mse' "
                                           r"works on hidden; this head is distilled with: forward_kl"):
        recipe(task).check(task, load_suite("quickstart", ["distill.loss=hidden_mse"]))


def test_kd_objective_passes_loss_args_through():
    t = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
    s = torch.tensor([[0.3, 0.1, 0.0], [0.2, -0.4, 0.1]], requires_grad=True)
    y = torch.tensor([0, 2])
    ce = torch.nn.functional.cross_entropy(s, y)
    for loss, args in [("generalized_jsd", {"beta": 0.3}), ("taid", {"t": 0.7}), ("tvd", {}), ("skew_reverse_kl", {"lam": 0.2})]:
        cfg = DistillConfig(loss=loss, loss_args=args, alpha=0.6, temperature=2.0, t2_scaling=False)
        expected = 0.6 * LOSSES.get(loss)(s, t, 2.0, False, **args) + 0.4 * ce
        assert torch.allclose(kd_objective(cfg)(s, y, t), expected)
    # a different beta is a different loss: the arguments really arrive
    a = kd_objective(DistillConfig(loss="generalized_jsd", loss_args={"beta": 0.1}))(s, y, t)
    b = kd_objective(DistillConfig(loss="generalized_jsd", loss_args={"beta": 0.9}))(s, y, t)
    assert not torch.allclose(a, b)


def test_kdbench_losses_lists_every_loss_with_level_and_description():
    from click.testing import CliRunner

    from kdbench.cli import main

    out = CliRunner().invoke(main, ["losses"])
    assert out.exit_code == 0
    listing, applies = out.output.split("\n\n")
    lines = listing.splitlines()
    assert [line.split()[0] for line in lines] == LOSSES.names()
    assert "hidden     distill.features  causal_lm, classification, regression, embedding, token_classification" in applies
    assert "logits     distill.loss      causal_lm, classification, regression (logit_mse only)" in applies
    for line, (_, meta) in zip(lines, LOSSES.metas()):
        assert line.split()[1] == meta["level"] and meta["description"] in line
    assert "[beta=0.5 in [0, 1]]" in next(line for line in lines if line.startswith("generalized_jsd"))
    ranking = CliRunner().invoke(main, ["losses", "--level", "ranking"])
    listing, applies = ranking.output.split("\n\n")
    assert listing.split()[0] == "margin_mse" and len(listing.splitlines()) == 1
    assert applies.splitlines()[1].split()[:2] == ["ranking", "distill.loss"]
    assert "Example" in CliRunner().invoke(main, ["losses", "--help"]).output
