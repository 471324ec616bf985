"""The loss registry, its torch-free catalog, config validation and kd_objective wiring."""
import inspect
import re
import subprocess
import sys
import types

import pytest
import torch

import kdbench.distill.losses as losses
from kdbench.config import DistillConfig, load_suite
from kdbench.distill.losses import CATALOG, LEVELS, LOSSES, logit_losses
from kdbench.distill.trainer import kd_objective
from kdbench.errors import KdbenchError

LOGIT_PARAMS = ["student_logits", "teacher_logits", "temperature", "t2_scaling"]


def test_catalog_and_registry_agree():
    assert list(LOSSES) == list(CATALOG)
    assert all(info.level in LEVELS and info.description for info in CATALOG.values())
    assert set(logit_losses()) == {"forward_kl", "reverse_kl", "generalized_jsd", "tvd", "skew_kl", "skew_reverse_kl",
                                   "taid", "logit_mse"}
    for name in losses.__all__:  # no submodule shadows a function of the same name
        assert not isinstance(getattr(losses, name), types.ModuleType), name


@pytest.mark.parametrize("name", logit_losses())
def test_logit_losses_share_one_signature_and_catalog_args_match(name):
    sig = inspect.signature(LOSSES[name])
    params = list(sig.parameters.values())
    assert [p.name for p in params[:4]] == LOGIT_PARAMS
    assert params[2].default == 1.0 and params[3].default is True
    extras = {p.name: p.default for p in params[4:] if p.name != "mask"}
    assert all(p.kind is p.KEYWORD_ONLY for p in params[4:])
    assert extras == {a.name: a.default for a in CATALOG[name].args}


@pytest.mark.parametrize("name", list(CATALOG))
def test_every_loss_documents_its_formula_and_a_reference(name):
    fn = LOSSES[name]
    doc = fn.__doc__ + (sys.modules[fn.__module__].__doc__ or "")
    assert re.search(r"(^|\s)(L|JSD\(β\)|VR)\s+= ", fn.__doc__), "formula"
    assert re.search(r"et al\. (19|20)\d\d", doc), "reference"


def test_config_and_catalog_do_not_import_torch():
    code = "import sys, kdbench.config, kdbench.distill.losses; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_config_accepts_any_logit_loss_with_its_args():
    cfg = load_suite("quickstart", ["distill.loss=generalized_jsd", "distill.loss_args={beta: 0.25}"])
    assert cfg.distill.loss == "generalized_jsd" and cfg.distill.loss_args == {"beta": 0.25}
    cfg = load_suite("quickstart", ["distill.loss=skew_kl", "distill.loss_args.lam=0.2"])
    assert cfg.distill.loss_args == {"lam": 0.2}
    default = load_suite("quickstart").distill
    assert default.loss == "forward_kl" and default.loss_args == {}


@pytest.mark.parametrize("overrides, pattern", [
    (["distill.loss=fkl"], r"key 'distill.loss'.*unknown loss 'fkl' \(known: forward_kl, reverse_kl"),
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
    from kdbench.distill.recipes.common import require_logit_loss
    from kdbench.tasks import get_task

    with pytest.raises(KdbenchError, match=r"task sst2 \(classification head\): distill.loss: loss 'hidden_mse' "
                                           r"works on hidden, not logits.*forward_kl"):
        require_logit_loss(load_suite("quickstart", ["distill.loss=hidden_mse"]), get_task("sst2"))


def test_kd_objective_passes_loss_args_through():
    t = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
    s = torch.tensor([[0.3, 0.1, 0.0], [0.2, -0.4, 0.1]], requires_grad=True)
    y = torch.tensor([0, 2])
    ce = torch.nn.functional.cross_entropy(s, y)
    for loss, args in [("generalized_jsd", {"beta": 0.3}), ("taid", {"t": 0.7}), ("tvd", {}), ("skew_reverse_kl", {"lam": 0.2})]:
        cfg = DistillConfig(loss=loss, loss_args=args, alpha=0.6, temperature=2.0, t2_scaling=False)
        expected = 0.6 * LOSSES[loss](s, t, 2.0, False, **args) + 0.4 * ce
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
    assert [line.split()[0] for line in lines] == list(CATALOG)
    assert "hidden     distill.features  classification, regression, token_classification, embedding" in applies
    for line, info in zip(lines, CATALOG.values()):
        assert line.split()[1] == info.level and info.description in line
    assert "[beta=0.5 in [0, 1]]" in next(line for line in lines if line.startswith("generalized_jsd"))
    ranking = CliRunner().invoke(main, ["losses", "--level", "ranking"])
    listing, applies = ranking.output.split("\n\n")
    assert listing.split()[0] == "margin_mse" and len(listing.splitlines()) == 1
    assert applies.splitlines()[1].split()[:2] == ["ranking", "distill.loss"]
    assert "Example" in CliRunner().invoke(main, ["losses", "--help"]).output
