"""benchmarks/fresh_process_ab.py: variants alternate in fresh processes and each keeps its best figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def ab():
    return load_benchmark("fresh_process_ab")


def _variant(log: Path, name: str, values: list[float]) -> list[str]:
    """A command that appends its name to ``log`` and prints the n-th of ``values`` (n = its runs so far)."""
    code = (f"import pathlib; p = pathlib.Path({str(log)!r}); runs = p.read_text().split() if p.exists() else []; "
            f"n = runs.count({name!r}); p.write_text(' '.join(runs + [{name!r}])); "
            f"print({values!r}[n], {values!r}[n] * 10)")
    return [sys.executable, "-c", code]


def test_variants_alternate_in_fresh_processes_and_keep_their_best_round(ab, tmp_path):
    log = tmp_path / "order.txt"
    commands = {"a": _variant(log, "a", [3.0, 1.0, 2.0]), "b": _variant(log, "b", [5.0, 6.0, 4.0])}
    best = ab.best_of_fresh_processes(commands, 3, lambda out: dict(zip(("x", "y"), map(float, out.split()))))
    assert best == {"a": {"x": 1.0, "y": 10.0}, "b": {"x": 4.0, "y": 40.0}}
    assert log.read_text().split() == ["a", "b"] * 3


def test_a_failing_variant_is_reported_with_its_error(ab):
    commands = {"ok": [sys.executable, "-c", "print(1)"],
                "broken": [sys.executable, "-c", "raise SystemExit('allocator setting refused')"]}
    with pytest.raises(RuntimeError, match="'broken' failed.*allocator setting refused"):
        ab.best_of_fresh_processes(commands, 1, lambda out: {"t": float(out)})
    with pytest.raises(ValueError, match="rounds"):
        ab.best_of_fresh_processes(commands, 0, lambda out: {})
