"""``docs/metrics.md`` and the ``kdbench metrics`` listing, generated from the metric registry (so
the reference cannot drift from the code: a test compares the file with :func:`markdown`)."""
from __future__ import annotations

import textwrap

from kdbench.metrics.spec import Kind, MetricSpec, kinds

REGENERATE = "kdbench metrics --markdown > docs/metrics.md"

INTRO = f"""\
# Metrics: definitions, formulas, references

*Generated from the metric registry (`{REGENERATE}`, or `make docs`); a test fails when this page
and the code disagree.*

Every metric is a pure function of predictions (it never loads a model), defined with its spec in
one module of `kdbench/metrics`: its name as in `report.json`, the **kind** of predictions it reads,
whether higher is better, whether it shows as a percentage, the per-unit statistic its confidence
interval resamples, and its paired test for two runs on the same units (what `kdbench gate` runs).
A task names the metrics it reports and its `main_score` (the headline leaderboards rank by);
`kdbench metrics` lists them in a terminal.

In the run record each metric is `{{"value": float, "ci": [low, high] | null}}`; the CI is a 95%
percentile bootstrap interval over the kind's units (see [Confidence intervals](#confidence-intervals)).
Notation: N units, K classes, `p_i` the predicted distribution of example i, `y_i` its gold label,
`conf_i = max_k p_ik` the top-label confidence, `c_i = 1[argmax_k p_ik = y_i]` correctness, B the
number of bins (`eval.ece_bins`, default 15). Logs are natural unless marked log₂. A name with a
`{{field}}` is a template: `ndcg_at_{{k}}` stands for `ndcg_at_10`, `ndcg_at_100`...

Paired tests: **exact McNemar** for per-unit 0/1 outcomes (accuracy, exact match, label loyalty);
**paired bootstrap** otherwise (both runs evaluated on the same resamples of the units). A metric
without a better direction (a fitted parameter) is reported and never gated.

A new metric is one decorated function in one module of `kdbench/metrics`
(`@metric(name, kind, higher_is_better=..., per_unit=...)` for a mean of per-unit values, returning
them; `@statistic(..., replicates=...)` for anything else, returning the value); its docstring's
first paragraph is its formula here. It then appears in `kdbench metrics`, in this page, in the task
checks and in the gate with no other edit.
"""

NOTES = """\
## Notes

Reliability-diagram data: `calibration.reliability_bins(probs, labels, n_bins, strategy="width"|"mass")`
returns per-bin `count`, mean `confidence`, `accuracy` and the `edges`; the HTML report plots it.
The curve itself: `calibration.coverage_accuracy_curve`.

Temperature scaling divides the **logits** (here ln p, which equals the logits up to a per-row
constant) by T and applies softmax over the **class axis**; dividing probabilities, or a softmax
over examples, are the classic mistakes and are tested against. (The T² factor of KD losses belongs
to `kdbench/distill/losses`, not to these metrics.)

The causal-LM token metrics (`lm_pair`) are computed from each model's top-k next-token
distribution (union of the two top-k supports plus a rest bucket); the approximation and its
measured error are described in `kdbench/metrics/lm.py`. `top1_agreement` is exact.
`loyalty.lm_token_metrics(teacher_logprobs, student_logprobs)` gives the exact full-vocabulary
values from (T, V) log-probabilities.

**Regression loyalty** is kdbench's definition: Xu et al. 2021 introduce loyalty for regression
from a normalised teacher–student distance, but the normalisation is not published in a form we
could verify; we normalise by the label range and take the square root to mirror probability
loyalty (1 for identical predictions, 0 at a full-range disagreement).

The GLUE average (`summary.glue_average` of the record, `kdbench.metrics.glue`) is the unweighted
mean over tasks of each task's `glue_score` metrics' mean, MNLI matched and mismatched as one task
(Wang et al. 2019).
"""

