"""How many files a newcomer writes to extend kdbench, proved by writing them: each extension is a
package of its own in a temporary folder that the registry is pointed at (``Registry.extended``),
so nothing of kdbench is edited. A new logit loss is one module; a new metric one module
(tests/unit/metrics/test_metric_registry.py); a new family on an existing head one module and its task YAML; a
new head its backend, its recipe and its family (and the family's task YAML)."""
import math
import sys

import torch

from kdbench.registry import LOSSES
from tests.helpers.extending import plugin

HALF_KL = '''
from kdbench.distill.losses.kl import forward_kl
from kdbench.registry import LOSSES


@LOSSES.register("half_kl", level="logits", description="half the forward KL (a plug-in loss)",
                 args={"share": {"default": 0.5, "low": 0.0, "high": 1.0, "help": "the share of forward KL"}})
def half_kl(student_logits, teacher_logits, temperature=1.0, t2_scaling=True, *, share=0.5, mask=None):
    """L = share · forward KL (Hinton et al. 2015)."""
    return share * forward_kl(student_logits, teacher_logits, temperature, t2_scaling, mask=mask)
'''


def test_a_new_logit_loss_is_one_file(tmp_path, monkeypatch):
    """Validated in suites, listed by `kdbench losses`, taken by every logit head, wired into the
    KD objective with its arguments: from one decorated function, its module read before it is imported."""
    from kdbench import reference
    from kdbench.config import load_suite
    from kdbench.distill.losses import forward_kl
    from kdbench.distill.recipes import recipe
    from kdbench.distill.trainer import kd_term
    from kdbench.tasks import get_task

    package = plugin(tmp_path, monkeypatch, "ext_losses", {"half": HALF_KL})
    with LOSSES.extended(package):
        suite = load_suite("quickstart", ["distill.loss=half_kl", "distill.loss_args.share=0.25"])
        assert "ext_losses.half" not in sys.modules  # validated from its registration alone
        assert f"{'half_kl':<19} logits     half the forward KL (a plug-in loss)  [share=0.5 in [0, 1]]" in \
            reference.losses_listing()
        for name in ("sst2", "wnut_17", "gsm8k_text"):
            task = get_task(name)
            recipe(task).check(task, suite.model_copy(update={"teacher": suite.teacher.model_copy(
                update={"finetune": None if task.head == "causal_lm" else suite.teacher.finetune})}))
        s, t = torch.randn(4, 3), torch.randn(4, 3)
        got = kd_term(suite.distill)(s, t)
        assert math.isclose(got.item(), 0.25 * forward_kl(s, t, suite.distill.temperature).item(), rel_tol=1e-6)
    assert "half_kl" not in LOSSES  # the registry as it was


def test_listing_order_does_not_depend_on_what_was_imported_first():
    """docs/tasks.md lists FAMILIES in order: a family module imported before the registry's scan
    (as the CLI or a test may do) must not move its entries to the front."""
    import subprocess

    def families(first_import: str) -> str:
        code = f"{first_import}\nfrom kdbench.registry import FAMILIES\nprint(FAMILIES.names())"
        return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout

    plain = families("")
    assert families("import kdbench.tasks.generation") == plain
    assert families("import kdbench.tasks.ner, kdbench.tasks.classification") == plain
