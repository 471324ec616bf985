"""The lm-eval bridge, both directions, on SmolLM2-135M-Instruct and mirror data (small slices).

* kdbench -> lm-eval: our ``kdbench`` lm-eval model (registered model, object, command line).
* lm-eval -> kdbench: the ``lm_eval`` task family turns lm-eval's per-document samples into
  Predictions, cross-checked against lm-eval's own ``hf`` model, the raw mirror files and direct
  backend calls.
"""
from __future__ import annotations

import re

import pytest

from kdbench.errors import KdbenchError
from tests.helpers.lm_eval_bridge import _write_task


def test_bad_spec_keys_name_file_and_key(tmp_path):
    from kdbench.tasks import get_task

    path = _write_task(tmp_path, "lm_eval_task: kdbench_sst2\nmetrics: [acc]\nmain_score: acc\npair_metrics: [no_such_loyalty]\n")
    with pytest.raises(KdbenchError, match=rf"{re.escape(str(path))}:6: key 'pair_metrics.0': unknown pair metric 'no_such_loyalty'"):
        get_task("bad_lm", [tmp_path])
    _write_task(tmp_path, "lm_eval_task: kdbench_sst2\nmetrics: [accuracy, f1_macro]\nmain_score: accuracy\n")
    with pytest.raises(KdbenchError, match="unknown metric 'f1_macro' for lm-eval task 'kdbench_sst2'"):
        get_task("bad_lm", [tmp_path]).eval_data(4)
    _write_task(tmp_path, "lm_eval_task: kdbench_gsm8k\nmetrics: [exact_match]\nmain_score: exact_match\nfilter: no-such-filter\n")
    with pytest.raises(KdbenchError, match="no filter 'no-such-filter' .*strict-match, flexible-extract"):
        get_task("bad_lm", [tmp_path]).eval_data(4)
