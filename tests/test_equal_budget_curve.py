"""benchmarks/equal_budget_curve.py: CPU time of validations (recorded, or estimated between known points) and the
BD columns that compare runs at equal CPU time."""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def curve():
    return load_benchmark("equal_budget_curve")


def _val(bpps, psnrs):
    return {f"q{q}_{k}": v for q, b, p in zip((1, 6, 10), bpps, psnrs) for k, v in (("bpp", b), ("psnr", p))}


def test_validation_cpu_is_recorded_or_interpolated_between_known_points(curve):
    run = {"step": 300, "cpu_s": 500.0, "history": [
        {"step": 100, "val": _val([0.1, 0.5, 1.0], [20, 22, 23])},  # before CPU was recorded: estimated
        {"step": 200, "cpu_s": 250.0, "segment_start": True},  # the step cost changed here
        {"step": 250, "cpu_s": 380.0, "val": _val([0.1, 0.5, 1.0], [21, 23, 24])},
    ]}
    first, second = curve.validation_points(run)
    assert first["estimated"] and first["cpu_s"] == pytest.approx(125.0)  # on the line (0, 0) - (200, 250)
    assert not second["estimated"] and second["cpu_s"] == 380.0
    # an anchor from elsewhere (an earlier checkpoint) refines the estimate
    (first, _) = curve.validation_points(run, [(150, 150.0)])
    assert first["cpu_s"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="CPU time falls"):
        curve.validation_points(run, [(150, 300.0)])


def test_table_pairs_each_run_with_the_reference_at_the_nearest_cpu_time(curve):
    ref = {"step": 20, "cpu_s": 200.0, "history": [
        {"step": 10, "cpu_s": 100.0, "val": _val([0.1, 0.5, 1.0], [20, 22, 23])},
        {"step": 20, "cpu_s": 200.0, "val": _val([0.1, 0.5, 1.0], [21, 23, 24])}]}
    same_as_late_ref = {"step": 5, "cpu_s": 210.0, "history": [
        {"step": 5, "cpu_s": 190.0, "val": _val([0.1, 0.5, 1.0], [21, 23, 24])}]}
    text = curve.table({"ref": ref, "test": same_as_late_ref}, reference="ref")
    row = next(line for line in text.splitlines() if line.startswith("| test |"))
    assert "+0.0 % / +0.00 dB (at 3.3)" in row  # equal to the reference's validation at 200 s, not the one at 100 s
    cheaper = {"step": 5, "cpu_s": 210.0, "history": [
        {"step": 5, "cpu_s": 190.0, "val": _val([0.09, 0.45, 0.9], [21, 23, 24])}]}
    row = next(line for line in curve.table({"ref": ref, "test": cheaper}, reference="ref").splitlines()
               if line.startswith("| test |"))
    assert "-10.0 %" in row


def test_quality_labels_include_runs_validated_on_ms_ssim(curve):
    """An MS-SSIM run's validations also carry ``q6_ms_ssim``: the labels are still q1, q6, q10."""
    points = [{"val": {**_val([0.1, 0.5, 1.0], [20, 22, 23]), "q1_ms_ssim": 0.9, "q6_ms_ssim": 0.95}}]
    assert curve.qualities(points) == ["q1", "q6", "q10"]


@pytest.mark.parametrize("spec", ["tcm=4044", "tcm=4044:x", "tcm"])
def test_malformed_anchor_is_a_usage_error(curve, spec, capsys):
    """A malformed ``--anchor`` stops with the parser's usage message naming the expected form, before any run loads."""
    with pytest.raises(SystemExit) as stop:
        curve.main(["tcm=/nonexistent-run", "--anchor", spec])
    assert stop.value.code == 2
    assert f"--anchor takes LABEL=STEP:CPU_S (e.g. tcm=4044:4351), not {spec!r}" in capsys.readouterr().err
