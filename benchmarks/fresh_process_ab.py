"""Alternating fresh-process A/B runs, shared by benchmarks whose variants cannot share a process (not a benchmark).

A process-wide setting such as glibc's allocator thresholds cannot be undone once set, so each variant runs in its own
fresh process; variants alternate within a round so that drift in machine load hits them alike, and the best round
of each counts (the least disturbed one).
"""

from __future__ import annotations

import subprocess
from typing import Callable, Hashable, Mapping, Sequence


def best_of_fresh_processes(commands: Mapping[Hashable, Sequence[str]], rounds: int,
                            parse: Callable[[str], Mapping[str, float]]) -> dict[Hashable, dict[str, float]]:
    """Runs every variant's command once per round, in order, ``rounds`` times; ``parse`` turns a run's stdout into
    named figures (lower is better), and each variant gets the smallest value every figure reached."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, not {rounds}")
    best: dict[Hashable, dict[str, float]] = {variant: {} for variant in commands}
    for _ in range(rounds):
        for variant, command in commands.items():
            run = subprocess.run(list(command), capture_output=True, text=True)
            if run.returncode != 0:
                raise RuntimeError(f"variant {variant!r} failed (exit {run.returncode}): {run.stderr.strip()[-2000:]}")
            for name, value in parse(run.stdout).items():
                best[variant][name] = min(best[variant].get(name, float("inf")), float(value))
    return best