STATISTICS = """\
## Statistics

- **Paired bootstrap** (`stats.paired_bootstrap(a_values, b_values)`): difference of two systems on
  the same items; items are resampled with their pair kept together, so the statistic is the mean
  of d_i = a_i − b_i. Returns the value, the percentile CI and the two-sided bootstrap p-value
  2·min(P*(Δ ≤ 0), P*(Δ ≥ 0)) (Koehn 2004; Berg-Kirkpatrick et al. 2012;
  `stats.bootstrap_p_value`, the one p-value of every paired bootstrap). A metric that is not a mean
  (ECE, F1, a correlation, a ratio) is evaluated on both runs with the same resamples
  (`stats.paired_draws`) and the same p-value is taken from the differences.
- **Exact McNemar** (`stats.mcnemar_exact(a_correct, b_correct)`): b = #(A right, B wrong),
  c = #(A wrong, B right); under H0 b ~ Binomial(b + c, ½); two-sided p from
  `scipy.stats.binomtest` (McNemar 1947; Fay 2010). **Effect size: the conditional (matched-pairs)
  odds ratio OR = b / c**, with the exact CI obtained from the Clopper–Pearson interval [pl, pu] of
  b/(b + c) as [pl/(1 − pl), pu/(1 − pu)] (Breslow & Day 1980, §7); the accuracy difference
  (b − c)/N is returned too.
- **Comparing the KD student with its no-KD baseline** (`spec.compare`, the record's
  `student|baseline` pair): the kind's comparison metric, as `<metric>_difference` (paired-bootstrap
  CI) and `mcnemar_p_value` / `mcnemar_odds_ratio` (CI: the exact interval above; omitted when not
  finite) for 0/1 outcomes, or the bootstrap p-value otherwise.
- **Multiple comparisons** (`stats.adjust_p_values`): the gate corrects the p-values of all its
  checks of a run, Holm's step-down adjustment by default (Holm 1979; Bonferroni as an option).
- **Multi-seed aggregation** (`stats.aggregate_seeds`, `stats.aggregate_seed_results`): mean ± sample
  standard deviation (ddof = 1) over seeds; in run-record form the CI is the t interval
  mean ± t₀.₉₇₅,ₙ₋₁ · s/√n (with one seed, that seed's bootstrap CI is kept).
"""

INTERVALS = """\
## Confidence intervals

Percentile bootstrap (Efron 1979; Efron & Tibshirani 1993): the 2.5% and 97.5% quantiles of the
metric over 1000 (`eval.bootstrap_samples`) resamples of the kind's units (examples, sentences,
queries, documents), seeded by the run seed. One engine makes every resample
(`kdbench.metrics.stats.Resampled`); all metrics of one `kdbench.metrics.spec.score` call share one
resampling context, so their resamples are the same draws (the means of per-query and per-question
values are each resampled on their own, units ordered by their values).

- **Up to N × resamples = 2·10⁷ draws** (e.g. N ≤ 20,000 at 1000 resamples): the exact Efron
  bootstrap; the draw counts of every resample form one (resamples × N) matrix, and every metric is
  evaluated on it in vectorised form (binned sums by matrix products, equal-mass bins and the
  selective/coverage metrics from cumulative draw counts in confidence order, the coverage AUC with
  harmonic-number sums, ratio metrics from resampled column sums).
- **Larger N**: the Poisson bootstrap (Hanley & MacGibbon 2006; Chamandy et al. 2012) on at most 256
  *atoms*: units consecutive in a key (classifiers: in confidence, and in the same equal-width bin;
  pairs: in probability loyalty). An atom of n units gets a Poisson(n) draw count — exactly the sum
  of its members' Poisson(1) weights — and the sum of a per-unit quantity over its m draws is taken
  from its normal approximation m·mean + √m·sd·z. Tests check the intervals against the exact
  bootstrap (endpoints within a fifth of the interval's width; in practice within a few percent).
  This is what makes the full classifier set for 100,000 × 10 take < 1 s
  (`python benchmarks/bench_metrics.py`). Rank correlations always use exact Efron draws.
- The temperature-scaled metrics are resampled on the evaluation half with T held fixed (the CI is
  conditional on the fitted T).
- ECE-type metrics are biased upwards in small samples (Kumar et al. 2019), and so are their
  resamples: their percentile interval may sit entirely above the point estimate for a
  well-calibrated model on few examples. That is reported as is, not patched.
"""

