"""A CPU run and a GPU run of the same models: comparable in quality (the gate gates them, the
leaderboard ranks them together), never in latency (the gate says it does not compare them, the
leaderboard marks the other hardware's latencies and plots them apart)."""
from __future__ import annotations

from kdbench import gate
from kdbench.report import compare, leaderboard
from kdbench.report.record import read_record
from tests.helpers.reports import make_run

H200 = {"dtype": "bf16", "device": "cuda:0", "device_type": "cuda", "device_index": 0, "gpu_name": "NVIDIA H200"}


def test_hardware_classes():
    assert compare.hardware({"environment": {"device": "cpu"}}) == "cpu"
    assert compare.hardware({}) == "cpu"  # records before the device fields ran on the CPU
    assert compare.hardware({"environment": H200}) == "cuda: NVIDIA H200"
    cpu, gpu = {"environment": {"device": "cpu"}}, {"environment": H200}
    other_gpu = {"environment": {**H200, "gpu_name": "NVIDIA A100-SXM4-80GB"}}
    assert compare.efficiency_comparable(cpu, {"environment": {"device_type": "cpu"}})
    assert compare.efficiency_comparable(gpu, {"environment": dict(H200)})
    assert not compare.efficiency_comparable(cpu, gpu) and not compare.efficiency_comparable(gpu, other_gpu)


def test_gate_compares_quality_across_devices_and_never_latency(tmp_path):
    cpu = make_run(tmp_path, "cpu-run", seed=0)
    gpu = make_run(tmp_path, "gpu-run", seed=0, created="2026-01-02T00:00:00+00:00", extra={"environment": H200})
    result = gate.run_gate(cpu, gpu)
    assert result.exit_code == 0 and result.checks  # the same predictions: quality gated, and passes
    note = [n for n in result.not_gated if n.startswith("efficiency figures")]
    assert note == ["efficiency figures (baseline on cpu, candidate on cuda: NVIDIA H200: not comparable across hardware)"]
    assert "efficiency figures" in result.markdown()
    same = gate.run_gate(cpu, make_run(tmp_path, "cpu-again", seed=0, created="2026-01-03T00:00:00+00:00"))
    assert not [n for n in same.not_gated if n.startswith("efficiency figures")]


def test_leaderboard_ranks_both_and_keeps_latency_apart(tmp_path):
    reports = tmp_path / "reports"
    make_run(reports, "cpu-a", seed=0)
    make_run(reports, "cpu-b", seed=1, created="2026-01-02T00:00:00+00:00")
    make_run(reports, "gpu-c", seed=0, created="2026-01-03T00:00:00+00:00", extra={"environment": H200})
    assert compare.hardware(read_record(reports / "gpu-c")) == "cuda: NVIDIA H200"
    out = tmp_path / "lb"
    leaderboard.build(reports, out)
    page = (out / "suite-quickstart.html").read_text()
    assert page.count('title="not comparable: measured on cuda: NVIDIA H200') == 2 * 3  # two roles × b1, b32 and speed-up as a draft (all timings)
    assert page.count("not comparable: sst2") == 0  # quality: every run is comparable
    plots = sorted(p.name for p in (out / "plots").glob("*latency*"))
    assert len(plots) == 2 and any("cuda" in p for p in plots)  # one latency plot per hardware
    assert "vs latency on cpu" in page or "against latency on cpu" in page