REFERENCES = """\
## References

- Berg-Kirkpatrick, Burkett, Klein (2012). An Empirical Investigation of Statistical Significance in NLP. EMNLP.
- Biderman et al. (2024). Lessons from the Trenches on Reproducible Evaluation of Language Models. arXiv:2405.14782.
- Breslow, Day (1980). Statistical Methods in Cancer Research, vol. 1. IARC.
- Brier (1950). Verification of forecasts expressed in terms of probability. Monthly Weather Review.
- Chamandy, Muralidharan, Najmi, Naidu (2012). Estimating Uncertainty for Massive Data Streams. Google.
- Cobbe et al. (2021). Training Verifiers to Solve Math Word Problems. arXiv:2110.14168.
- DeGroot, Fienberg (1983). The comparison and evaluation of forecasters. The Statistician.
- Efron (1979). Bootstrap methods: another look at the jackknife. Annals of Statistics.
- Efron, Tibshirani (1993). An Introduction to the Bootstrap. Chapman & Hall.
- Fay (2010). Two-sided exact tests and matching confidence intervals for discrete data. R Journal.
- Gao et al. (2020). The Pile: An 800GB Dataset of Diverse Text for Language Modeling. arXiv:2101.00027.
- Gao et al. (2021). A framework for few-shot language model evaluation (lm-evaluation-harness). Zenodo.
- Geifman, El-Yaniv (2017). Selective classification for deep neural networks. NeurIPS.
- Geifman, Uziel, El-Yaniv (2019). Bias-reduced uncertainty estimation for deep neural classifiers. ICLR.
- Gorodkin (2004). Comparing two K-category assignments by a K-category correlation coefficient. Comput. Biol. Chem.
- Guo, Pleiss, Sun, Weinberger (2017). On Calibration of Modern Neural Networks. ICML.
- Gupta, Ramdas (2022). Top-label calibration and multiclass-to-binary reductions. ICLR.
- Hanley, MacGibbon (2006). Creating non-parametric bootstrap samples using Poisson frequencies. Computer Methods and Programs in Biomedicine.
- Holm (1979). A simple sequentially rejective multiple test procedure. Scandinavian Journal of Statistics.
- Järvelin, Kekäläinen (2002). Cumulated gain-based evaluation of IR techniques. ACM TOIS.
- Koehn (2004). Statistical Significance Tests for Machine Translation Evaluation. EMNLP.
- Kull et al. (2019). Beyond temperature scaling: obtaining well-calibrated multiclass probabilities with Dirichlet calibration. NeurIPS.
- Kumar, Liang, Ma (2019). Verified Uncertainty Calibration. NeurIPS.
- Leviathan, Kalman, Matias (2023). Fast Inference from Transformers via Speculative Decoding. ICML.
- Lin (1991). Divergence measures based on the Shannon entropy. IEEE Trans. Information Theory.
- Matthews (1975). Comparison of the predicted and observed secondary structure of T4 phage lysozyme. BBA.
- McNemar (1947). Note on the sampling error of the difference between correlated proportions. Psychometrika.
- Naeini, Cooper, Hauskrecht (2015). Obtaining Well Calibrated Probabilities Using Bayesian Binning. AAAI.
- Nixon, Dusenberry, Zhang, Jerfel, Tran (2019). Measuring Calibration in Deep Learning. CVPR Workshops.
- Roelofs, Cain, Shlens, Mozer (2022). Mitigating bias in calibration error estimation. AISTATS.
- Spearman (1904). The proof and measurement of association between two things. American Journal of Psychology.
- Stanton, Izmailov, Kirichenko, Alemi, Wilson (2021). Does Knowledge Distillation Really Work? NeurIPS.
- Tjong Kim Sang, De Meulder (2003). Introduction to the CoNLL-2003 Shared Task. CoNLL.
- Wang et al. (2019). GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding. ICLR.
- Xu, Zhou, Ge, Xu, McAuley, Wei (2021). Beyond Preserved Accuracy: Evaluating Loyalty and Robustness of BERT Compression. EMNLP.
"""


def _direction(spec: MetricSpec) -> str:
    return {True: "higher ↑", False: "lower ↓", None: "–"}[spec.higher_is_better]


def _test(spec: MetricSpec) -> str:
    return "not gated" if not spec.gated and spec.higher_is_better is None else spec.test


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _kind_section(k: Kind) -> list[str]:
    lines = [f'<a id="{k.name}"></a>', "", f"## `{k.name}`: {k.reads}", "",
             f"Unit (what a CI and a paired test resample): one {k.unit}."]
    if k.pair:
        lines[-1] += f" Teacher–student metrics of two such models: [`{k.pair}`](#{k.pair})."
    if k.parents:
        lines[-1] += " Every metric of " + ", ".join(f"[`{p}`](#{p})" for p in k.parents) + " applies too."
    if k.compare:
        lines[-1] += (f" The KD student is compared with its no-KD baseline on **{k.compare}** "
                      f"(`{'`, `'.join(k.comparison_names())}`).")
    lines += ["", "| name | better | shown as | per-unit statistic | paired test | formula | reference |",
              "|---|---|---|---|---|---|---|"]
    for name, spec in k.metrics.items():
        lines.append(f"| **{_cell(name)}** | {_direction(spec)} | {'%' if spec.percent else 'value'} | "
                     f"{_cell(spec.per_unit)} | {_test(spec)} | {_cell(spec.formula)} | {_cell(spec.reference)} |")
    return lines + [""]


def markdown() -> str:
    """The whole of ``docs/metrics.md``."""
    sections = [INTRO]
    for k in kinds():
        sections.append("\n".join(_kind_section(k)))
    return "\n".join([*sections, NOTES, STATISTICS, INTERVALS, REFERENCES]).rstrip() + "\n"


def listing(kind_name: str | None = None, width: int = 100) -> str:
    """``kdbench metrics``: one block per metric — name, kind, direction, CI, paired test; its
    formula and reference, wrapped."""
    out = [f"{'name':<26} {'kind':<19} {'better':<9} {'CI':<42} paired test (kdbench gate)"]
    for k in kinds():
        if kind_name is not None and k.name != kind_name:
            continue
        for name, spec in k.metrics.items():
            out.append(f"{name:<26} {k.name:<19} {_direction(spec):<9} {spec.ci_method:<42} {_test(spec)}")
            body = spec.formula + (f" [{spec.reference}]" if spec.reference != "—" else "")
            out += textwrap.wrap(body, width, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(out)
